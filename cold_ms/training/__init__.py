"""LoRA fine-tuning in MindSpore (graph mode), writing PEFT-format adapters."""
