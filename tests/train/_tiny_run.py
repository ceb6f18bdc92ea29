"""A real training run directory on a tiny random Hugging Face model, for export / ask tests.

``tiny_hf_dir`` saves a random fp32 ``Qwen2ForCausalLM`` (tests/models/hf_tiny.py) with a small
word-level tokenizer; ``train_tiny_run`` trains it for a few GRPO steps through ``loop.run``
(scripted rollout, a checkpoint every step) with ``model.name`` pointing at that directory,
exactly as ``python -m searchr1_jax.train`` would leave a run behind.
"""
from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

VOCAB = 320
SPECIAL = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0..3: pad, bos (1), eos (2) as hf_tiny sets
WORDS = ["<", "</", ">", "think", "search", "answer", "information", "Doc", "Title", "(", ")",
         ":", ".", ",", "?", "\"", "the", "a", "of", "is", "who", "what", "Paris", "France",
         "capital", "Question", "Answer"]


def tiny_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = SPECIAL + WORDS + [f"w{i}" for i in range(VOCAB - len(SPECIAL) - len(WORDS))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>")


def tiny_hf_dir(path: str, seed: int = 0) -> str:
    """A random Qwen2 (hidden 64, 2 layers, GQA 2, untied) + tokenizer saved under ``path``."""
    from tests.models.hf_tiny import make_hf_model

    model = make_hf_model("qwen2", seed=seed, vocab=VOCAB, num_attention_heads=4,
                          num_key_value_heads=2, tie_word_embeddings=False)
    model.save_pretrained(path)
    tiny_tokenizer().save_pretrained(path)
    return path


@dataclasses.dataclass
class TinyRun:
    run_dir: str
    hf_dir: str
    params: dict[int, list[np.ndarray]]   # RL step -> the actor's parameter leaves (host copies)
    initial: list[np.ndarray]             # the leaves before training


def train_tiny_run(root: str, steps: int = 2) -> TinyRun:
    from flax import nnx

    from searchr1_jax.data import BatchIterator
    from searchr1_jax.models import load_model
    from searchr1_jax.train import loop
    from searchr1_jax.train.trainer import Trainer
    from tests.train._scripted import ScriptedRollout, hit_reward
    from tests.train.test_trainer import tiny_config

    hf_dir = tiny_hf_dir(os.path.join(root, "base_hf"))
    cfg = tiny_config("grpo", steps)
    cfg.model.name, cfg.model.dtype, cfg.model.param_dtype = hf_dir, "float32", "float32"
    cfg.output.dir = os.path.join(root, "run")
    cfg.train.checkpoint_every, cfg.train.keep_checkpoints = 1, steps
    cfg.train.async_checkpoint = False
    actor, _, _ = load_model(hf_dir, dtype="float32", param_dtype="float32")
    leaves = lambda m: [np.array(x) for x in jax.tree.leaves(nnx.state(m, nnx.Param))]  # noqa: E731
    initial = leaves(actor)
    trainer = Trainer(cfg, actor, ScriptedRollout(),
                      BatchIterator(list(range(64)), cfg.data.train_batch_size, seed=0),
                      reward_fn=hit_reward, min_width=8)
    params = {}
    loop.run(trainer, cfg, progress=False,
             on_step=lambda m: params.__setitem__(int(m["step"]), leaves(trainer.actor_model())))
    return TinyRun(run_dir=cfg.output.dir, hf_dir=hf_dir, params=params, initial=initial)
