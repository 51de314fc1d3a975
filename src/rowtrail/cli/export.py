"""``rowtrail export FORMAT VERSION -o PATH``: write a version in a named format (see
``rowtrail.exports``). Parses, calls the exporter, renders; no work happens here."""

from __future__ import annotations

from pathlib import Path

import typer

from . import render


def export(
    fmt: str = typer.Argument(..., metavar="FORMAT", help="Export format: parquet, jsonl or hf."),
    version: str = typer.Argument(..., metavar="VERSION", help="The version: a tag, a version id, HEAD or HEAD~N."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Where to write (.parquet: one file; .jsonl.gz / .jsonl.zst: compressed)."),
    no_provenance: bool = typer.Option(False, "--no-provenance", help="Only content fields, row_id and weight."),
    weights: str = typer.Option("column", "--weights", help="column: a weight column; apply: repeat each row by its (whole) weight."),
    source: str | None = typer.Option(None, "--source", "-s", help="Only the rows of this source."),
    corpus: str = typer.Option("main", "--corpus", help="The corpus that HEAD refers to."),
    force: bool = typer.Option(False, "--force", help="Replace the output path if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Write a version's rows with their provenance, ready for a training job."""
    from .. import exports
    from .app import open_store

    exporter = exports.get(fmt)
    if output is None and not exporter.writes_stdout:
        raise typer.BadParameter(f"format '{exporter.name}' writes files; give the output path", param_hint="'-o' / '--output'")
    if weights not in ("column", "apply"):
        raise typer.BadParameter(f"'{weights}' is not one of 'column', 'apply'", param_hint="'--weights'")
    s = open_store()
    with render.progress("export", not as_json) as bar:
        res = exporter.write(s, version, output, overwrite=force, progress=bar, provenance=not no_provenance, weights=weights, source=source, corpus=corpus)
    if as_json:
        render.print_json(res.to_dict())
        return
    label = res.tag or res.version_id[:12]
    files = len(res.files)
    render.out.print(
        f"exported {res.rows:,} rows of {label} to {res.path} ({res.format}, {files} file{'s' if files != 1 else ''}, {_size(res.bytes)})",
        markup=False,
        highlight=False,
    )


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover
