"""cold_ms: Contrastive LoRA Decoding on MindSpore."""
__version__ = "0.1.0"
