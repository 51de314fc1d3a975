"""CLI for consent opt-outs: ``optout`` (remove, commit, receipt; ``--list`` shows the register) and
``check-receipt`` (verify a removal receipt)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from . import render


def optout(
    source: str | None = typer.Option(None, "--source", "-s", help="Remove every row of this source."),
    key: str | None = typer.Option(None, "--key", "-k", help="Remove the rows with this source key (with --source to pick one source)."),
    content_hash: str | None = typer.Option(None, "--content-hash", help="Remove rows with this content SHA-256 (and the inputs of rows derived with it)."),
    match: str | None = typer.Option(None, "--match", help="Remove rows matching this SQL predicate over the 'rows' view."),
    reason: str | None = typer.Option(None, "--reason", "-r", help="Why (recorded in the register and the receipt)."),
    include_duplicates: bool = typer.Option(False, "--include-duplicates", help="Also remove the same content under other sources."),
    keep_duplicates: bool = typer.Option(False, "--keep-duplicates", help="Keep the same content under other sources."),
    tag: str | None = typer.Option(None, "--tag", "-t", help="Tag for the new version."),
    corpus: str = typer.Option("main", "--corpus"),
    no_sign: bool = typer.Option(False, "--no-sign", help="Commit and issue the receipt unsigned."),
    pipeline: Path | None = typer.Option(None, "--pipeline", help="The corpus's pipeline file, when its steps run user functions."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the signed receipt (DSSE envelope) here."),
    purge: bool = typer.Option(False, "--purge", help="Also erase the removed rows' content from the store (signed tombstones keep ids and hashes)."),
    list_: bool = typer.Option(False, "--list", help="Show the opt-out register instead."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Remove a consent holder's rows and their descendants, commit, and issue a signed removal receipt."""
    from ..ops import optout as op
    from .app import open_store

    store = open_store()
    if list_:
        reg = op.register(store)
        if as_json:
            render.print_json(reg)
        else:
            render.table("opt-out register", ["request", "at", "reason", "criteria", "rows", "new version"], [(r["id"], r["requested_at"][:19], r["reason"], json.dumps(r["criteria"]), r["rows"], (r["new_version"] or "staged")[:12]) for r in reg])
        return
    if include_duplicates and keep_duplicates:
        raise typer.BadParameter("give one of --include-duplicates and --keep-duplicates")
    if reason is None:
        raise typer.BadParameter("say why: --reason 'consent withdrawn, ticket 4711'", param_hint="'--reason'")
    dup = "include" if include_duplicates else "keep" if keep_duplicates else None
    with render.progress("optout", not as_json) as bar:
        steps = None
        if pipeline is not None:
            from ..steps import load_pipeline

            steps = load_pipeline(pipeline)
        res = op.optout(store, reason=reason, source=source, key=key, content_hash=content_hash, match=match, duplicates=dup, corpus=corpus, tag=tag, sign=not no_sign, steps=steps, purge=purge, progress=bar)
    document: Any = res["envelope"] if res["envelope"] is not None else {"unsigned_receipt": res["receipt"]}
    if output is not None:
        output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    if as_json:
        render.print_json({"version_id": res["version_id"], "receipt": res["receipt"], "envelope": res["envelope"]})
        return
    rec = res["receipt"]
    render.out.print(
        f"opt-out {rec['request']['id']}: removed {rec['removed']['rows']} row(s) and {rec['removed']['content_hashes']} content hash(es); "
        f"new version {res['version_id'][:12]}" + (f" ({tag})" if tag else ""),
        markup=False,
    )
    if res.get("purged"):
        render.out.print(f"purged the content of {res['purged']['rows']} row(s) from {res['purged']['segments']} content table(s)", markup=False)
        if res["purged"].get("indexes_dropped"):
            render.out.print(f"dropped {res['purged']['indexes_dropped']} search index(es) built from the erased text; rebuild with: rowtrail index VERSION", markup=False)
    for r in rec.get("runs_that_consumed") or []:
        render.out.print(f"training run {r['run_id']} consumed {r['rows']} of the removed row(s) (version {r['version_id'][:12]}); the receipt names it", markup=False)
    if rec["kept_duplicates"]["rows"]:
        render.out.print(f"kept {rec['kept_duplicates']['rows']} duplicate row(s) under other sources (--keep-duplicates)", markup=False)
    if output is not None:
        render.err.print(f"wrote the {'signed' if res['envelope'] else 'UNSIGNED'} receipt to {output}; check it with: rowtrail check-receipt {output}")
    render.out.print(f"prove any removed row absent: rowtrail prove ROW {res['version_id'][:12]} --absent", markup=False)


def check_receipt(
    receipt: Path = typer.Argument(..., help="A removal receipt (the DSSE envelope from 'rowtrail optout -o')."),
    pubkey: list[Path] | None = typer.Option(None, "--pubkey", help="Trust this public key (PEM) as well."),
    offline: bool = typer.Option(False, "--offline", help="Check the signature only, without the store."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Verify a removal receipt: trusted signature, digest, and (with the store) that the rows are gone."""
    from ..errors import RowtrailError, VerificationError
    from ..ops.optout import verify_receipt

    try:
        envelope = json.loads(receipt.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RowtrailError(f"cannot read {receipt}: {exc}") from None
    store = None
    if not offline:
        from .app import open_store

        store = open_store()
    try:
        rec = verify_receipt(envelope, [str(p) for p in pubkey or []], store)
    except VerificationError as exc:
        if as_json:
            render.print_json({"ok": False, "problem": str(exc)})
        raise
    if as_json:
        render.print_json({"ok": True, "receipt": rec})
        return
    render.out.print(
        f"OK: receipt {rec['request']['id']} verifies — {rec['removed']['rows']} row(s) and {rec['removed']['content_hashes']} content hash(es) "
        f"removed in version {rec['new_version'][:12]}" + ("" if offline else ", and none of them is in it"),
        markup=False,
    )
