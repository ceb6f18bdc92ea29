"""searchr1-jax: Search-R1 (RL for reasoning with search) in JAX/Flax.

Install for CPU work:            pip install -e ".[all]"
Install with the test tools:     pip install -e ".[all,test,wandb,notebooks]"
TPU:   pip install "jax[tpu]" first (see https://docs.jax.dev/en/latest/installation.html)
GPU:   pip install "jax[cuda12]" (or jax[cuda13]) first; then this package.
"""
import setuptools

CORE = [
    "jax>=0.6",
    "flax>=0.10",
    "optax>=0.2.4",
    "orbax-checkpoint>=0.11",
    "ml-collections>=1.0",
    "absl-py",
    "numpy",
    "transformers>=4.51",  # tokenizers, chat templates, HF configs
    "huggingface_hub",
    "safetensors",
    "gguf>=0.10",
    "tqdm",
]
EXTRAS = {
    "retrieval": ["bm25s>=0.2", "PyStemmer", "scann>=1.3", "fastapi", "uvicorn", "httpx"],
    # importlib_resources: tfds needs it for builders defined in a package, but does not declare it.
    "data": ["tensorflow-datasets>=4.9.7", "array-record", "pyarrow", "importlib_resources"],
    "metrics": ["tensorboard", "matplotlib"],
    "wandb": ["wandb>=0.19.10"],  # output.wandb_project (reinit="create_new" needs 0.19.10)
    # Runs notebooks/*.ipynb through a real Jupyter kernel (tests/notebooks).
    "notebooks": ["nbclient>=0.10", "nbformat>=5.9", "ipykernel>=6.29"],
    # Test-only: torch is the independent reference for logits and generation.
    # Pin exactly: 2.13.0 is the CPU build this project tests against.
    "test": ["torch==2.13.0", "pytest>=8", "pytest-timeout", "hypothesis",
             "accelerate"],  # accelerate: transformers needs it to load a GGUF
}
EXTRAS["all"] = sorted({p for k in ("retrieval", "data", "metrics") for p in EXTRAS[k]})

setuptools.setup(
    name="searchr1-jax",
    version="0.1.0",
    description="Search-R1 in JAX: RL (PPO/GRPO) that teaches LLMs to reason and call a search engine",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=setuptools.find_packages(include=["searchr1_jax", "searchr1_jax.*"]),
    package_data={"searchr1_jax": ["assets/README.md", "assets/*/*"]},
    include_package_data=True,
    install_requires=CORE,
    extras_require=EXTRAS,
)
