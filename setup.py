from setuptools import find_packages, setup

# mindspore 2.9.0 is the only release mindformers 1.9.0 installs with here; numpy 2 breaks
# MindSpore's Tensor.reshape, so numpy stays at 1.26.4.
CORE = ["mindspore==2.9.0", "numpy==1.26.4", "safetensors>=0.4", "sentencepiece>=0.2",
        "tokenizers>=0.20", "gguf>=0.17", "jinja2>=3.1", "tqdm>=4.66", "pyyaml>=6.0"]
EXTRAS = {
    "mindformers": ["mindformers==1.9.0"],
    "serve": ["fastapi>=0.110", "uvicorn>=0.29", "prometheus-client>=0.20"],
    "eval": ["reasoning-gym==0.1.25", "matplotlib>=3.8"],
    "test": ["pytest>=8", "pytest-xdist==3.6.1", "httpx>=0.27", "openai>=1.30"],  # xdist: pytest.ini's -n 2
}
EXTRAS["all"] = sorted({r for reqs in EXTRAS.values() for r in reqs})
# The benchmarks' peers, not in "all": llama.cpp (`bench.py e2e --peer llamacpp`), compiled from its
# sdist (~10 min on 2 cores; see the README for the build flags), and transformers + PEFT
# (`bench.py e2e --peer hf`, `bench.py train`; the CPU torch wheel).
EXTRAS["peers"] = ["llama-cpp-python==0.3.36", "torch==2.13.0", "transformers>=4.57", "peft>=0.21"]
# The Python versions scripts/check_pythons.sh installs, imports and generates on before a
# release (CI runs one). 3.9: reasoning-gym 0.1.25 (the eval extra) has no build for it;
# 3.13: mindspore 2.9.0 has no wheel for it.
TESTED_PYTHONS = ("3.10", "3.11", "3.12")

setup(
    name="cold_ms",
    version="0.1.0",
    description="Contrastive LoRA Decoding (CoLD) on MindSpore: one base model, stacked LoRA "
                "slots, expert and amateur in one compiled graph",
    packages=find_packages(include=["cold_ms", "cold_ms.*"]),
    package_data={"cold_ms.pipeline": ["*.yaml"], "cold_ms": ["data/*.json"]},
    python_requires=f">={TESTED_PYTHONS[0]},<3.{int(TESTED_PYTHONS[-1].split('.')[1]) + 1}",
    classifiers=[f"Programming Language :: Python :: {v}" for v in TESTED_PYTHONS],
    install_requires=CORE,
    extras_require=EXTRAS,
)
