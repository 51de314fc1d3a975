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


# -- on Ray: map tasks cut the features by partition, one task plans each partition ---------------------
@pytest.fixture(scope="module")
def ray_local():
    """A local Ray (2 CPUs) for this module, shut down after it when this module started it (the Ray
    engine's own tests start theirs with their S3 test server's environment)."""
    ray = pytest.importorskip("ray")
    from rowtrail.engines.ray import ensure_ray

    started = not ray.is_initialized()
    ensure_ray(num_cpus=2)
    yield ray
    if started:
        ray.shutdown()


def corpus_rows(n: int, prefix: str, shared: int = 0) -> list[dict]:
    """Rows whose first ``shared`` are exact copies of source alpha's (duplicate content across
    sources) and whose prompts repeat in source beta (a string key with many duplicate groups)."""
    rows = []
    for i in range(n):
        who = "alpha" if i < shared else prefix
        prompt = f"{who} question {i % 9 if prefix == 'beta' else i}"
        rows.append({"id": f"{prefix}-{i}", "prompt": prompt, "response": f"{who} answer {i} " + "more " * (i % 4)})
    return rows


@pytest.fixture
def twin_stores(tmp_store, write_jsonl, tmp_path):
    import shutil

    import rowtrail as rt

    s = tmp_store
    for src in ("alpha", "beta", "gamma"):
        s.sources.add(src, kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    opts = dict(key_field="id", content_fields=["prompt", "response"])
    s.ingest(write_jsonl(corpus_rows(70, "alpha"), "alpha.jsonl"), source="alpha", **opts)
    s.ingest(write_jsonl(corpus_rows(60, "beta", shared=25), "beta.jsonl"), source="beta", **opts)
    s.ingest(write_jsonl(corpus_rows(40, "gamma", shared=10), "gamma.jsonl"), source="gamma", **opts)
    shutil.copytree(s.path, tmp_path / "twin")
    return s, rt.open(tmp_path / "twin")


def global_pipeline():
    return [
        steps.filter("length(response) > 14", reason="too-short", name="too-short"),
        steps.dedupe_exact(on="content_sha256", keep="source-priority", priority=["beta", "alpha"]),
        steps.dedupe_exact(on="prompt", keep="earliest", name="same-prompt"),
        steps.mix({"alpha": 0.5, "beta": 0.3, "gamma": 0.2}, seed="m"),
    ]


def stored_rows(store, digest):
    import pyarrow.parquet as pq

    return set() if digest is None else {tuple(r.values()) for r in pq.read_table(store.backend.object_path(digest)).to_pylist()}


def test_ray_plans_global_steps_by_partitions_with_the_local_engines_results(ray_local, twin_stores, monkeypatch):
    from rowtrail.engines import local as local_engine
    from rowtrail.engines.ray import RayEngine
    from rowtrail.ops.apply import apply, read_run
    from rowtrail.steps.builtin import Mix

    local, remote = twin_stores
    monkeypatch.setattr(local_engine, "BATCH_ROWS", 16)  # many batches, so many map tasks
    rep_l = apply(local, global_pipeline(), engine="local")
    # the driver must not plan these steps whole: it only merges partition plans and sums partials
    merged, summed = [], []
    real_merge, real_sum = DedupeExact.merge_plans, Mix.plan_from_partials
    monkeypatch.setattr(DedupeExact, "merge_plans", lambda self, plans: merged.append(len(plans)) or real_merge(self, plans))
    monkeypatch.setattr(Mix, "plan_from_partials", lambda self, partials: summed.append(len(partials)) or real_sum(self, partials))

    def whole(self, features):
        raise AssertionError(f"{self.name} planned whole on the driver")

    monkeypatch.setattr(DedupeExact, "plan", whole)
    monkeypatch.setattr(Mix, "plan", whole)
    monkeypatch.setattr(RayEngine, "plan_budget", 1500)  # a few KB of features: several partitions
    rep_r = apply(remote, global_pipeline(), engine="ray")
    assert len(merged) == 2 and min(merged) >= 3 and summed and summed[0] > 4, (merged, summed)
    reports = {s["name"]: s for s in rep_l.steps}
    assert reports["dedupe-exact"]["edges"]["merged"] and reports["same-prompt"]["edges"]["merged"] and reports["mix"]["dropped"]
    assert rep_l.steps == rep_r.steps and rep_l.run == rep_r.run
    doc_l, rec_l = read_run(local, rep_l.run)
    doc_r, rec_r = read_run(remote, rep_r.run)
    for sid, s in doc_l["steps"].items():
        for kind in ("edges", "drops"):
            assert stored_rows(local, s[kind]) == stored_rows(remote, doc_r["steps"][sid][kind]), (s["name"], kind)
    assert doc_l == doc_r and np.array_equal(rec_l, rec_r)
    v_l, v_r = local.commit("local"), remote.commit("ray, partitioned")
    assert v_l.content_id == v_r.content_id and v_l.content["merkle_root"] == v_r.content["merkle_root"]
    assert v_l.content["content_root"] == v_r.content["content_root"]


def test_ray_forced_partitions_and_a_plan_error_on_a_worker(ray_local, twin_stores, monkeypatch):
    from rowtrail.ops.apply import apply

    local, remote = twin_stores
    monkeypatch.setenv("ROWTRAIL_PARTITIONS", "4")
    rep_r = apply(remote, [steps.dedupe_exact(on="prompt", keep="earliest")], engine="ray")
    monkeypatch.delenv("ROWTRAIL_PARTITIONS")
    rep_l = apply(local, [steps.dedupe_exact(on="prompt", keep="earliest")], engine="local")
    assert rep_l.run == rep_r.run and rep_l.steps[0]["edges"]["merged"]
    # a partition's plan fails on a worker: the caller gets the step's own error
    monkeypatch.setenv("ROWTRAIL_PARTITIONS", "3")
    with pytest.raises(StepError, match="failed on purpose"):
        apply(remote, [PlanFails()], engine="ray")


class PlanFails(DedupeExact):
    """A dedupe whose plan fails (on the Ray worker that plans a partition)."""

    def plan(self, features):
        raise StepError(f"plan over {features.num_rows} rows failed on purpose")


def test_the_local_engine_planning_through_plan_global_stages_the_same_run(twin_stores, monkeypatch):
    """``LocalEngine._plan`` replaced by a call of ``plan_global`` (features batch by batch, forced
    into 4 partitions under the store's tmp dir) stages the run the whole-table plan stages."""
    from rowtrail.engines import local as local_engine
    from rowtrail.ops.apply import apply

    local, other = twin_stores
    monkeypatch.setattr(local_engine, "BATCH_ROWS", 16)
    rep_whole = apply(local, global_pipeline(), engine="local")
    tmp_dirs = []

    def by_partitions(self, frame, step, needs, found, stage):
        batches = (step.features(self.batch(frame, seg, pos, needs, found)) for seg, pos in frame.groups())
        tmp_dirs.append(self.store.backend.ensure_tmp())
        return plan_global(step, batches, len(frame), tmp_dirs[-1])

    monkeypatch.setattr(local_engine.LocalEngine, "_plan", by_partitions)
    monkeypatch.setenv("ROWTRAIL_PARTITIONS", "4")
    rep_parts = apply(other, global_pipeline(), engine="local")
    assert rep_parts.run == rep_whole.run and rep_parts.steps == rep_whole.steps
    assert len(tmp_dirs) == 3 and not any(p.name.startswith("plan-") for p in tmp_dirs[0].iterdir())
