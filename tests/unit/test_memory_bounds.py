"""The memory-bounded paths (bench/scale.py) compute exactly what the one-shot paths compute."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from rowtrail import hashing, steps
from rowtrail.segments import ids_column_to_numpy, numpy_to_ids_column
from rowtrail.steps.builtin import _hash_groups
from rowtrail.versions import manifest


def _sorted_ids(n: int, seed: int = 0) -> np.ndarray:
    ids = np.frombuffer(np.random.default_rng(seed).bytes(32 * n), dtype=hashing.ID_DTYPE)
    return ids[hashing.sort_ids(ids)]


@pytest.mark.parametrize("n", [1, 2, 1023, 1024, 1025, 4096, 5000, 3 * 4096 + 5])
@pytest.mark.parametrize("level", [0, 3, manifest.CACHE_LEVEL])
def test_upper_levels_in_blocks_equal_one_pass(monkeypatch, n: int, level: int) -> None:
    ids = _sorted_ids(n, n)
    root, nodes = manifest.upper_levels(ids, level)  # one pass: n ≤ HASH_BLOCK
    assert root == hashing.merkle_root(ids)
    levels = hashing.merkle_levels(ids)
    want = levels[-1:] if n <= (1 << level) else levels[level:]
    assert nodes.tobytes() == b"".join(x.tobytes() for x in want)
    for block in (1 << level, 1024, 2048):
        monkeypatch.setattr(manifest, "HASH_BLOCK", block)
        got_root, got_nodes = manifest.upper_levels(ids, level)
        assert got_root == root
        assert got_nodes.tobytes() == nodes.tobytes()


def test_weights_digest_in_blocks_equals_one_pass(monkeypatch) -> None:
    ids = _sorted_ids(5000)
    w = np.random.default_rng(1).random(5000) * 3
    monkeypatch.setattr(manifest, "HASH_BLOCK", 1024)
    assert manifest.weights_digest(ids, w) == hashing.weights_sha256(ids, w)
    assert manifest.weights_digest(ids[:0], w[:0]) == hashing.weights_sha256(ids[:0], w[:0])


def test_dedupe_exact_plan_sets_unique_prefixes_aside_without_changing_the_result() -> None:
    rng = np.random.default_rng(2)
    n = 3000
    keys = np.frombuffer(rng.bytes(32 * n), dtype="S32").copy()
    raw = keys.view(np.uint8).reshape(n, 32)
    raw[100:200] = raw[0:100]  # exact duplicates
    raw[300:400, :8] = raw[500:600, :8]  # same first 8 bytes, different keys: not duplicates
    raw[700:710] = raw[2990:3000]
    ids = np.frombuffer(rng.bytes(32 * n), dtype="S32")
    table = pa.table(
        {
            "row_id": numpy_to_ids_column(ids),
            "source_id": pa.array([f"s{i % 7}" for i in range(n)]),
            "ingest_seq": pa.array(rng.integers(0, 4, n)),
            "key": numpy_to_ids_column(keys),
        }
    )
    # several chunks, one of them a slice with an offset, as batches from the engine can be
    feats = pa.Table.from_batches(
        [*table.slice(0, 1000).to_batches(), table.slice(1000, 1500).to_batches()[0], *table.slice(2500).to_batches()]
    )
    step = steps.dedupe_exact(keep="source-priority", priority=["s3"])
    lost, into = step.plan(feats)
    whole = table.combine_chunks()
    want = step._resolve(whole, _hash_groups(ids_column_to_numpy(whole.column("key"))))
    assert len(lost) == 110
    assert lost.tobytes() == want[0].tobytes() and into.tobytes() == want[1].tobytes()


def test_memory_limit_reaches_duckdb_and_a_typo_is_an_actionable_error(monkeypatch, tmp_path) -> None:
    import duckdb

    from rowtrail.errors import RowtrailError
    from rowtrail.memory import duckdb_config

    monkeypatch.setenv("ROWTRAIL_MEMORY_LIMIT", "300MB")
    con = duckdb.connect(config=duckdb_config(tmp_path))
    limit = con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit.replace(" ", "").upper() in ("286.1MIB", "300.0MB", "300MB")
    assert con.execute("SELECT current_setting('temp_directory')").fetchone()[0] == str(tmp_path)
    monkeypatch.setenv("ROWTRAIL_MEMORY_LIMIT", "lots")
    with pytest.raises(RowtrailError, match="ROWTRAIL_MEMORY_LIMIT='lots' is not a size"):
        duckdb_config()


def _records(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    rec = np.zeros(n, dtype=manifest.RECORD_DTYPE)
    rec["id"] = pool[rng.integers(0, len(pool), n)]
    rec["w"] = rng.random(n)
    rec["seg"] = rng.integers(0, 9, n)
    rec["row"] = np.arange(n)
    return rec


def _pool(rng: np.random.Generator, trial: int) -> np.ndarray:
    """Ids drawn from a small pool; some trials make every 8-byte prefix tie, or ids differ only in
    trailing bytes (what numpy's 'S32' is least careful with)."""
    raw = rng.integers(0, 256, (int(rng.integers(1, 60)), 32), dtype=np.uint8)
    if trial % 3 == 0:
        raw[:, :8] = 7
    if trial % 5 == 0:
        raw[:, 8:31] = 0
    return raw.view(hashing.ID_DTYPE).ravel()


def test_sort_ids_on_record_fields_with_prefix_ties_is_the_bytewise_order() -> None:
    rng = np.random.default_rng(3)
    for trial in range(60):
        rec = _records(rng, _pool(rng, trial), int(rng.integers(0, 300)))
        order = hashing.sort_ids(rec["id"])  # a strided field: read through the records, not copied
        got = [bytes(rec[i : i + 1]["id"].tobytes()) for i in order]
        assert got == sorted(got)
        # stable: equal ids keep their order
        same = [i for i in order if rec["id"][i] == rec["id"][order[0]]]
        assert same == sorted(same)
        assert np.array_equal(order, hashing.sort_ids(np.ascontiguousarray(rec["id"])))


def test_input_set_union_and_difference_equal_the_set_definitions() -> None:
    from rowtrail.ops.inputs import difference, union_keep_first

    def reference_union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        both = np.concatenate([a, b]).astype(manifest.RECORD_DTYPE) if len(a) else b
        both = both[np.argsort(np.array([x.tobytes() for x in both["id"]], dtype=object), kind="stable")] if len(both) else both
        keep = np.ones(len(both), dtype=bool)
        keep[1:] = both["id"][1:] != both["id"][:-1]
        return both[keep]

    rng = np.random.default_rng(4)
    for trial in range(200):
        pool = _pool(rng, trial)
        a = reference_union(np.zeros(0, manifest.RECORD_DTYPE), _records(rng, pool, int(rng.integers(0, 40))))
        b = _records(rng, pool, int(rng.integers(0, 40)))
        want = reference_union(a, b)
        got = union_keep_first(a, b.copy())  # an id in both keeps a's record
        assert got.dtype == manifest.RECORD_DTYPE and got.tobytes() == want.tobytes(), trial
        drop = pool[rng.integers(0, len(pool), int(rng.integers(0, 20)))]
        assert difference(a, drop).tobytes() == a[~np.isin(a["id"], drop)].tobytes(), trial


def test_publish_byte_swaps_a_frame_in_place_to_the_stored_record_bytes() -> None:
    from rowtrail.engines.local import FRAME_DTYPE
    from rowtrail.ops.apply import as_stored_records

    frame = np.zeros(1000, dtype=FRAME_DTYPE)
    frame["id"] = np.frombuffer(np.random.default_rng(5).bytes(32 * 1000), dtype=hashing.ID_DTYPE)
    frame["w"] = np.linspace(0.5, 7.25, 1000)
    frame["seg"] = np.arange(1000) * 77
    frame["row"] = np.arange(1000)[::-1]
    want = frame.astype(manifest.RECORD_DTYPE).tobytes()
    got = as_stored_records(frame)
    assert got.dtype == manifest.RECORD_DTYPE and got.tobytes() == want
    assert np.shares_memory(got, frame)  # in place: no second copy of the rows


def test_column_cache_is_bounded_by_bytes(tmp_path, monkeypatch) -> None:
    import rowtrail as rt
    from rowtrail import store as store_module

    s = rt.init(tmp_path / "s")
    s.sources.add("a", kind="crawl", license="CC0-1.0", legal_basis="public")
    for part in range(6):
        s.ingest(pa.table({"key": [f"{part}-{i}" for i in range(500)], "text": [f"t {part} {i}" for i in range(500)]}), source="a", key_field="key")
    monkeypatch.setattr(store_module, "COLUMN_CACHE_BYTES", 3 * 500 * 32)
    for seg in range(len(s.state.segments)):
        s.segment_column(seg, "row_id")
    assert sum(v.nbytes for v in s._columns.values()) <= 3 * 500 * 32
    assert len(s._columns) == 3  # the three most recent segments
