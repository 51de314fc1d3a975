"""Global steps planned by partitions (engines/partition.py): the plan never depends on the number of
parts, only the plan outlives the call (its spill files are gone, also after an error), and steps
that plan from partials or whole give the plan they give over all features."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pyarrow as pa
import pytest

from rowtrail import steps
from rowtrail.engines import partition
from rowtrail.engines.partition import partition_count, partition_of, plan_global, split
from rowtrail.errors import RowtrailError, StepError
from rowtrail.steps.builtin import DedupeExact

SOURCES = ["alpha", "beta", "gamma", "delta"]


def input_batches(n: int, groups: int, seed: int, batch_rows: int = 997) -> list[pa.RecordBatch]:
    """Rows as a global step sees them: random ids, keys drawn from ``groups`` values (so most rows
    have duplicates, across sources and batches), a string column with nulls, ties in ingest order."""
    rng = np.random.default_rng(seed)
    ids = rng.bytes(32 * n)
    pool = [hashlib.sha256(f"k{i}".encode()).digest() for i in range(groups)]
    pick = rng.integers(0, groups, n)
    labels = np.array([f"label-{i % (groups // 3 + 1)}" for i in range(groups)], dtype=object)
    text = labels[pick]
    text[rng.random(n) < 0.05] = None
    table = pa.table(
        {
            "row_id": pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), n, [None, pa.py_buffer(ids)]),
            "weight": np.ones(n),
            "content_sha256": pa.array([pool[i] for i in pick], pa.binary(32)),
            "source_id": pa.array(np.array(SOURCES, dtype=object)[rng.integers(0, len(SOURCES), n)], pa.string()),
            "ingest_seq": rng.integers(1, 6, n),
            "lane": pa.array(text, pa.string()),
        }
    )
    return table.to_batches(max_chunksize=batch_rows)


def features(step, batches):
    return [step.features(b) for b in batches]


def whole_plan(step, batches):
    return step.plan(pa.Table.from_batches(features(step, batches)))


def assert_same_plan(got, want):
    assert got[0].dtype == want[0].dtype and got[1].dtype == want[1].dtype
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])


KEEPS = [
    dict(keep="source-priority", priority=["gamma", "alpha"]),
    dict(keep="earliest"),
    dict(),  # the default: source-priority, no list (then earliest, then smallest id)
    dict(keep="row-id"),
]


@pytest.mark.parametrize("keep", KEEPS, ids=["priority-list", "earliest", "default", "row-id"])
@pytest.mark.parametrize("on", ["content_sha256", "lane"])
def test_dedupe_exact_by_partitions_gives_the_whole_plan_for_any_number_of_parts(tmp_path, keep, on):
    batches = input_batches(6000, 900, seed=len(str(keep)) + len(on))
    step = steps.dedupe_exact(on=on, **keep)
    want = whole_plan(step, batches)
    assert 0 < len(want[0]) < 6000  # many groups, many losers
    for parts in (1, 2, 7, 64):
        got = plan_global(step, iter(features(step, batches)), 6000, tmp_path, partitions=parts)
        assert_same_plan(got, want)
    assert list(tmp_path.iterdir()) == []


def test_the_number_of_parts_comes_from_the_budget_and_spill_files_exist_only_during_the_plan(tmp_path):
    batches = input_batches(3000, 400, seed=3)
    seen = []

    class Watching(DedupeExact):
        def plan(self, features):
            seen.append((features.num_rows, sorted(p.name for p in tmp_path.rglob("*.arrow"))))
            return super().plan(features)

    step = Watching()
    feats = features(step, batches)
    row_bytes = feats[0].nbytes / feats[0].num_rows
    assert partition_count(3000, row_bytes, budget_bytes=int(3000 * row_bytes / 5) + 1) == 5
    got = plan_global(step, iter(feats), 3000, tmp_path, budget_bytes=int(3000 * row_bytes / 5) + 1)
    assert len(seen) == 5 and sum(n for n, _ in seen) == 3000
    assert seen[0][1] == [f"{p}.arrow" for p in range(5)]  # all parts written before the first plan
    assert seen[-1][1] == ["4.arrow"]  # each part's file deleted once planned
    assert list(tmp_path.iterdir()) == []
    assert_same_plan(got, DedupeExact().plan(pa.Table.from_batches(feats)))
    # a budget the features fit in: one part, planned in memory
    seen.clear()
    plan_global(step, iter(feats), 3000, tmp_path)
    assert [n for n, _ in seen] == [3000] and seen[0][1] == []


def test_partitions_env_forces_the_count_and_is_checked(monkeypatch):
    monkeypatch.setenv("ROWTRAIL_PARTITIONS", "9")
    assert partition_count(10, 1.0) == 9
    monkeypatch.setenv("ROWTRAIL_PARTITIONS", "zero")
    with pytest.raises(RowtrailError, match="ROWTRAIL_PARTITIONS"):
        partition_count(10, 1.0)
    monkeypatch.delenv("ROWTRAIL_PARTITIONS")
    assert partition_count(10**10, 100.0) == partition.MAX_PARTITIONS and partition_count(1000, 100.0) == 1


def test_spill_files_are_removed_when_a_plan_or_the_features_fail(tmp_path):
    batches = input_batches(2000, 300, seed=5)

    class FailsOnThirdPart(DedupeExact):
        calls = 0

        def plan(self, features):
            type(self).calls += 1
            if type(self).calls == 3:
                raise StepError("plan failed on purpose")
            return super().plan(features)

    step = FailsOnThirdPart()
    with pytest.raises(StepError, match="on purpose"):
        plan_global(step, iter(features(step, batches)), 2000, tmp_path, partitions=6)
    assert FailsOnThirdPart.calls == 3 and list(tmp_path.iterdir()) == []

    def breaking():
        for k, b in enumerate(features(step, batches)):
            if k == 1:
                raise OSError("segment unreadable")
            yield b

    with pytest.raises(OSError, match="unreadable"):
        plan_global(DedupeExact(), breaking(), 2000, tmp_path, partitions=4)
    assert list(tmp_path.iterdir()) == []
    # features whose schema changes between batches: an error naming the step, files gone
    step = DedupeExact(on="lane")
    feats = features(step, batches)
    feats[1] = feats[1].set_column(feats[1].schema.get_field_index("key"), "key", feats[1].column("key").cast(pa.large_string()))
    with pytest.raises(StepError, match="dedupe-exact.*batch 1"):
        plan_global(step, iter(feats), 2000, tmp_path, partitions=3)
    assert list(tmp_path.iterdir()) == []


def test_mix_plans_from_partials_and_dedupe_near_whole(tmp_path):
    batches = input_batches(3000, 500, seed=7)
    mix = steps.mix({"alpha": 0.5, "beta": 0.3, "gamma": 0.2}, seed="m")
    want = whole_plan(mix, batches)
    assert plan_global(mix, iter(features(mix, batches)), 3000, tmp_path, partitions=5) == want
    assert mix.plan_from_partials([mix.partial(f) for f in features(mix, batches)]) == want
    assert plan_global(mix, iter([]), 0, tmp_path) is None
    texts = pa.array([f"the quick brown fox {i % 40} jumps over the lazy dog" for i in range(400)])
    near_batches = [
        b.append_column("response", texts.slice(b.num_rows * 0, b.num_rows)) for b in input_batches(400, 50, seed=1, batch_rows=400)
    ]
    near = steps.dedupe_near(on="response", threshold=0.7, shingle=3)
    assert near.partition_by is None and not near.by_partials
    assert_same_plan(plan_global(near, iter(features(near, near_batches)), 400, tmp_path, partitions=4), whole_plan(near, near_batches))
    assert list(tmp_path.iterdir()) == []


def test_equal_values_share_a_part_in_any_batch_type_or_chunking():
    digests = pa.array([hashlib.sha256(str(i % 250).encode()).digest() for i in range(500)], pa.binary(32))
    whole = partition_of(digests, 13)
    chunked = partition_of(pa.chunked_array([digests.slice(0, 123), digests.slice(123)]), 13)
    assert np.array_equal(whole, chunked) and np.array_equal(partition_of(digests.slice(7, 40), 13), whole[7:47])
    lead = np.frombuffer(b"".join(digests.to_pylist()), ">u8").reshape(-1, 4)[:, 0]
    assert np.array_equal(whole, (lead % 13).astype(np.int64))
    assert len(set(whole.tolist())) == 13  # digests spread over every part
    words = pa.array([f"w{i % 30}" for i in range(300)])
    parts = partition_of(words, 8)
    assert np.array_equal(parts, partition_of(words.cast(pa.large_string()), 8))
    for w in set(words.to_pylist()):
        assert len(set(parts[np.array(words.to_pylist()) == w].tolist())) == 1
    # DuckDB's hash is the same in another process (Ray workers split their own batches)
    import subprocess
    import sys

    code = "import pyarrow as pa; from rowtrail.engines.partition import partition_of; print(partition_of(pa.array([f'w{i}' for i in range(30)]), 8).tolist())"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ}).stdout.strip()
    assert other == str(partition_of(pa.array([f"w{i}" for i in range(30)]), 8).tolist())
    batch = pa.record_batch({"key": words, "n": np.arange(300)})
    pieces = split(batch, "key", 8)
    assert sum(p.num_rows for _, p in pieces) == 300
    for p, piece in pieces:
        assert set(partition_of(piece.column("key"), 8).tolist()) == {p}
        assert np.all(np.diff(piece.column("n").to_numpy()) > 0)  # rows keep their batch order
