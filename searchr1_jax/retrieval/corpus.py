"""Corpus readers and an on-disk passage store.

Two row formats are accepted (one JSON object a line, optionally gzip-compressed):
  * this project's ``{"id", "title", "text"}`` -> ``contents = '"' + title + '"\\n' + text``;
  * Search-R1's wiki-18 ``{"id", "contents"}`` with ``contents = '"Title"\\ntext'`` (kept as is).
Readers stream: wiki-18 has 21M passages, so nothing here holds more than one shard of
``Passage`` objects. ``PassageStore`` keeps the contents as one UTF-8 byte blob plus int64
offsets (memory-mapped when loaded from disk), so a row lookup costs no Python objects per passage.
"""
from __future__ import annotations

import array
import gzip
import json
import os
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from searchr1_jax import ASSETS_DIR
from searchr1_jax.retrieval.base import RetrievalError, make_contents


class CorpusError(RetrievalError):
    """A corpus file or row is malformed; the message names the file and the line."""


class Passage(NamedTuple):
    id: str
    contents: str


# Named corpora shipped in searchr1_jax/assets/corpora; "mini" is their union.
EMBEDDED_CORPORA = ("hotpotqa_dev500", "hotpotqa_train100", "musique_train100", "wiki18_slice",
                    "kilt_2wiki_slice", "hotpot_abstracts_slice")


def resolve_corpus(spec: str) -> list[str]:
    """Paths for a corpus spec: ``"mini"``, an embedded name, a path, or a comma-separated list."""
    paths = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part == "mini":
            paths.extend(resolve_corpus(",".join(EMBEDDED_CORPORA)))
        elif part in EMBEDDED_CORPORA:
            paths.append(os.path.join(ASSETS_DIR, "corpora", f"{part}.jsonl.gz"))
        elif os.path.exists(part):
            paths.append(part)
        else:
            raise CorpusError(f"corpus {part!r}: no such file and not one of "
                              f"{['mini', *EMBEDDED_CORPORA]}")
    if not paths:
        raise CorpusError(f"corpus spec {spec!r} names no file")
    return paths


