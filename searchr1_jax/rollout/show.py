"""Pretty-printer for trajectory logs.

  python -m searchr1_jax.rollout.show runs/demo/trajectories.jsonl [--start 0] [--limit 5]
      [--only correct|wrong|unanswered] [--color auto|always|never]

Generated text is green, retrieved/observation text blue (when writing to a terminal, or with
``--color always``), so what the model wrote and what the search engine returned stand apart.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Iterable, TextIO

from searchr1_jax.rollout.trajectory_log import read_trajectories

GREEN, BLUE, BOLD, DIM, RESET = "\033[32m", "\033[34m", "\033[1m", "\033[2m", "\033[0m"
STOP_NAMES = {0: "budget", 1: "eos", 2: "tag"}


def _paint(text: str, style: str, color: bool) -> str:
    return f"{style}{text}{RESET}" if color and text else text


def format_record(rec: dict[str, Any], *, color: bool = False) -> str:
    """Human-readable text of one trajectory record."""
    reward = " ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                      for k, v in (rec.get("reward") or {}).items())
    head = (f"=== row {rec.get('row')} step {rec.get('step')} [{rec.get('data_source') or '-'}]"
            f" {reward} ===")
    lines = [_paint(head, BOLD, color), f"Q: {rec.get('question', '')}",
             f"gold: {rec.get('golden_answers', [])}"]
    for t, turn in enumerate(rec["turns"], 1):
        stop = STOP_NAMES.get(turn.get("stop_reason"), turn.get("stop_reason"))
        lines.append(_paint(f"--- turn {t}: {turn.get('action') or 'invalid'} (stop: {stop})"
                            + (f" docs {turn['doc_ids']}" if turn.get("doc_ids") else "")
                            + " ---", DIM, color))
        lines.append(_paint(turn.get("text", ""), GREEN, color))
        if turn.get("observation"):
            lines.append(_paint(turn["observation"].strip("\n"), BLUE, color))
        if turn.get("retrieval_error"):
            lines.append(f"[retrieval error: {turn['retrieval_error']}]")
    lines.append(f"answer: {rec.get('answer')!r}  turns={rec.get('num_turns')} "
                 f"searches={rec.get('num_searches')} valid_format={rec.get('valid_format')}"
                 + (" TRUNCATED" if rec.get("truncated") else ""))
    return "\n".join(lines) + "\n"


def _keep(rec: dict[str, Any], only: str | None) -> bool:
    if only is None:
        return True
    if only == "unanswered":
        return rec.get("answer") is None
    score = next(iter((rec.get("reward") or {}).values()), None)
    if score is None:
        raise ValueError(f"--only {only}: record row {rec.get('row')} has no reward field")
    return (score > 0) == (only == "correct")


def show(records: Iterable[dict[str, Any]], out: TextIO, *, start: int = 0,
         limit: int | None = None, only: str | None = None, color: bool = False) -> int:
    """Writes the selected records to ``out``; returns how many were shown."""
    shown = 0
    for k, rec in enumerate(r for r in records if _keep(r, only)):
        if k < start:
            continue
        if limit is not None and shown >= limit:
            break
        out.write(format_record(rec, color=color) + "\n")
        shown += 1
    return shown


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m searchr1_jax.rollout.show", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", help="trajectories.jsonl written by the rollout")
    p.add_argument("--start", type=int, default=0, help="skip this many (selected) records")
    p.add_argument("--limit", type=int, default=None, help="show at most this many")
    p.add_argument("--only", choices=["correct", "wrong", "unanswered"], default=None)
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    args = p.parse_args(argv)
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    try:
        n = show(read_trajectories(args.path), sys.stdout, start=args.start, limit=args.limit,
                 only=args.only, color=color)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if n == 0:
        print("no trajectories matched", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
