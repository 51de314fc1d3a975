"""``rowtrail export FORMAT VERSION [-o PATH]``: write a version in a named format (see
``rowtrail.exports``): its rows for training, or a document about it. Parses, calls the exporter,
renders; no work happens here. Only the options given on the command line reach the exporter, which
rejects those it does not take, naming the ones it does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from . import render


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def export(
    fmt: str = typer.Argument(..., metavar="FORMAT", help="parquet, jsonl, hf, transparency, eu-ai-act, datacard, croissant, prov, openlineage, bundle."),
    version: str = typer.Argument(..., metavar="VERSION", help="The version: a tag, a version id, HEAD or HEAD~N."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Where to write (documents go to stdout without it; the suffix can pick the text format)."),
    text_format: str | None = typer.Option(None, "--format", "-f", help="Document format: markdown, csv or json (default: from -o's suffix, else markdown)."),
    no_provenance: bool = typer.Option(False, "--no-provenance", help="Rows: only content fields, row_id and weight."),
    weights: str | None = typer.Option(None, "--weights", help="Rows: column (a weight column) or apply (repeat each row by its whole weight)."),
    source: str | None = typer.Option(None, "--source", "-s", help="Only the rows of this source."),
    by: list[str] | None = typer.Option(None, "--by", help="transparency, datacard: also break down by this attribute (repeatable)."),
    large_share: float | None = typer.Option(None, "--large-share", help="eu-ai-act: the share of rows above which a public dataset is listed by name."),
    top_domains: float | None = typer.Option(None, "--top-domains", help="eu-ai-act: the share of crawled content whose domains are listed."),
    url: str | None = typer.Option(None, "--url", help="openlineage: post the events to this OpenLineage endpoint; croissant: the dataset's URL."),
    namespace: str | None = typer.Option(None, "--namespace", help="openlineage: the job namespace."),
    endpoint: str | None = typer.Option(None, "--endpoint", help="openlineage: the API path under --url."),
    api_key: str | None = typer.Option(None, "--api-key", envvar="OPENLINEAGE_API_KEY", help="openlineage: bearer token for --url."),
    name: str | None = typer.Option(None, "--name", help="croissant: the dataset's name."),
    description: str | None = typer.Option(None, "--description", help="croissant: the dataset's description."),
    cite_as: str | None = typer.Option(None, "--cite-as", help="croissant: how to cite the dataset."),
    prove: list[str] | None = typer.Option(None, "--prove", help="bundle: include an inclusion proof of this row (repeatable)."),
    absent: list[str] | None = typer.Option(None, "--absent", help="bundle: include an exclusion proof of this row id (repeatable)."),
    prove_content: list[str] | None = typer.Option(None, "--prove-content", help="bundle: include an inclusion proof of this content hash (repeatable)."),
    absent_content: list[str] | None = typer.Option(None, "--absent-content", help="bundle: include an exclusion proof of this content hash (repeatable)."),
    pubkey: list[str] | None = typer.Option(None, "--pubkey", help="bundle: also trust this public key (PEM)."),
    allow_unsigned: bool = typer.Option(False, "--allow-unsigned", help="bundle: allow an unsigned version."),
    settings: list[str] | None = typer.Option(None, "--set", help="Any other exporter option, KEY=VALUE (VALUE read as JSON when it parses)."),
    corpus: str = typer.Option("main", "--corpus", help="The corpus that HEAD refers to."),
    force: bool = typer.Option(False, "--force", help="Replace the output path if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Write a version's rows (for a training job) or a document about it (for people and tools)."""
    from .. import exports
    from .app import open_store

    exporter = exports.get(fmt)
    if weights is not None and weights not in ("column", "apply"):
        raise typer.BadParameter(f"'{weights}' is not one of 'column', 'apply'", param_hint="'--weights'")
    given: dict[str, Any] = {
        "format": text_format,
        "provenance": False if no_provenance else None,
        "weights": weights,
        "source": source,
        "by": list(by) if by else None,
        "large_share": large_share,
        "top_domains": top_domains,
        "url": url,
        "namespace": namespace,
        "endpoint": endpoint,
        "api_key": api_key,
        "name": name,
        "description": description,
        "cite_as": cite_as,
        "prove": list(prove) if prove else None,
        "absent": list(absent) if absent else None,
        "prove_content": list(prove_content) if prove_content else None,
        "absent_content": list(absent_content) if absent_content else None,
        "pubkeys": list(pubkey) if pubkey else None,
        "allow_unsigned": True if allow_unsigned else None,
        "corpus": corpus if corpus != "main" else None,
    }
    options = {k: v for k, v in given.items() if v is not None}
    for item in settings or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"'{item}': write KEY=VALUE", param_hint="'--set'")
        options[key.strip().replace("-", "_")] = _value(value)
    if output is None and not exporter.writes_stdout and "url" not in options:
        raise typer.BadParameter(f"format '{exporter.name}' writes files; give the output path", param_hint="'-o' / '--output'")
    s = open_store()
    with render.progress("export", not as_json) as bar:
        res = exporter.write(s, version, output, overwrite=force, progress=bar, **options)
    if as_json:
        render.print_json(res.to_dict())
        return
    label = res.tag or res.version_id[:12]
    files = len(res.files)
    where = render.out if output is not None else render.err  # a document on stdout stays clean
    what = f"{res.rows:,} rows of {label}" if res.rows else label
    where.print(
        f"exported {what} to {res.path or 'stdout'} ({res.format}, {files} file{'s' if files != 1 else ''}, {_size(res.bytes)})",
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
