"""``rowtrail export FORMAT V -o PATH`` end to end through the CLI's entry point (``main``): the JSON
summary, the human line, exit codes and messages."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from rowtrail import hashing
from rowtrail.cli import app as cli_app


@pytest.fixture(scope="module", autouse=True)
def export_command():
    # The lead registers the command in cli/app.py; until then, register it here the same way.
    if not any(c.name == "export" for c in cli_app.app.registered_commands):
        from rowtrail.cli import export as export_cmd

        cli_app.app.command("export")(export_cmd.export)


@pytest.fixture
def store(tmp_store, write_jsonl):
    tmp_store.sources.add("alpha", kind="partner-dump", license="CC-BY-4.0", legal_basis="contract")
    tmp_store.sources.add("beta", kind="crawl")
    rows = [{"id": f"k{i}", "prompt": f"p{i}", "response": f"r{i}"} for i in range(30)]
    tmp_store.ingest(str(write_jsonl(rows)), source="alpha", key_field="id", content_fields=["prompt", "response"])
    tmp_store.ingest(str(write_jsonl([{"id": i, "text": f"t{i}"} for i in range(10)], "b.jsonl")), source="beta", key_field="id")
    tmp_store.commit("first", tag="v1", sign=False)
    return tmp_store


def run(store, capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        cli_app.main(["--store", str(store.path), "export", *args])
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def test_export_parquet_json_summary(store, capsys, tmp_path):
    out = tmp_path / "v1"
    code, stdout, _ = run(store, capsys, "parquet", "v1", "-o", str(out), "--json")
    assert code == 0
    res = json.loads(stdout)
    v = store.version("v1")
    assert (res["format"], res["rows"], res["version_id"], res["content_id"], res["merkle_root"]) == ("parquet", 40, v.id, v.content_id, v.content["merkle_root"])
    assert res["path"] == str(out) and res["bytes"] == sum(f["bytes"] for f in res["files"])
    t = pq.read_table(out)
    assert sorted(t.column("row_id").to_pylist()) == sorted(hashing.ids_hex(store.version_rows(v.id)["id"]))
    assert "source_key" in t.column_names


def test_export_options_and_human_summary(store, capsys, tmp_path):
    out = tmp_path / "alpha.jsonl.gz"
    code, stdout, _ = run(store, capsys, "jsonl", "v1", "-o", str(out), "--no-provenance", "--source", "alpha", "--weights", "apply")
    assert code == 0
    assert stdout.startswith(f"exported 30 rows of v1 to {out} (jsonl, 1 file, ")
    import gzip

    lines = [json.loads(x) for x in gzip.decompress(out.read_bytes()).decode().splitlines()]
    assert len(lines) == 30 and set(lines[0]) == {"prompt", "response", "row_id"}


def test_export_refuses_an_existing_path_without_force(store, capsys, tmp_path):
    out = tmp_path / "v1.parquet"
    assert run(store, capsys, "parquet", "v1", "-o", str(out))[0] == 0
    code, _, err = run(store, capsys, "parquet", "v1", "-o", str(out))
    assert code == 1 and "ExportExistsError" in err and "--force" in err
    assert run(store, capsys, "parquet", "v1", "-o", str(out), "--force", "--source", "beta")[0] == 0
    assert pq.read_table(out).num_rows == 10


def test_export_errors(store, capsys, tmp_path):
    code, _, err = run(store, capsys, "csv", "v1", "-o", str(tmp_path / "x.csv"))
    assert code == 1 and "unknown export format 'csv'" in err and "parquet" in err and "jsonl" in err
    code, _, err = run(store, capsys, "parquet", "v1")
    assert code == 2 and "output path" in err
    code, _, err = run(store, capsys, "parquet", "v1", "-o", str(tmp_path / "x"), "--weights", "sample")
    assert code == 2 and "--weights" in err
    code, _, err = run(store, capsys, "parquet", "v7", "-o", str(tmp_path / "x"))
    assert code == 1 and "rowtrail log" in err
    code, _, err = run(store, capsys, "parquet", "v1", "-o", str(tmp_path / "x"), "--source", "gamma")
    assert code == 1 and "rowtrail source list" in err
    assert not any(tmp_path.glob("x*"))
