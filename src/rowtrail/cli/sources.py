"""``rowtrail source add|list|show|refresh|import``."""

from __future__ import annotations

from pathlib import Path

import typer

from ..records import LEGAL_BASES_SUGGESTED, SOURCE_KINDS
from . import render

app = typer.Typer(help="Register and inspect sources (upstream origins with licence and legal basis).", no_args_is_help=True)


def _attrs(values: list[str] | None) -> dict[str, str]:
    out = {}
    for v in values or []:
        k, sep, val = v.partition("=")
        if not sep:
            raise typer.BadParameter(f"--attr takes NAME=VALUE, not {v!r}")
        out[k.strip()] = val
    return out


@app.command("add")
def add(
    source_id: str = typer.Argument(..., help="A stable slug, e.g. partner-x (never changes)."),
    kind: str = typer.Option(..., "--kind", help=", ".join(SOURCE_KINDS)),
    uri: str | None = typer.Option(None, "--uri"),
    license: str | None = typer.Option(None, "--license", help="SPDX expression, or LicenseRef-<name>."),
    legal_basis: str | None = typer.Option(None, "--legal-basis", help="Free text; suggested: " + ", ".join(LEGAL_BASES_SUGGESTED)),
    collected: str | None = typer.Option(None, "--collected", help="Collection period, e.g. 2024-01-01/2024-09-30."),
    refreshed_at: str | None = typer.Option(None, "--refreshed-at"),
    owner: str | None = typer.Option(None, "--owner"),
    generator: str | None = typer.Option(None, "--generator", help="Model id when the content is machine-made (default: human)."),
    attr: list[str] | None = typer.Option(None, "--attr", help="Free attribute NAME=VALUE (repeatable)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Register a source."""
    from .app import open_store

    rec = open_store().sources.add(
        source_id, kind=kind, uri=uri, license=license, legal_basis=legal_basis, collected=collected,
        refreshed_at=refreshed_at, owner=owner, generator=generator, attributes=_attrs(attr),
    )
    if as_json:
        render.print_json(rec.to_dict())
    else:
        render.out.print(f"added source {rec.source_id} ({rec.kind}, {rec.license or 'no licence given'}) as snapshot {rec.snapshot}")


@app.command("list")
def list_(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every source with licence, legal basis, collection period and last refresh."""
    from .app import open_store

    recs = open_store().sources.list()
    if as_json:
        render.print_json([r.to_dict() for r in recs])
        return
    render.table(
        f"{len(recs)} sources",
        ["source", "kind", "licence", "legal basis", "collected", "refreshed", "snapshot", "generator"],
        [(r.source_id, r.kind, r.license, r.legal_basis, r.collected, (r.refreshed_at or "")[:19], r.snapshot, r.generator) for r in recs],
    )


@app.command("show")
def show(source_id: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """One source: its record, snapshots, and rows per version."""
    from .app import open_store

    s = open_store()
    rec = s.sources.get(source_id)
    snaps = s.state.snapshots.get(source_id, [])
    per_version = [
        {"version_id": v.id, "tag": v.tag, "rows": v.content["per_source"].get(source_id, [0, 0.0])[0]} for v in s.versions()
    ]
    data = {"source": rec.to_dict(), "snapshots": snaps, "versions": per_version}
    if as_json:
        render.print_json(data)
        return
    render.kv(f"source {source_id}", [(k, v) for k, v in rec.to_dict().items()])
    render.table("snapshots", ["snapshot", "recorded", "refreshed_at"], [(x["snapshot"], x["at"][:19], x["refreshed_at"]) for x in snaps])
    if per_version:
        render.table("rows per version", ["version", "tag", "rows"], [(p["version_id"][:12], p["tag"], p["rows"]) for p in per_version])


@app.command("refresh")
def refresh(
    source_id: str = typer.Argument(...),
    uri: str | None = typer.Option(None, "--uri"),
    license: str | None = typer.Option(None, "--license"),
    legal_basis: str | None = typer.Option(None, "--legal-basis"),
    collected: str | None = typer.Option(None, "--collected"),
    refreshed_at: str | None = typer.Option(None, "--refreshed-at", help="When the upstream was refreshed (default: now)."),
    attr: list[str] | None = typer.Option(None, "--attr"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Record a new snapshot of a source (history is never rewritten)."""
    from .app import open_store

    rec = open_store().sources.refresh(
        source_id, uri=uri, license=license, legal_basis=legal_basis, collected=collected, refreshed_at=refreshed_at, attributes=_attrs(attr)
    )
    if as_json:
        render.print_json(rec.to_dict())
    else:
        render.out.print(f"source {source_id} is now at snapshot {rec.snapshot} (refreshed {rec.refreshed_at})")


@app.command("import")
def import_(
    path: Path = typer.Argument(..., help="CSV or JSONL with source_id, kind, uri, license, legal_basis, collected, … per line."),
    update: bool = typer.Option(False, "--update", help="Record a new snapshot for sources that exist."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Register many sources at once (one journal entry; all or nothing)."""
    from .app import open_store

    recs = open_store().sources.import_(path, update=update)
    if as_json:
        render.print_json([r.to_dict() for r in recs])
    else:
        render.out.print(f"imported {len(recs)} sources from {path}")
