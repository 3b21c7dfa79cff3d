"""Tests for the epoch-shuffled minibatch sampler (synth_opt.gepa.sampler)."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synth_opt.gepa.sampler import EpochSampler

FAST = settings(max_examples=200, deadline=None)


def make_ids(n: int) -> tuple[str, ...]:
    return tuple(f"id{i}" for i in range(n))


def batches(sampler: EpochSampler, rng: random.Random, n: int) -> list[list[str]]:
    return [sampler.next_batch(rng) for _ in range(n)]


@FAST
@given(st.integers(1, 25), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_epochs_cover_every_id_with_full_duplicate_free_batches(n_ids: int, batch_size: int, seed: int) -> None:
    ids = make_ids(n_ids)
    sampler = EpochSampler(ids, batch_size)
    rng = random.Random(seed)
    size = min(batch_size, n_ids)
    per_epoch = math.ceil(n_ids / size)
    pad = per_epoch * size - n_ids
    for epoch in range(3):
        epoch_batches = batches(sampler, rng, per_epoch)
        assert sampler.epoch == epoch
        for batch in epoch_batches:
            # the requested size, or all ids when there are fewer
            assert len(batch) == size
            # batch_size is clamped to len(ids), so no id ever repeats inside a batch (padded last batch included)
            assert len(set(batch)) == len(batch)
            assert set(batch) <= set(ids)
        flat = [i for batch in epoch_batches for i in batch]
        # every id at least once per epoch
        assert set(flat) == set(ids)
        # the first n ids of an epoch are a permutation; the padding repeats the epoch's own first ids
        assert sorted(flat[:n_ids]) == sorted(ids)
        assert flat[n_ids:] == flat[:pad]
        counts = Counter(flat)
        assert sorted(counts.values()) == [1] * (n_ids - pad) + [2] * pad


@FAST
@given(st.integers(1, 25), st.integers(1, 30), st.integers(0, 2**32 - 1))
def test_same_seed_gives_the_same_sequence(n_ids: int, batch_size: int, seed: int) -> None:
    ids = make_ids(n_ids)
    first = batches(EpochSampler(ids, batch_size), random.Random(seed), 12)
    second = batches(EpochSampler(ids, batch_size), random.Random(seed), 12)
    assert first == second


@FAST
@given(st.integers(1, 25), st.integers(1, 30), st.integers(0, 2**32 - 1), st.integers(0, 20), st.integers(1, 20))
def test_json_round_trip_continues_identically(n_ids: int, batch_size: int, seed: int, before: int, after: int) -> None:
    ids = make_ids(n_ids)
    sampler = EpochSampler(ids, batch_size)
    rng = random.Random(seed)
    batches(sampler, rng, before)

    snapshot = json.loads(json.dumps(sampler.to_json()))
    rng_state = rng.getstate()
    expected = batches(sampler, rng, after)
    expected_epoch = sampler.epoch

    restored_rng = random.Random()
    restored_rng.setstate(rng_state)
    restored = EpochSampler.from_json(list(ids), batch_size, snapshot)
    assert restored.to_json() == snapshot
    assert batches(restored, restored_rng, after) == expected
    assert restored.epoch == expected_epoch


def test_to_json_is_plain_json_and_records_the_position() -> None:
    sampler = EpochSampler(make_ids(5), 2)
    rng = random.Random(1)
    assert sampler.to_json() == {"epoch": -1, "order": [], "position": 0}
    first = sampler.next_batch(rng)
    data = sampler.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["epoch"] == 0
    assert data["position"] == 2
    assert data["order"][:2] == first
    assert len(data["order"]) == 6  # 5 ids padded to 3 batches of 2


def test_different_seeds_shuffle_differently() -> None:
    ids = make_ids(30)
    sequences = {tuple(map(tuple, batches(EpochSampler(ids, 3), random.Random(seed), 10))) for seed in range(8)}
    assert len(sequences) == 8


def test_new_epochs_reshuffle() -> None:
    ids = make_ids(30)
    sampler = EpochSampler(ids, 5)
    rng = random.Random(3)
    epochs = [tuple(i for batch in batches(sampler, rng, 6) for i in batch) for _ in range(4)]
    assert len(set(epochs)) == 4


def test_batch_larger_than_the_ids_returns_every_id_each_time() -> None:
    ids = make_ids(3)
    sampler = EpochSampler(ids, 10)
    assert sampler.batch_size == 3
    rng = random.Random(0)
    for epoch in range(5):
        assert sorted(sampler.next_batch(rng)) == sorted(ids)
        assert sampler.epoch == epoch


def test_sampler_uses_only_the_callers_generator() -> None:
    # the sampler draws from the generator it is given, and only when it starts an epoch
    sampler = EpochSampler(make_ids(6), 3)
    rng = random.Random(11)
    sampler.next_batch(rng)
    state = rng.getstate()
    sampler.next_batch(rng)  # second batch of the same epoch: no draw
    assert rng.getstate() == state
    sampler.next_batch(rng)  # a new epoch: a shuffle
    assert rng.getstate() != state


def test_empty_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least one id"):
        EpochSampler((), 3)
