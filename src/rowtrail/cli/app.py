"""The ``rowtrail`` command line: parses arguments, calls the verbs, renders. No work happens here.

Exit codes (mapped in one place, ``main``): 0 ok, 1 user error with an actionable message,
2 usage, 3 verification failure.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from ..errors import RowtrailError
from . import render

app = typer.Typer(
    name="rowtrail",
    help="A paper trail for every ML training row: sources, provenance, signed versions, diffs, traces, proofs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
_STORE: dict[str, str | None] = {"path": None}


@app.callback()
def _root(store: str | None = typer.Option(None, "--store", envvar="ROWTRAIL_STORE", help="Store path (default ./.rowtrail).")) -> None:
    _STORE["path"] = store


def open_store() -> Any:
    from .. import store as store_mod

    return store_mod.open(_STORE["path"])


def _write_or_print(text: str, output: Path | None) -> None:
    if output:
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        render.err.print(f"wrote {output}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


# -- store and keys ---------------------------------------------------------------------------------


@app.command()
def init(path: Path | None = typer.Argument(None, help="Where to create the store (default --store or ./.rowtrail).")) -> None:
    """Create a store."""
    from .. import store as store_mod

    s = store_mod.init(path if path is not None else _STORE["path"])
    render.out.print(f"Initialized rowtrail store in {s.url or s.path}")


@app.command()
def keygen(
    name: str = typer.Option("default", "--name", help="Key name under ROWTRAIL_HOME/keys."),
    force: bool = typer.Option(False, "--force", help="Replace an existing key of that name."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Make an Ed25519 signing key (private 0600 under ROWTRAIL_HOME) and trust its public key."""
    from ..versions.signing import keygen as make

    kp = make(name, force=force)
    data = {"name": kp.name, "private_key": str(kp.private_path), "public_key": str(kp.public_path), "key_id": kp.key_id}
    if as_json:
        render.print_json(data)
    else:
        render.kv("key", list(data.items()))


# -- ingest, remove, status, commit -------------------------------------------------------------------


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [x.strip() for x in v.split(",") if x.strip()]
    return out