def _open_binary(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def parse_row(line: str, where: str) -> Passage:
    """One JSON line -> ``Passage``; ``where`` ("file:line") is put in every error."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise CorpusError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(row, dict):
        raise CorpusError(f"{where}: expected a JSON object, got {type(row).__name__}")
    if "id" not in row:
        raise CorpusError(f"{where}: missing field 'id'")
    pid = row["id"]
    if not isinstance(pid, (str, int)) or isinstance(pid, bool):
        raise CorpusError(f"{where}: field 'id' must be a string or int, got {pid!r}")
    if "contents" in row:
        contents = row["contents"]
        if not isinstance(contents, str):
            raise CorpusError(f"{where}: field 'contents' must be a string")
    elif "title" in row and "text" in row:
        title, text = row["title"], row["text"]
        if not isinstance(title, str) or not isinstance(text, str):
            raise CorpusError(f"{where}: fields 'title' and 'text' must be strings")
        contents = make_contents(title, text)
    else:
        raise CorpusError(f"{where}: needs 'contents' or both 'title' and 'text', "
                          f"got fields {sorted(row)}")
    return Passage(str(pid), contents)


def iter_passages(paths: str | Sequence[str]) -> Iterator[Passage]:
    """Streams passages from one or more jsonl(.gz) files (or a corpus spec), in file order."""
    if isinstance(paths, str):
        paths = resolve_corpus(paths)
    for path in paths:
        if not os.path.exists(path):
            raise CorpusError(f"{path}: no such corpus file")
        with _open_binary(path) as f:
            for line_no, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8")  # strict: a bad byte names its line
                except UnicodeDecodeError as e:
                    raise CorpusError(f"{path}:{line_no}: not valid UTF-8 ({e.reason} at byte "
                                      f"{e.start})") from None
                if line.strip():
                    yield parse_row(line, f"{path}:{line_no}")


def iter_shards(passages: Iterable[Passage], shard_size: int) -> Iterator[list[Passage]]:
    """Groups a passage stream into lists of at most ``shard_size``."""
    if shard_size <= 0:
        raise ValueError(f"shard_size must be > 0, got {shard_size}")
    shard: list[Passage] = []
    for p in passages:
        shard.append(p)
        if len(shard) == shard_size:
            yield shard
            shard = []
    if shard:
        yield shard


class PassageStore:
    """Row-addressed passages: ``store[rows] -> list[Passage]``, ids and contents as byte blobs.

    Files in a directory: ``contents.bin``/``contents_offsets.npy`` and ``ids.bin``/
    ``ids_offsets.npy`` (row r's bytes are ``blob[off[r]:off[r+1]]``), ``store.json``.
    """

    def __init__(self, ids: np.ndarray, id_offsets: np.ndarray, contents: np.ndarray,
                 contents_offsets: np.ndarray):
        self._ids, self._id_off = ids, id_offsets
        self._contents, self._c_off = contents, contents_offsets

    def __len__(self) -> int:
        return len(self._c_off) - 1

    @classmethod
    def from_passages(cls, passages: Iterable[Passage]) -> "PassageStore":
        """In-memory store (small corpora)."""
        id_blob, c_blob = bytearray(), bytearray()
        id_off, c_off = array.array("q", [0]), array.array("q", [0])
        for p in passages:
            id_blob += p.id.encode("utf-8")
            c_blob += p.contents.encode("utf-8")
            id_off.append(len(id_blob))
            c_off.append(len(c_blob))
        return cls(np.frombuffer(bytes(id_blob), np.uint8), np.asarray(id_off, np.int64),
                   np.frombuffer(bytes(c_blob), np.uint8), np.asarray(c_off, np.int64))

    @staticmethod
    def write(passages: Iterable[Passage], directory: str) -> int:
        """Streams passages to ``directory`` (nothing but offsets kept in memory); returns count."""
        os.makedirs(directory, exist_ok=True)
        id_off, c_off = array.array("q", [0]), array.array("q", [0])
        with open(os.path.join(directory, "ids.bin"), "wb") as fi, \
                open(os.path.join(directory, "contents.bin"), "wb") as fc:
            for p in passages:
                b_id, b_c = p.id.encode("utf-8"), p.contents.encode("utf-8")
                fi.write(b_id)
                fc.write(b_c)
                id_off.append(id_off[-1] + len(b_id))
                c_off.append(c_off[-1] + len(b_c))
        np.save(os.path.join(directory, "ids_offsets.npy"), np.asarray(id_off, np.int64))
        np.save(os.path.join(directory, "contents_offsets.npy"), np.asarray(c_off, np.int64))
        with open(os.path.join(directory, "store.json"), "w") as f:
            json.dump({"format": "searchr1_jax.passage_store/1", "num_passages": len(c_off) - 1}, f)
        return len(c_off) - 1

    def save(self, directory: str) -> None:
        self.write((self[r] for r in range(len(self))), directory)

    @classmethod
    def load(cls, directory: str) -> "PassageStore":
        """Memory-maps a store written by ``write``."""
        meta_path = os.path.join(directory, "store.json")
        if not os.path.exists(meta_path):
            raise CorpusError(f"{directory}: no store.json (not a passage store)")
        with open(meta_path) as f:
            meta = json.load(f)

        def blob(name):
            path = os.path.join(directory, name)
            if os.path.getsize(path) == 0:
                return np.zeros(0, np.uint8)
            return np.memmap(path, dtype=np.uint8, mode="r")

        store = cls(blob("ids.bin"),
                    np.load(os.path.join(directory, "ids_offsets.npy"), allow_pickle=False),
                    blob("contents.bin"),
                    np.load(os.path.join(directory, "contents_offsets.npy"), allow_pickle=False))
        if len(store) != meta.get("num_passages"):
            raise CorpusError(f"{directory}: store.json says {meta.get('num_passages')} passages, "
                              f"offsets hold {len(store)}")
        return store

    def __getitem__(self, row: int) -> Passage:
        row = int(row)
        if not 0 <= row < len(self):
            raise IndexError(f"passage row {row} out of range [0, {len(self)})")
        return Passage(
            bytes(self._ids[self._id_off[row]:self._id_off[row + 1]]).decode("utf-8"),
            bytes(self._contents[self._c_off[row]:self._c_off[row + 1]]).decode("utf-8"))

    def contents(self, rows: Iterable[int]) -> list[str]:
        return [self[r].contents for r in rows]

    def iter_contents(self) -> Iterator[str]:
        for r in range(len(self)):
            yield self[r].contents
