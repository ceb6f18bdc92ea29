"""Batching: a resumable shuffled training iterator and padded evaluation batches.

Training order: epoch ``e`` visits ``permutation_e = default_rng([seed, e]).permutation(n)`` in
batches of ``batch_size``; the last partial batch of an epoch is dropped (every step sees a full
batch, as veRL's ``drop_last=True``). ``IteratorState(epoch, index, seed)`` is the whole
position: restoring it replays exactly the batches an uninterrupted run would have produced.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class IteratorState:
    """Position of a ``BatchIterator``: next batch starts at ``index`` of epoch ``epoch``."""

    epoch: int = 0
    index: int = 0
    seed: int = 0

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IteratorState":
        return cls(epoch=int(d["epoch"]), index=int(d["index"]), seed=int(d["seed"]))


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """Row order of one epoch: ``default_rng([seed, epoch]).permutation(n)`` (or ``arange``)."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch]).permutation(n)


class BatchIterator:
    """Endless full batches over ``examples``; ``state`` / ``restore`` for checkpoints."""

    def __init__(self, examples: Sequence[T], batch_size: int, seed: int = 0,
                 shuffle: bool = True, state: IteratorState | None = None):
        if batch_size <= 0:
            raise ValueError(f"batch_size = {batch_size}: must be > 0")
        if len(examples) < batch_size:
            raise ValueError(f"batch_size = {batch_size} exceeds the {len(examples)} examples "
                             "of the dataset")
        self.examples = examples
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._state = IteratorState(0, 0, seed)
        self._order = None
        if state is not None:
            self.restore(state)

    @property
    def state(self) -> IteratorState:
        return self._state

    @property
    def steps_per_epoch(self) -> int:
        return len(self.examples) // self.batch_size

    def restore(self, state: IteratorState) -> None:
        if state.index % self.batch_size or state.index > len(self.examples):
            raise ValueError(f"iterator state {state} does not fit batch_size {self.batch_size} "
                             f"and {len(self.examples)} examples")
        self._state = state
        self._order = None

    def __iter__(self) -> Iterator[list[T]]:
        return self

    def __next__(self) -> list[T]:
        st = self._state
        if st.index + self.batch_size > len(self.examples):  # drop the partial tail
            st = IteratorState(st.epoch + 1, 0, st.seed)
            self._order = None
        if self._order is None:
            self._order = epoch_order(len(self.examples), st.seed, st.epoch, self.shuffle)
        rows = self._order[st.index:st.index + self.batch_size]
        self._state = IteratorState(st.epoch, st.index + self.batch_size, st.seed)
        return [self.examples[int(i)] for i in rows]


def padded_batches(examples: Sequence[T], batch_size: int
                   ) -> Iterator[tuple[list[T], int]]:
    """``(batch, n_real)`` in order; the last batch is padded by repeating its last example.

    Every example is scored exactly once: the caller keeps the first ``n_real`` results of each
    batch (fixed shapes for jit, no dropped tail).
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size = {batch_size}: must be > 0")
    for start in range(0, len(examples), batch_size):
        batch = list(examples[start:start + batch_size])
        n_real = len(batch)
        batch.extend([batch[-1]] * (batch_size - n_real))
        yield batch, n_real


def repeat_for_groups(batch: Sequence[T], n: int, uids: Sequence[int]
                      ) -> tuple[list[T], np.ndarray]:
    """Each prompt ``n`` times in a row (GRPO), with ``group_ids`` = the prompt's uid."""
    if len(batch) != len(uids):
        raise ValueError(f"{len(batch)} prompts but {len(uids)} uids")
    rows = [x for x in batch for _ in range(n)]
    return rows, np.repeat(np.asarray(uids, np.int32), n)