@app.command()
def ingest(
    files: list[Path] = typer.Argument(..., help="JSONL (.gz/.zst), CSV or Parquet files."),
    source: str | None = typer.Option(None, "--source", "-s", help="Every row comes from this source."),
    source_field: str | None = typer.Option(None, "--source-field", help="Column naming each row's source."),
    key_field: str | None = typer.Option(None, "--key-field", "-k", help="Column holding each row's key in its source (default: the content hash)."),
    content_fields: list[str] | None = typer.Option(None, "--content-fields", "-c", help="Comma-separated content columns (default: all others)."),
    attr: list[str] | None = typer.Option(None, "--attr", "-a", help="Provenance attribute NAME=COLUMN (repeatable), e.g. teacher=teacher_model."),
    hash_fields: list[str] | None = typer.Option(None, "--hash-fields", help="Also store <field>_sha256 for these fields (e.g. prompt)."),
    binary_fields: list[str] | None = typer.Option(None, "--binary-fields", help="Binary fields to hash as base64."),
    corpus: str = typer.Option("main", "--corpus"),
    on_error: str = typer.Option("raise", "--on-error", help="raise: stop at the first bad row; quarantine: record bad rows and go on."),
    replace: bool = typer.Option(False, "--replace", help="This ingest is the source's whole content: drop its rows not in it."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Confirm a --replace that drops more than 1 % of a source."),
    workers: int | None = typer.Option(None, "--workers", help="Parallel readers (default: CPU count; with --engine ray, the cluster's)."),
    engine: str = typer.Option(
        "local",
        "--engine",
        help="Where the input is read: 'local' (worker processes) or 'ray' (Ray tasks; pip install 'rowtrail\\[ray]'). Same rows either way.",
    ),
    address: str | None = typer.Option(
        None, "--address", help="With --engine ray: the Ray cluster to join ('auto', 'ray://HOST:10001'); default: a local Ray."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Ingest rows with per-row provenance (staged until 'rowtrail commit')."""
    from ..ops.ingest import ENGINES

    if engine not in ENGINES:
        raise typer.BadParameter(f"--engine is one of {', '.join(ENGINES)}", param_hint="--engine")
    if address and engine != "ray":
        raise typer.BadParameter("--address needs --engine ray", param_hint="--address")
    s = open_store()
    with render.progress("ingest", not as_json) as bar:
        rep = s.ingest(
            [str(f) for f in files],
            source=source,
            source_field=source_field,
            key_field=key_field,
            content_fields=_split(content_fields) or None,
            attributes=_split(attr),
            hash_fields=_split(hash_fields),
            binary_fields=_split(binary_fields),
            corpus=corpus,
            on_error=on_error,
            replace=replace,
            yes=yes,
            workers=workers,
            progress=bar,
            engine=engine,
            address=address,
        )
    if as_json:
        render.print_json(rep.to_dict())
        return
    render.out.print(
        f"ingest {rep.ingest_id}: {rep.rows} rows read — {rep.new} new, {rep.unchanged} unchanged, "
        f"{rep.superseded} superseded, {rep.refresh_dropped} dropped by --replace, {rep.quarantined} quarantined"
    )
    render.table(None, ["source", "rows"], sorted(rep.sources.items()))
    if rep.quarantined:
        render.err.print(f"[yellow]{rep.quarantined} bad row(s) quarantined; see them with: rowtrail sql \"SELECT * FROM quarantine WHERE ingest_id = '{rep.ingest_id}'\"[/yellow]")


@app.command("rm")
def rm(
    source: str | None = typer.Option(None, "--source", "-s", help="Remove every row of this source."),
    row: list[str] | None = typer.Option(None, "--row", help="Remove this row id (repeatable)."),
    reason: str | None = typer.Option(None, "--reason", help="Why (recorded with each drop)."),
    corpus: str = typer.Option("main", "--corpus"),
) -> None:
    """Stage the removal of a source's rows, or of given rows (recorded as drops with a reason)."""
    if (source is None) == (not row):
        raise typer.BadParameter("give --source S or one or more --row ID")
    n = open_store().remove(source=source, row_ids=row, reason=reason, corpus=corpus)
    render.out.print(f"staged removal of {n} row(s); commit to record it")


@app.command()
def status(corpus: str = typer.Option("main", "--corpus"), as_json: bool = typer.Option(False, "--json")) -> None:
    """What is staged for a corpus beyond its head version."""
    st = open_store().status(corpus)
    if as_json:
        render.print_json(st)
        return
    head = st["head_tag"] or (st["head"] or "")[:12] or "(no versions yet)"
    render.out.print(f"corpus {corpus}, head {head}")
    if st["pipeline"]:
        names = " → ".join(p["name"] for p in st["pipeline"])
        how = "commit will run it over the staged inputs" if st["commit_runs_pipeline"] else "its staged run is ready to commit"
        render.out.print(f"pipeline: {names} ({how})", markup=False)
    if st["clean"]:
        render.out.print("nothing staged")
        return
    if st["per_source"]:
        render.table("staged per source", ["source", "ingested", "removed"], [(s, c["ingested"], c["removed"]) for s, c in st["per_source"].items()])
    render.table(
        "staged entries",
        ["seq", "kind", "detail"],
        [(e["seq"], e["kind"], ", ".join(f"{k}={v}" for k, v in e.items() if k not in ("seq", "kind"))) for e in st["staged"]],
    )


@app.command()
def commit(
    message: str = typer.Option(..., "--message", "-m"),
    tag: str | None = typer.Option(None, "--tag", "-t", help="A unique tag (e.g. v38); tags never move."),
    corpus: str = typer.Option("main", "--corpus"),
    no_sign: bool = typer.Option(False, "--no-sign", help="Commit without a signature (verify then needs --allow-unsigned)."),
    key: str | None = typer.Option(None, "--key", help="Signing key name under ROWTRAIL_HOME/keys."),
    allow_empty: bool = typer.Option(False, "--allow-empty"),
    override_policy: str | None = typer.Option(None, "--override-policy", help="Commit although the admission policy rejects sources; the reason is recorded."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Commit the staged work as a new immutable, signed version."""
    with render.progress("commit", not as_json) as bar:
        v = open_store().commit(message, tag=tag, corpus=corpus, sign=not no_sign, key=key, allow_empty=allow_empty, progress=bar, override_policy=override_policy)
    if as_json:
        render.print_json(v.summary())
        return
    sig = "signed" if v.signed else "UNSIGNED"
    render.out.print(f"[{corpus} {v.tag or v.id[:12]}] {v.id}  {v.row_count} rows, {len(v.content['per_source'])} sources, {sig}", markup=False)


# -- read side ----------------------------------------------------------------------------------------


@app.command()
def log(corpus: str = typer.Option("main", "--corpus"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Versions of a corpus, newest first."""
    versions = [v.summary() for v in open_store().log(corpus)]
    if as_json:
        render.print_json(versions)
        return
    render.table(
        f"corpus {corpus}",
        ["version", "tag", "created", "author", "rows", "sources", "signed", "message"],
        [(v["version_id"][:12], v["tag"], v["created_at"][:19], v["author"], v["row_count"], v["sources"], "yes" if v["signed"] else "NO (--no-sign)", v["message"]) for v in versions],
    )


@app.command()
def show(
    version: str = typer.Argument("HEAD"),
    corpus: str = typer.Option("main", "--corpus"),
    attestation: bool = typer.Option(False, "--attestation", help="Print the DSSE envelope that signs the version."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A version's record, content digests and sources."""
    v = open_store().version(version, corpus)
    if attestation:
        env = v.attestation()
        if env is None:
            raise RowtrailError(f"version {v.tag or v.id[:12]} was committed with --no-sign; it has no attestation")
        render.print_json(env)
        return
    if as_json:
        render.print_json({"version_id": v.id, "record": v.record, "signed": v.signed})
        return
    rec, c = v.record, v.content
    render.kv(
        f"version {v.tag or v.id[:12]}",
        [
            ("version_id", v.id),
            ("corpus", v.corpus),
            ("tag", v.tag),
            ("message", rec["message"]),
            ("author", rec["author"]),
            ("created_at", rec["created_at"]),
            ("parent", rec["parent"]),
            ("signed", "yes" if v.signed else "no"),
            ("content_id", v.content_id),
            ("rows", c["row_count"]),
            ("weight_total", c["weight_total"]),
            ("merkle_root", c["merkle_root"]),
            ("content_root", c["content_root"]),
            ("inputs_root", c["inputs_root"]),
            ("weights_sha256", c["weights_sha256"]),
            ("pipeline", ", ".join(c["pipeline"]) or "(none)"),
        ],
    )
    render.table("sources", ["source", "rows", "weight"], [(s, n, w) for s, (n, w) in c["per_source"].items()])


@app.command()
def diff(
    a: str = typer.Argument(..., help="The older version (tag, id or HEAD~N)."),
    b: str = typer.Argument(..., help="The newer version."),
    corpus: str = typer.Option("main", "--corpus"),
    ids: bool = typer.Option(False, "--ids", help="Also list the row ids added and removed."),
    limit: int | None = typer.Option(None, "--limit", help="At most this many ids per list with --ids."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """What changed from version A to version B: sources and rows, per source."""
    s = open_store()
    d = s.version(b, corpus).provenance_set() - s.version(a, corpus).provenance_set()
    data = d.to_dict(ids=ids, limit=limit)
    if as_json:
        render.print_json(data)
        return
    render.out.print(f"{a} → {b}: +{data['rows_added']} rows, −{data['rows_removed']} rows")
    for label, key in (("sources added", "sources_added"), ("sources dropped", "sources_dropped"), ("sources changed (new snapshot)", "sources_changed")):
        if data[key]:
            render.out.print(f"{label}: {', '.join(data[key])}")
    rows = [(s_, p["before"], p["after"], f"+{p['added']}", f"−{p['removed']}") for s_, p in data["per_source"].items() if p["added"] or p["removed"] or p["before"] != p["after"]]
    if rows:
        render.table("per source", ["source", "rows before", "rows after", "added", "removed"], rows)
    if ids:
        for key in ("row_ids_added", "row_ids_removed"):
            render.out.print(f"{key}:")
            for r in data[key]:
                render.out.print(f"  {r}")


def _event_detail(e: dict[str, Any]) -> str:
    if e["event"] == "dropped":
        return f"{e['reason_code']}: {e['reason']}"
    if e["event"] in ("modified", "split", "merged"):
        return f"→ {e['child']}"
    if e["event"] in ("created", "absorbed"):
        return f"← {e['parent']}"
    if e["event"] == "reweighted":
        return f"weight {e['before']:g} → {e['after']:g}"
    if e["event"] == "scored":
        return ", ".join(f"{k}={v}" for k, v in e["values"].items())
    return ""


def _trace_text(t: dict[str, Any]) -> None:
    src, prov = t["source"], t["provenance"]
    render.kv(
        f"row {t['row_id']}",
        [
            ("source", f"{src['source_id']} ({src['kind']}) — licence {src['license'] or 'unknown'}, legal basis {src['legal_basis'] or 'unknown'}"),
            ("snapshot", prov["source_snapshot"]),
            ("source key", prov["source_key"]),
            ("content_sha256", prov["content_sha256"]),
            ("origin", f"{prov['origin_file']}:{prov['origin_line']}"),
            ("ingest", f"{t['ingest']['ingest_id']} at {t['ingest']['at']}"),
            *[(k, v) for k, v in prov.items() if k.startswith("attr.") or k.endswith("_sha256") and k != "content_sha256"],
        ],
    )
    render.out.print("content:", render.dumps(t["content"]), markup=False, highlight=False)
    if t["versions"]:
        render.table("in versions", ["version", "tag", "corpus", "created", "weight"], [(v["version_id"][:12], v["tag"], v["corpus"], v["created_at"][:19], v["weight"]) for v in t["versions"]])
    else:
        render.out.print("in no committed version")
    if t.get("derived_from"):
        render.table("derived from (newest first)", ["parent row", "child row", "by step"], [(d["row_id"], d["child"][:16], (d.get("step_id") or "")[:12]) for d in t["derived_from"]])
    if t.get("steps"):
        render.table(
            "pipeline steps",
            ["versions", "#", "step", "event", "detail"],
            [(", ".join(v[:12] for v in e["versions"]) or "staged", e["position"], e["step"], e["event"], _event_detail(e)) for e in t["steps"]],
        )
    if t.get("descendants"):
        render.table("descendants", ["row", "kind", "by step"], [(d["row_id"], d["kind"], d["step"]) for d in t["descendants"]])
    if t["drops"]:
        render.table("drops", ["reason", "detail", "by", "effective in"], [(d["reason_code"], d["reason"], d["by"], (d["effective_in"] or "staged")[:12]) for d in t["drops"]])
    if t["lineage"]:
        render.table("lineage", ["parent", "child", "kind", "by"], [(e["parent"][:16], e["child"][:16], e["kind"], e["by"]) for e in t["lineage"]])
    if not t["runs"]:
        render.out.print("runs: none recorded")


@app.command()
def trace(row: str = typer.Argument(..., help="A row id (64 hex digits)."), as_json: bool = typer.Option(False, "--json")) -> None:
    """Everything known about a row: source, ingest, drops, lineage, versions, runs."""
    t = open_store().trace(row)
    if as_json:
        render.print_json(t)
    else:
        _trace_text(t)


@app.command()
def why(
    row: str = typer.Argument(...),
    version: str = typer.Option("HEAD", "--version", "-v"),
    corpus: str = typer.Option("main", "--corpus"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Why a row is (or is not) in a version, in one paragraph."""
    from ..ops.why import why as explain

    res = explain(open_store(), row, version, corpus)
    if as_json:
        render.print_json(res)
    else:
        render.out.print(res["explanation"], markup=False, highlight=False)


@app.command()
def rows(
    version: str = typer.Option("HEAD", "--version", "-v"),
    source: str | None = typer.Option(None, "--source", "-s"),
    corpus: str = typer.Option("main", "--corpus"),
    limit: int | None = typer.Option(None, "--limit", "-n", help="At most this many rows (default 20 on screen, all with -o)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write .parquet, .jsonl or .csv."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines on stdout."),
) -> None:
    """Rows of a version: content and provenance columns."""
    s = open_store()
    if limit is None and output is None and not as_json:
        limit = 20
    t = s.rows(version, source=source, corpus=corpus, limit=limit)
    if output is not None:
        _write_table(t, output)
        render.err.print(f"wrote {t.num_rows} rows to {output}")
    elif as_json:
        for r in t.to_pylist():
            sys.stdout.write(render.dumps(r).replace("\n", "").replace("  ", "") + "\n")
    else:
        cols = [c for c in t.column_names if c not in ("ingested_at", "ingest_id", "source_snapshot")]
        render.table(f"rows of {version}" + (f" from {source}" if source else ""), cols, [[_short(r[c]) for c in cols] for r in t.to_pylist()])


def _short(v: Any, n: int = 60) -> str:
    text = "" if v is None else str(v)
    return text if len(text) <= n else text[: n - 1] + "…"


def _write_table(t: Any, output: Path) -> None:
    suffix = output.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        pq.write_table(t, output)
    elif suffix in (".jsonl", ".json", ".ndjson"):
        with open(output, "w", encoding="utf-8") as fh:
            for r in t.to_pylist():
                fh.write(render.dumps(r).replace("\n", "").replace("  ", "") + "\n")
    elif suffix == ".csv":
        import pyarrow.csv as pacsv

        pacsv.write_csv(t, output)
    else:
        raise RowtrailError(f"cannot tell the format of {output}; use .parquet, .jsonl or .csv")


@app.command()
def sql(
    query: str = typer.Argument(..., help="SQL over views: sources, rows, versions, version_rows, drops, step_drops, lineage, quarantine, journal."),
    output: Path | None = typer.Option(None, "--output", "-o"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run SQL (DuckDB) over read-only views of the store."""
    t = open_store().sql(query)
    if output is not None:
        _write_table(t, output)
    elif as_json:
        render.print_json(t.to_pylist())
    else:
        render.table(None, t.column_names, [[_short(v, 80) for v in r.values()] for r in t.to_pylist()])


@app.command()
def prove(
    row: str = typer.Argument(..., help="A row id, or with --content a content SHA-256."),
    version: str = typer.Argument("HEAD"),
    absent: bool = typer.Option(False, "--absent", help="Prove the row is NOT in the version."),
    content: bool = typer.Option(False, "--content", help="Prove a content hash against content_root."),
    corpus: str = typer.Option("main", "--corpus"),
    output: Path | None = typer.Option(None, "--output", "-o"),
    as_json: bool = typer.Option(True, "--json/--no-json", hidden=True),
) -> None:
    """A Merkle inclusion (or, with --absent, exclusion) proof against a version's signed root."""
    proof = open_store().prove(row, version, absent=absent, content=content, corpus=corpus)
    _write_or_print(render.dumps(proof), output)


@app.command("check-proof")
def check_proof(
    path: Path = typer.Argument(..., help="A proof JSON file from 'rowtrail prove' or 'rowtrail journal prove'."),
    old_root: str | None = typer.Option(None, "--old-root", help="Journal consistency proofs: the root of the journal head you kept."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check a proof file on its own: exit 0 if it verifies, 3 if not. Where the store holds the
    proof's version, its root and tree size are compared with the version's too."""
    import orjson

    from ..hashing import verify_exclusion, verify_inclusion

    try:
        proof = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise RowtrailError(f"{path} is not a proof (not JSON: {exc})") from None
    if isinstance(proof, dict) and proof.get("kind") == "journal-consistency":
        _check_consistency(proof, old_root, as_json)
        return
    if old_root is not None:
        raise typer.BadParameter("--old-root is for journal consistency proofs ('rowtrail journal prove')")
    kind = "exclusion" if ("left" in proof or "right" in proof) else "inclusion"
    ok = verify_exclusion(proof) if kind == "exclusion" else verify_inclusion(proof)
    # A path alone cannot pin the tree size: where the version is at hand, check root and size too.
    problem = None if ok else "the audit path does not lead to the stated root"
    problem = problem or _proof_against_store(proof)
    root = proof.get("merkle_root") or proof.get("content_root")
    if as_json:
        render.print_json({"ok": problem is None, "kind": kind, "root": root, "version_id": proof.get("version_id"), "problem": problem})
    elif problem:
        render.err.print(f"[red]{kind} proof does NOT verify: {escape(problem)}[/red]")
    else:
        render.out.print(f"{kind} proof verifies against root {root} of version {proof.get('version_id')}")
    if problem:
        raise typer.Exit(3)


def _check_consistency(proof: dict[str, Any], old_root: str | None, as_json: bool) -> None:
    from ..hashing import verify_consistency

    ok = verify_consistency(proof, old_root=old_root.lower() if old_root else None)
    problem = None
    if not ok:
        problem = (
            "the proof's old root is not the root you kept: the journal's first entries changed, or the head is of another store"
            if old_root and str(proof.get("old_root", "")).lower() != old_root.lower()
            else "the consistency path does not lead from the old root to the new root"
        )
    if as_json:
        render.print_json({"ok": ok, "kind": "journal-consistency", "old_size": proof.get("old_size"), "new_size": proof.get("new_size"), "old_root": proof.get("old_root"), "new_root": proof.get("new_root"), "checked_against_kept_root": old_root is not None, "problem": problem})
    elif problem:
        render.err.print(f"[red]journal consistency proof does NOT verify: {escape(problem)}[/red]")
    else:
        render.out.print(f"journal consistency proof verifies: {proof['old_size']} → {proof['new_size']} entries, new root {proof['new_root']}", markup=False)
        if old_root is None:
            render.err.print("[yellow]note:[/yellow] checked against the proof's own old root; pass --old-root with the root you kept to check history was not rewritten")
    if problem:
        raise typer.Exit(3)


def _proof_against_store(proof: dict[str, Any]) -> str | None:
    from .. import store as store_mod

    try:
        s = store_mod.open(_STORE["path"])
        info = s.state.versions.get(str(proof.get("version_id")))
    except RowtrailError:
        return None
    if info is None:
        return None
    content = s.version(info.version_id).content
    if "content_root" in proof:
        root, size = content["content_root"], sum(c[1] for c in s.manifest(info.version_id)["contents"]["chunks"])
    else:
        root, size = content["merkle_root"], content["row_count"]
    got_root = proof.get("merkle_root") or proof.get("content_root")
    if got_root != root:
        return f"its root {str(got_root)[:16]}… is not the version's {root[:16]}…"
    if int(proof.get("tree_size", -1)) != size:
        return f"its tree_size {proof.get('tree_size')} is not the version's {size}"
    return None


@app.command()
def sign(
    ref: str = typer.Argument("HEAD", help="The version to sign (a tag, a version id or HEAD)."),
    key: str | None = typer.Option(None, "--key", help="The signing key's name under ROWTRAIL_HOME/keys (default: ROWTRAIL_SIGNING_KEY or 'default')."),
    corpus: str = typer.Option("main", "--corpus"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Add a signature to a committed version: a co-signature (two people, two keys: 'verify --threshold 2'),
    or the first signature of a version committed with --no-sign."""
    res = open_store().sign(ref, key=key, corpus=corpus)
    if as_json:
        render.print_json(res)
    else:
        render.out.print(f"signed {res['tag'] or res['version_id'][:12]} with key {res['keyid'][:16]}: {res['signatures']} signature(s)", markup=False)


@app.command()
def verify(
    pubkey: list[Path] | None = typer.Option(None, "--pubkey", help="Trust this public key PEM too (repeatable)."),
    version: str | None = typer.Option(None, "--version", help="Check only this version (and the journal)."),
    sample: int | None = typer.Option(None, "--sample", help="Recompute only N random rows per version, and hash only referenced objects."),
    allow_unsigned: bool = typer.Option(
        False, "--allow-unsigned", help="Accept versions that are unsigned or signed by no trusted key (each is named in a note)."
    ),
    threshold: int = typer.Option(1, "--threshold", min=1, help="Signed versions need this many distinct trusted keys (see 'rowtrail sign')."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check every object, the journal chain, signatures (trusted keys only) and version digests."""
    s = open_store()
    with render.progress("verify", not as_json) as bar:
        rep = s.verify(
            allow_unsigned=allow_unsigned, pubkeys=[str(p) for p in pubkey or []], version=version, sample=sample, progress=bar, threshold=threshold
        )
    if as_json:
        render.print_json(rep.to_dict())
    else:
        for note in rep.notes:
            render.err.print(f"[yellow]note:[/yellow] {note}")
        c = rep.checked
        summary = f"{c['journal_entries']} journal entries, {c['objects']} objects, {c['versions']} versions, {c['signatures']} signatures, {c['rows']} rows"
        if rep.ok:
            render.out.print(f"[green]OK[/green]: {summary} checked")
            head = rep.journal_root
            render.err.print(f"journal tree head: {head['tree_size']} entries, root {head['root']} (keep it: 'rowtrail journal prove {head['tree_size']}' later shows the journal only grew)", markup=False)
        else:
            render.table("verification FAILED", ["where", "problem"], [(p["object"], p["problem"]) for p in rep.problems])
            render.err.print(f"checked {summary}")
    if not rep.ok:
        raise typer.Exit(3)


from . import bisect as _bisect  # noqa: E402
from . import export as _export  # noqa: E402
from . import journal as _journal  # noqa: E402
from . import optout as _optout  # noqa: E402
from . import pipeline as _pipeline  # noqa: E402
from . import policy as _policy  # noqa: E402
from . import runs as _runs  # noqa: E402
from . import sources as _sources  # noqa: E402  (registers the 'source' command group)

app.command("apply")(_pipeline.apply)
app.command("dropped")(_pipeline.dropped)
app.command("monitor")(_pipeline.monitor)
app.command("bisect")(_bisect.bisect)
app.command("export")(_export.export)
app.command("optout")(_optout.optout)
app.command("check-receipt")(_optout.check_receipt)
app.add_typer(_policy.app, name="policy")
app.add_typer(_journal.app, name="journal")
app.command("runs")(_runs.runs)
app.add_typer(_runs.app, name="run")
app.command("attribute")(_runs.attribute)

app.add_typer(_sources.app, name="source")

from . import feedback as _feedback  # noqa: E402  (guidelines, annotations, agreement, contamination, run cards)
from . import search as _search  # noqa: E402  (indexes, search-output, similar, overlap)
from . import serve as _serve  # noqa: E402  (the HTTP API and web explorer)

_feedback.register(app)
_search.register(app)
_serve.register(app)


def _hoist_store(argv: list[str]) -> list[str]:
    """Accept --store after the command word too, by moving it to the front."""
    out, hoisted, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        if a == "--store" and i + 1 < len(argv):
            hoisted += [a, argv[i + 1]]
            i += 2
            continue
        if a.startswith("--store="):
            hoisted.append(a)
        else:
            out.append(a)
        i += 1
    return hoisted + out


def main(argv: list[str] | None = None) -> None:
    argv = _hoist_store(list(sys.argv[1:] if argv is None else argv))
    try:
        rc = app(args=argv, prog_name="rowtrail", standalone_mode=False)
        if isinstance(rc, int) and rc:  # typer.Exit(n) comes back as a return value here
            sys.exit(rc)
    except RowtrailError as exc:
        render.err.print(f"[red]error:[/red] {type(exc).__name__}: {escape(str(exc))}", highlight=False)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        render.err.print("aborted")
        sys.exit(1)
    except Exception as exc:
        if hasattr(exc, "show") and isinstance(getattr(exc, "exit_code", None), int):  # click usage errors (exit 2)
            exc.show()  # type: ignore[attr-defined]
            sys.exit(exc.exit_code)  # type: ignore[attr-defined]
        if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
            render.err.print(f"[red]error:[/red] {escape(str(exc))}")
            sys.exit(1)
        raise
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
