"""Resumable training iterator and padded evaluation batches."""
import numpy as np
import pytest

from searchr1_jax.data.batching import (BatchIterator, IteratorState, padded_batches,
                                        repeat_for_groups)


def test_resume_equals_uninterrupted():
    data = list(range(23))
    full = BatchIterator(data, 5, seed=7)
    ref = [next(full) for _ in range(12)]  # crosses two epoch boundaries (4 batches / epoch)
    it = BatchIterator(data, 5, seed=7)
    for _ in range(6):
        next(it)
    saved = IteratorState.from_dict(it.state.to_dict())
    resumed = BatchIterator(data, 5, seed=123, state=saved)  # the state's seed wins
    assert [next(resumed) for _ in range(6)] == ref[6:]


def test_epochs_are_permutations_and_drop_the_tail():
    data = list(range(23))
    it = BatchIterator(data, 5, seed=0)
    epoch0 = [x for _ in range(4) for x in next(it)]
    assert len(set(epoch0)) == 20 and it.state == IteratorState(0, 20, 0)
    epoch1 = [x for _ in range(4) for x in next(it)]
    assert it.state.epoch == 1 and epoch1 != epoch0
    assert BatchIterator(data, 5, shuffle=False).__next__() == [0, 1, 2, 3, 4]


def test_bad_sizes():
    with pytest.raises(ValueError, match="exceeds"):
        BatchIterator([1, 2], 3)
    with pytest.raises(ValueError, match="does not fit"):
        BatchIterator(list(range(10)), 4, state=IteratorState(0, 3, 0))


@pytest.mark.parametrize("n, bs", [(1, 4), (7, 3), (8, 4), (10, 1), (5, 16)])
def test_padded_batches_cover_every_example_once(n, bs):
    data = list(range(n))
    seen = []
    for batch, n_real in padded_batches(data, bs):
        assert len(batch) == bs
        seen.extend(batch[:n_real])
    assert seen == data


def test_repeat_for_groups():
    rows, gids = repeat_for_groups(["a", "b"], 3, [10, 42])
    assert rows == ["a", "a", "a", "b", "b", "b"]
    np.testing.assert_array_equal(gids, [10, 10, 10, 42, 42, 42])
