"""TFDS builders (array_record files, read with ``tfds.data_source``; TensorFlow not needed).

- ``MiniQa``: the embedded offline suite, splits ``train`` and ``test`` (see ``data/mini.py``).
- ``MiniCorpus``: the embedded union corpus, split ``train`` (``id``, ``title``, ``text``,
  ``contents``).
- ``SearchR1Qa``: user-supplied Search-R1 / FlashRAG data, one config per dataset (``nq``,
  ``triviaqa``, ``popqa``, ``hotpotqa``, ``2wikimultihopqa``, ``musique``, ``bamboogle`` and
  ``nq_hotpotqa_train``, Search-R1's training mix). Files are looked up in the manual dir as
  ``{manual_dir}/{name}/{split}.{parquet,jsonl,jsonl.gz}`` (FlashRAG and Search-R1 layouts; also
  ``{name}_search/``); without them the builder downloads from the Hugging Face hub
  (``data/hub.py``) and fails with a clear message when the hub cannot be reached.

Records keep the corpus/file order (``disable_shuffling``), so record ``i`` has ``uid == i``.
Builds take a few seconds and land in ``default_data_dir()`` unless ``data_dir`` is given.
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator

import numpy as np
import tensorflow_datasets as tfds

from searchr1_jax.data import hub, mini
from searchr1_jax.data.records import QaExample, assign_uids, read_qa_file

QA_FEATURES = dict(
    id=tfds.features.Text(), question=tfds.features.Text(),
    golden_answers=tfds.features.Sequence(tfds.features.Text()),
    data_source=tfds.features.Text(), uid=np.int64, answerable=np.bool_)
_QA_EXTS = (".parquet", ".jsonl", ".jsonl.gz")


def default_data_dir() -> str:
    """``$SEARCHR1_DATA_DIR`` or ``~/.cache/searchr1_jax/tfds``."""
    return os.environ.get("SEARCHR1_DATA_DIR",
                          os.path.join(os.path.expanduser("~"), ".cache", "searchr1_jax", "tfds"))


def _qa_info(builder, description: str) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=builder, description=description,
                                 features=tfds.features.FeaturesDict(dict(QA_FEATURES)),
                                 disable_shuffling=True)


def _qa_records(examples: Iterable[QaExample]) -> Iterator[tuple[int, dict]]:
    for ex in examples:
        yield ex.uid, {"id": ex.id, "question": ex.question,
                       "golden_answers": list(ex.golden_answers), "data_source": ex.data_source,
                       "uid": ex.uid, "answerable": ex.answerable}


class MiniQa(tfds.core.GeneratorBasedBuilder):
    """The embedded mini suite: seven test sets and a disjoint train set."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Seven test sets; train minus test by normalised question."}

    def _info(self) -> tfds.core.DatasetInfo:
        return _qa_info(self, mini.__doc__)

    def _split_generators(self, dl_manager):
        suite = mini.mini_suite(progress=True)
        return {name: _qa_records(examples) for name, examples in suite.items()}

    def _generate_examples(self):  # splits come from _split_generators
        raise NotImplementedError


class MiniCorpus(tfds.core.GeneratorBasedBuilder):
    """The de-duplicated union of the embedded corpus slices."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description=mini.__doc__, disable_shuffling=True,
            features=tfds.features.FeaturesDict(dict(
                id=tfds.features.Text(), title=tfds.features.Text(),
                text=tfds.features.Text(), contents=tfds.features.Text())))

    def _split_generators(self, dl_manager):
        return {"train": ((i, p) for i, p in enumerate(mini.union_corpus()))}

    def _generate_examples(self):
        raise NotImplementedError


class SearchR1QaConfig(tfds.core.BuilderConfig):
    """One dataset of the paper: its name, the splits it has, where the hub keeps it."""

    def __init__(self, *, splits: tuple[str, ...], hub_kind: str, **kwargs):
        super().__init__(version=tfds.core.Version("1.0.0"), **kwargs)
        self.splits = splits
        self.hub_kind = hub_kind  # "flashrag" ({name}/{split}.jsonl) | "searchr1" (parquet)


def _cfg(name: str, splits: tuple[str, ...], kind: str = "flashrag") -> SearchR1QaConfig:
    return SearchR1QaConfig(name=name, splits=splits, hub_kind=kind,
                            description=f"{name} ({', '.join(splits)}) from user files or the hub")


class SearchR1Qa(tfds.core.GeneratorBasedBuilder):
    """User-supplied Search-R1 parquet / FlashRAG jsonl files for the paper's datasets."""

    BUILDER_CONFIGS = [
        _cfg("nq", ("train", "dev", "test")), _cfg("triviaqa", ("train", "dev", "test")),
        _cfg("popqa", ("test",)), _cfg("hotpotqa", ("train", "dev")),
        _cfg("2wikimultihopqa", ("train", "dev")), _cfg("musique", ("train", "dev")),
        _cfg("bamboogle", ("test",)), _cfg("nq_hotpotqa_train", ("train", "test"), "searchr1"),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        "Put the files at {manual_dir}/{config}/{split}.parquet (Search-R1) or "
        "{manual_dir}/{config}/{split}.jsonl (FlashRAG), or let the builder fetch them from the "
        "Hugging Face hub.")

    def _info(self) -> tfds.core.DatasetInfo:
        return _qa_info(self, self.builder_config.description)

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        try:
            manual = dl_manager.manual_dir
        except (AssertionError, ValueError):  # no manual dir given (or it does not exist)
            manual = None
        files = {s: find_split_file(manual, cfg.name, s) for s in cfg.splits} if manual else {}
        files = {s: f for s, f in files.items() if f}
        if not files:
            files = hub.download_splits(cfg.name, cfg.splits, cfg.hub_kind)
        return {split: _qa_records(assign_uids(read_qa_file(path, data_source=cfg.name)))
                for split, path in files.items()}

    def _generate_examples(self):
        raise NotImplementedError


def find_split_file(manual_dir: str | os.PathLike, name: str, split: str) -> str | None:
    """``{manual_dir}/{name}[_search]/{split}.{parquet,jsonl,jsonl.gz}`` if one exists."""
    for sub in (name, f"{name}_search"):
        for ext in _QA_EXTS:
            path = os.path.join(os.fspath(manual_dir), sub, split + ext)
            if os.path.exists(path):
                return path
    return None


def build(builder_cls, data_dir: str | None = None, config: str | None = None,
          manual_dir: str | None = None):
    """Prepares (once) and returns the builder; array_record files under ``data_dir``."""
    kwargs = dict(data_dir=data_dir or default_data_dir(), file_format="array_record")
    if config is not None:
        kwargs["config"] = config
    builder = builder_cls(**kwargs)
    dl_config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
    builder.download_and_prepare(download_config=dl_config)
    return builder


def decode_qa_record(rec: dict) -> QaExample:
    """A ``tfds.data_source`` record (bytes fields) back into a ``QaExample``."""
    def s(x):
        return x.decode("utf-8") if isinstance(x, bytes) else str(x)
    return QaExample(id=s(rec["id"]), question=s(rec["question"]),
                     golden_answers=tuple(s(a) for a in rec["golden_answers"]),
                     data_source=s(rec["data_source"]), uid=int(rec["uid"]),
                     answerable=bool(rec["answerable"]))


def read_qa_source(source) -> list[QaExample]:
    """Every record of a QA data source, in record order."""
    return [decode_qa_record(r) for r in source.__getitems__(list(range(len(source))))]
