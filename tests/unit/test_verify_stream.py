"""Verify streams a version chunk by chunk (issue 7: a multi-terabyte store stays checkable in bounded
memory) and still finds everything the whole-array checks found.

The store is built with 8-row average chunks; verify reads 64 rows, 32 provenance rows and 300 rows
per full-check pass at a time and hashes 1,024 ids at a time, so every version spans many batches,
slabs, passes and Merkle blocks. Each damage below is written the way a forger who can rewrite a
manifest would (new, well-formed chunk objects; the manifest object rewritten in place), and the exact
problems verify reports for the version are pinned: they are the ones the whole-array implementation
reported for the same damage (compared side by side while this was written).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import rowtrail as rt
from rowtrail import steps
from rowtrail.hashing import exact_sums, id_bytes
from rowtrail.ops import verify as verify_mod
from rowtrail.versions import manifest

# -- pieces ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [0, 1, 3, 10])
@pytest.mark.parametrize("n", [0, 1, 2, 1023, 1024, 1025, 5000])
def test_merkle_builder_fed_in_pieces_equals_upper_levels(monkeypatch: pytest.MonkeyPatch, n: int, level: int) -> None:
    rng = np.random.default_rng(n * 31 + level)
    ids = np.frombuffer(rng.bytes(32 * n), dtype="S32")
    for block in (1 << max(level, 2), 1 << 12):
        monkeypatch.setattr(manifest, "HASH_BLOCK", block)
        root, nodes = manifest.upper_levels(ids, level)
        builder, at = manifest.MerkleBuilder(level), 0
        while at < n:
            step = int(rng.integers(1, 700))
            builder.add(ids[at : at + step])
            at += step
        got_root, got_nodes = builder.finish()
        assert (got_root, got_nodes.tobytes()) == (root, nodes.tobytes()), (n, level, block)
        assert builder.count == n
        own = manifest.MerkleBuilder(level, block=1 << max(level, 1))  # its own block: any power of two
        own.add(ids)
        assert own.finish()[0] == root
    with pytest.raises(ValueError, match="power of two"):
        manifest.MerkleBuilder(0, block=3)


def test_sums_fed_in_pieces_are_the_exact_sums_correctly_rounded() -> None:
    rng = random.Random(7)
    for trial in range(60):
        n = rng.randrange(1, 400)
        kind = trial % 3
        if kind == 0:  # integer weights: the float sum is exact
            w = np.array([float(rng.randrange(0, 5)) for _ in range(n)])
        elif kind == 1:  # fractions whose plain float sum rounds differently from the exact one
            w = np.array([rng.choice([0.1, 0.2, 0.3, 1e-17, 1 / 3]) for _ in range(n)])
        else:  # magnitudes that cancel: a running float sum loses everything
            w = np.array([rng.choice([1e16, -1e16, 1.0, 1e-8, 3.5, -2.25]) for _ in range(n)])
        groups = np.array([rng.randrange(4) for _ in range(n)])
        want_total, want = exact_sums(w, groups, 4)
        sums = verify_mod._Sums()
        cuts = sorted(rng.sample(range(1, n), min(n - 1, 5))) if n > 1 else []
        for lo, hi in zip([0, *cuts], [*cuts, n]):
            for g in range(4):
                sums.add(g, w[lo:hi][groups[lo:hi] == g])
        assert sums.total() == want_total, (trial, sums.total(), want_total)
        assert [sums.value(g) for g in range(4)] == want.tolist(), trial
    assert math.fsum([0.1] * 10) == 1.0 and sum([0.1] * 10) != 1.0  # the case kind 1 guards


# -- a store --------------------------------------------------------------------------------------


def _upper(text: str) -> str:
    return text.upper()


def _pipeline() -> list[Any]:
    return [
        steps.filter("length(text) > 12", reason="short"),
        steps.dedupe_exact(on="content_sha256", keep="earliest"),
        steps.upsample(source=["src-1"], factor=2),
        steps.rewrite(_upper, name="upper", field="text"),  # rows a step derives: DESIGN format 4
    ]


def _corpus(path: Path, n: int, prefix: str) -> Path:
    rng = random.Random(prefix)
    with open(path, "w") as fh:
        for i in range(n):
            text = f"text {prefix} {i} " + "x" * rng.randrange(40)
            if i % 17 == 0 and i:
                text = f"text {prefix} {i - 1} again"
            fh.write(json.dumps({"id": f"{prefix}{i}", "source": f"src-{i % 4}", "text": text}) + "\n")
    return path


@pytest.fixture(autouse=True)
def _small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small chunks, batches, slabs and passes, so a small store exercises every boundary."""
    monkeypatch.setattr(manifest, "CHUNK_MODULUS", 8)
    monkeypatch.setattr(verify_mod, "ROW_BATCH", 64)
    monkeypatch.setattr(verify_mod, "READ_SLAB", 32)
    monkeypatch.setattr(verify_mod, "ROWS_PER_PASS", 300)
    monkeypatch.setattr(verify_mod, "MERKLE_BLOCK", 1 << 10)  # the least a level-10 tree can take


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(store, ROWTRAIL_HOME): v1 by a pipeline over two ingests; v2 after a removal and a third."""
    base = tmp_path_factory.mktemp("verify-stream")
    home, path = base / "home", base / "store"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROWTRAIL_HOME", str(home))
        mp.delenv("ROWTRAIL_SIGNING_KEY", raising=False)
        mp.setattr(manifest, "CHUNK_MODULUS", 8)
        rt.keygen()
        store = rt.init(path)
        for k in range(4):
            store.sources.add(f"src-{k}", kind="other", license="MIT", legal_basis="consent")
        opts: dict[str, Any] = dict(source_field="source", key_field="id", content_fields=["text"])
        store.ingest(_corpus(base / "a.jsonl", 900, "a"), **opts)
        store.ingest(_corpus(base / "b.jsonl", 400, "b"), **opts)
        store.apply(_pipeline())
        store.commit("v1", tag="v1")
        store.remove(source="src-3", reason="gone")
        store.ingest(_corpus(base / "c.jsonl", 200, "c"), **opts)
        store.apply(_pipeline())
        store.commit("v2", tag="v2")
    yield path, home


@pytest.fixture
def store_path(template: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path, home = template
    monkeypatch.setenv("ROWTRAIL_HOME", str(home))
    shutil.copytree(path, tmp_path / "store")
    return tmp_path / "store"


def _version_problems(rep: Any) -> list[str]:
    return [p["problem"] for p in rep.problems if p["object"].startswith("version ")]


def test_a_good_store_verifies_in_full_and_sampled(store_path: Path) -> None:
    store = rt.open(store_path)
    counts = [v.content["row_count"] for v in store.versions()]
    assert min(counts) > 3 * verify_mod.ROWS_PER_PASS  # several passes, batches and slabs per version
    rep = store.verify()
    assert rep.ok, rep.problems
    assert rep.checked["versions"] == 2 and rep.checked["rows"] == sum(counts)
    rep = store.verify(sample=25)
    assert rep.ok, rep.problems
    assert rep.checked["rows"] == 50
    rep = store.verify(version="v1", sample=10_000)  # a sample past the row count checks every row
    assert rep.ok and rep.checked["rows"] == counts[0]


# -- damage a forger writes: well-formed chunks, the manifest rewritten -------------------------------


def _records(store: Any, chunks: list[list[Any]], records: bool = True) -> np.ndarray:
    return np.concatenate([manifest.decode_chunk(store.backend.read_bytes(c[0]), records) for c in chunks])


def _put(store: Any, arr: np.ndarray, ends: list[int]) -> list[list[Any]]:
    """Chunks of ``arr`` ending at ``ends`` (not necessarily where the cut rule puts them)."""
    ids = arr["id"] if arr.dtype.names else arr
    out, start = [], 0
    for end in ends:
        digest = store.backend.put_bytes(manifest.encode_chunk(arr[start:end]))
        first, last = (id_bytes(ids, start).hex(), id_bytes(ids, end - 1).hex()) if end > start else ("", "")
        out.append([digest, end - start, first, last])
        start = end
    return out


def _rows_edit(edit: Callable[[np.ndarray], None]) -> Callable[[Any, dict[str, Any]], None]:
    def damage(store: Any, man: dict[str, Any]) -> None:
        recs = _records(store, man["rows"]["chunks"]).copy()
        edit(recs)
        man["rows"]["chunks"] = manifest.write_chunks(store.backend, recs)

    return damage


def _weight(recs: np.ndarray) -> None:
    recs["w"][5] += 0.5


def _row_id(recs: np.ndarray) -> None:
    b = bytearray(recs["id"][10].ljust(32, b"\0"))
    b[31] ^= 1  # the last bit: still between its neighbours
    assert recs["id"][9] < bytes(b) < recs["id"][11]
    recs["id"][10] = bytes(b)


def _moved(recs: np.ndarray) -> None:  # two rows point at each other's provenance
    recs["seg"][3], recs["seg"][4] = recs["seg"][4], recs["seg"][3]
    recs["row"][3], recs["row"][4] = recs["row"][4], recs["row"][3]


def _no_segment(recs: np.ndarray) -> None:
    recs["seg"][3] = 999


def _split_off_first(store: Any, man: dict[str, Any]) -> None:
    recs = _records(store, man["rows"]["chunks"])
    ends = manifest.chunk_cuts(recs["id"]).tolist()
    assert ends[0] > 1
    man["rows"]["chunks"] = _put(store, recs, [1, *ends])


def _merge_first_two(store: Any, man: dict[str, Any]) -> None:
    recs = _records(store, man["rows"]["chunks"])
    man["rows"]["chunks"] = _put(store, recs, manifest.chunk_cuts(recs["id"]).tolist()[1:])


def _empty_chunk(store: Any, man: dict[str, Any]) -> None:
    recs = _records(store, man["rows"]["chunks"])
    ends = manifest.chunk_cuts(recs["id"]).tolist()
    man["rows"]["chunks"] = _put(store, recs, [ends[0], *ends])


def _swap_chunks(part: str) -> Callable[[Any, dict[str, Any]], None]:
    def damage(store: Any, man: dict[str, Any]) -> None:
        c = man[part]["chunks"]
        c[0], c[1] = c[1], c[0]

    return damage


def _repeat_chunk(store: Any, man: dict[str, Any]) -> None:
    man["rows"]["chunks"].insert(1, man["rows"]["chunks"][1])


def _count(store: Any, man: dict[str, Any]) -> None:
    man["rows"]["chunks"][2][1] += 1


def _ranges(store: Any, man: dict[str, Any]) -> None:
    man["rows"]["chunks"][2][2] = "00" * 32
    man["rows"]["chunks"][4][3] = "ff" * 32


def _content_list(change: str) -> Callable[[Any, dict[str, Any]], None]:
    def damage(store: Any, man: dict[str, Any]) -> None:
        hashes = _records(store, man["contents"]["chunks"], False)
        if change == "drop":
            hashes = np.delete(hashes, 7)
        else:
            b = bytearray(hashes[7].ljust(32, b"\0"))
            b[31] ^= 1
            hashes = np.unique(np.append(hashes, np.frombuffer(bytes(b), dtype="S32")))
        man["contents"]["chunks"] = manifest.write_chunks(store.backend, hashes)

    return damage


def _inputs_drop(store: Any, man: dict[str, Any]) -> None:
    man["inputs"]["chunks"] = manifest.write_chunks(store.backend, np.delete(_records(store, man["inputs"]["chunks"]), 3))


def _inputs_are_rows(store: Any, man: dict[str, Any]) -> None:
    man["inputs"]["chunks"] = man["rows"]["chunks"]


def _several(store: Any, man: dict[str, Any]) -> None:  # each list reports its own damage
    _count(store, man)
    _swap_chunks("contents")(store, man)
    _swap_chunks("inputs")(store, man)


WEIGHTS = ["weights_sha256 does not match its rows", "weight_total does not match its rows", "per_source counts do not match its rows"]
RUN = "its rows are not its pipeline run's output"
UNSORTED = "ids are not strictly sorted (duplicated or out of order)"
UNCUT = "chunks are not cut where the chunking rule puts boundaries"
CONTENTS = [
    "content_root does not match its content hashes",
    "the stored Merkle nodes do not match its content hashes",
    "its content hash list is not the distinct content hashes of its rows",
]
DAMAGE: dict[str, tuple[Callable[[Any, dict[str, Any]], None], list[str]]] = {
    "a weight": (_rows_edit(_weight), [*WEIGHTS, RUN]),
    "a row id": (
        _rows_edit(_row_id),
        ["merkle_root does not match its rows", "the stored Merkle nodes do not match its rows", WEIGHTS[0], RUN],
    ),
    "rows pointing at each other's provenance": (_rows_edit(_moved), ["per_source counts do not match its rows"]),
    "a segment that does not exist": (_rows_edit(_no_segment), ["cannot read its rows' provenance: list index out of range"]),
    "a chunk cut where no boundary is": (_split_off_first, [UNCUT]),
    "two chunks as one": (_merge_first_two, [UNCUT]),
    "an empty chunk": (_empty_chunk, [UNCUT]),
    "chunks swapped": (_swap_chunks("rows"), [UNSORTED]),
    "a chunk twice": (_repeat_chunk, [UNSORTED]),
    "a chunk's count": (_count, ["chunk … holds N bytes, not n rows"]),
    "chunk ranges": (_ranges, ["chunk … does not span the range its manifest states"] * 2),
    "a content hash dropped": (_content_list("drop"), CONTENTS),
    "a content hash added": (_content_list("add"), CONTENTS),
    "content chunks swapped": (_swap_chunks("contents"), [UNSORTED]),
    "an input dropped": (_inputs_drop, ["inputs_root does not match its inputs"]),
    "the rows as inputs": (_inputs_are_rows, ["inputs_root does not match its inputs"]),
    "input chunks swapped": (_swap_chunks("inputs"), [UNSORTED]),
    "three lists at once": (_several, ["chunk … holds N bytes, not n rows", UNSORTED, UNSORTED]),
}


def _rewrite_manifest(path: Path, tag: str, damage: Callable[[Any, dict[str, Any]], None]) -> None:
    store = rt.open(path)
    info = store.state.versions[store.state.tags[tag]]
    man = orjson.loads(store.backend.read_bytes(info.manifest))
    damage(store, man)
    target = store.backend.object_path(info.manifest)
    os.chmod(target, 0o644)
    target.write_bytes(orjson.dumps(man))


@pytest.mark.parametrize("sample", [None, 40])
@pytest.mark.parametrize("what", list(DAMAGE))
def test_each_damage_is_reported_as_the_whole_array_checks_reported_it(store_path: Path, what: str, sample: int | None) -> None:
    damage, expected = DAMAGE[what]
    _rewrite_manifest(store_path, "v2", damage)
    rep = rt.open(store_path).verify(version="v2", sample=sample)
    assert not rep.ok
    got = [
        re.sub(r"^chunk [0-9a-f]{16}…", "chunk …", re.sub(r"holds \d+ bytes, not \d+ rows", "holds N bytes, not n rows", p))
        for p in _version_problems(rep)
    ]
    assert got == expected, rep.problems
    assert any(p["object"].startswith("object ") and "damaged" in p["problem"] for p in rep.problems)  # the manifest itself


def _edit_column(path: Path, column: str, row: int, edit: Callable[[Any], Any]) -> None:
    table = pq.read_table(path)
    values = table.column(column).to_pylist()
    values[row] = edit(values[row])
    table = table.set_column(table.column_names.index(column), column, pa.array(values, table.schema.field(column).type))
    os.chmod(path, 0o644)
    pq.write_table(table, path)


def test_full_verify_checks_every_row_in_passes_and_finds_a_changed_text(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = rt.open(store_path)
    v2 = store.version("v2")
    recs = store.version_rows(v2.id)
    seg = int(recs["seg"][len(recs) // 2])
    row = int(recs["row"][len(recs) // 2])
    _edit_column(store.backend.object_path(store.state.segments[seg].content), "content", row, lambda t: t + "!")
    passes: list[set[int]] = []
    real = verify_mod._rows_in
    monkeypatch.setattr(verify_mod, "_rows_in", lambda st, chunks, segs: passes.append(segs) or real(st, chunks, segs))
    rep = rt.open(store_path).verify(version="v2")
    assert [p for p in rep.problems if p["object"] == f"segment {seg}"] == [
        {"object": f"segment {seg}", "problem": "1 row(s) whose row id or content hash does not recompute"}
    ]
    assert rep.checked["rows"] == len(recs)
    assert len(passes) > 1 and sorted(s for group in passes for s in group) == sorted(set(recs["seg"].tolist()))


def test_sampled_verify_reads_only_the_row_groups_of_its_rows(store_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[int] = []
    real = pq.ParquetFile.read_row_groups

    def spy(self: pq.ParquetFile, groups: list[int], *args: Any, **kwargs: Any) -> pa.Table:
        read.append(sum(self.metadata.row_group(g).num_rows for g in groups))
        return real(self, groups, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", spy)
    monkeypatch.setattr(verify_mod, "READ_SLAB", 1 << 16)
    store = rt.open(store_path)
    rep = store.verify(version="v2", sample=3)
    assert rep.ok and rep.checked["rows"] == 3
    total = sum(store.state.segments[s].rows for s in range(len(store.state.segments)))
    assert 0 < sum(read) < total // 4, (read, total)
