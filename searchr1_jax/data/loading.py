"""Resolve a data spec from the config (``data.train`` / ``data.eval``) into ``QaExample``s.

Spec grammar, parts joined with ``+``:
- ``mini:train`` / ``mini:test``: the embedded suite (TFDS ``mini_qa``).
- ``searchr1/<config>:<split>``: TFDS ``search_r1_qa`` (user files in ``manual_dir`` or the hub),
  e.g. ``searchr1/nq:train+searchr1/hotpotqa:train`` (the paper's training mix).
- a path to a Search-R1 ``.parquet`` or FlashRAG ``.jsonl[.gz]`` file (read directly).
uids are re-numbered over the whole result, so group ids never collide across sources.
"""
from __future__ import annotations

import os
from typing import Sequence

from searchr1_jax.data.records import DataError, QaExample, assign_uids, read_qa_file


def _tfds_part(part: str, data_dir: str | None, manual_dir: str | None) -> list[QaExample]:
    from searchr1_jax.data import builders  # lazy: tensorflow_datasets import

    name, _, split = part.partition(":")
    if not split:
        raise DataError(f"data spec {part!r}: needs ':<split>' (e.g. mini:test)")
    if name == "mini":
        builder = builders.build(builders.MiniQa, data_dir)
    elif name.startswith("searchr1/"):
        builder = builders.build(builders.SearchR1Qa, data_dir, config=name.split("/", 1)[1],
                                 manual_dir=manual_dir)
    else:
        raise DataError(f"data spec {part!r}: unknown dataset {name!r} (mini or searchr1/<name>)")
    sources = builder.as_data_source()
    if split not in sources:
        raise DataError(f"data spec {part!r}: no split {split!r} (have {sorted(sources)})")
    return builders.read_qa_source(sources[split])


def load_examples(spec: str, data_dir: str | None = None, manual_dir: str | None = None,
                  sources: Sequence[str] | None = None, max_examples: int = -1
                  ) -> list[QaExample]:
    """Examples of ``spec``; optionally only ``sources`` and the first ``max_examples`` of each.

    ``max_examples`` applies per data source (evaluation subsets stay balanced across datasets).
    """
    if not spec:
        raise DataError("data spec is empty")
    out: list[QaExample] = []
    for part in spec.split("+"):
        part = part.strip()
        if os.path.splitext(part.removesuffix(".gz"))[1] in (".parquet", ".jsonl", ".json"):
            out.extend(read_qa_file(part))
        else:
            out.extend(_tfds_part(part, data_dir or None, manual_dir or None))
    if sources:
        unknown = set(sources) - {ex.data_source for ex in out}
        if unknown:
            raise DataError(f"data spec {spec!r}: no examples from sources {sorted(unknown)}")
        out = [ex for ex in out if ex.data_source in set(sources)]
    if max_examples is not None and max_examples >= 0:
        counts: dict[str, int] = {}
        kept = []
        for ex in out:
            if counts.get(ex.data_source, 0) < max_examples:
                counts[ex.data_source] = counts.get(ex.data_source, 0) + 1
                kept.append(ex)
        out = kept
    return assign_uids(out)


def load_mini_corpus(data_dir: str | None = None) -> list[dict[str, str]]:
    """The embedded union corpus through TFDS (``id``, ``title``, ``text``, ``contents``)."""
    from searchr1_jax.data import builders

    source = builders.build(builders.MiniCorpus, data_dir).as_data_source()["train"]

    def s(x):
        return x.decode("utf-8") if isinstance(x, bytes) else x
    return [{k: s(v) for k, v in rec.items()}
            for rec in source.__getitems__(list(range(len(source))))]
