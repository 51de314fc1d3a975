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
