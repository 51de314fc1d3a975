"""CLI for output search: ``index``, ``search-output``, ``similar``, ``overlap`` (the work is in
``rowtrail.search``; this module parses arguments and renders)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from . import render


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _text_arg(value: str) -> str | Path:
    """TEXT, a file path (an existing file, read by the search), or '-' for standard input."""
    if value == "-":
        return sys.stdin.read()
    if len(value) < 1024 and "\n" not in value:
        try:
            if Path(value).is_file():
                return Path(value)
        except OSError:
            pass
    return value


def index(
    version: str | None = typer.Argument(None, help="The version to index (tag, id or HEAD; default HEAD)."),
    kind: str = typer.Option("spans,lexical", "--kind", help="Comma-separated: spans, lexical, embedding."),
    fields: str | None = typer.Option(None, "--fields", help="Content fields to index (default: every string field)."),
    tokenizer: str = typer.Option(
        "regex-v1",
        "--tokenizer",
        help="regex-v1 (words and single symbols), whitespace-v1, or a model's tokenizer.json (stored and pinned).",
    ),
    list_: bool = typer.Option(False, "--list", help="List live indexes (of VERSION when given) instead of building."),
    drop: str | None = typer.Option(None, "--drop", help="Retire the index with this id (or prefix) and delete its objects."),
    corpus: str = typer.Option("main", "--corpus"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Build a version's search indexes (stored in the store, bound to the version), list or drop them."""
    from ..search import build_index, drop_index, list_indexes
    from .app import open_store

    store = open_store()
    if list_:
        rows = list_indexes(store, version, corpus=corpus)
        if as_json:
            render.print_json(rows)
        else:
            render.table(
                "indexes",
                ["index", "kind", "version", "rows", "bytes/row", "build s"],
                [
                    (
                        r["index_id"][:12],
                        r["kind"],
                        r["tag"] or r["version_id"][:12],
                        r.get("rows"),
                        r.get("bytes_per_row"),
                        r.get("build_seconds"),
                    )
                    for r in rows
                ],
            )
        return
    if drop:
        res = drop_index(store, drop)
        render.print_json(res) if as_json else render.out.print(
            f"dropped index {res['index_id'][:12]} ({res['deleted_objects']} objects deleted)"
        )
        return
    with render.progress("index", enabled=not as_json) as bar:
        out = build_index(
            store,
            version or "HEAD",
            _split(kind),
            corpus=corpus,
            fields=_split(fields) if fields else None,
            tokenizer=tokenizer,
            progress=bar,
        )
    if as_json:
        render.print_json(out)
        return
    render.table(
        f"indexes of {out[0]['tag'] or out[0]['version_id'][:12]}" if out else "indexes",
        ["index", "kind", "rows", "bytes", "bytes/row", "build s"],
        [(o["index_id"][:12], o["kind"], o["rows"], o["bytes"], o["bytes_per_row"], o["build_seconds"]) for o in out],
    )


def _hit_line(h: dict[str, Any]) -> list[Any]:
    p = h.get("provenance") or {}
    src = p.get("source") or {}
    attrs = ", ".join(f"{k}={v}" for k, v in (h.get("attributes") or {}).items())
    return [
        h["row_id"][:12],
        h["source_id"],
        h.get("source_key"),
        attrs,
        src.get("license"),
        src.get("legal_basis"),
        ", ".join(p.get("versions") or []),
        ", ".join(p.get("runs") or []),
    ]


HIT_COLUMNS = ["row", "source", "key", "attributes", "licence", "legal basis", "versions", "runs"]


def _by_source(groups: list[dict[str, Any]], title: str) -> None:
    render.table(
        title,
        ["source", "share", "rows", "licence", "legal basis", "attributes"],
        [
            (
                g["source_id"],
                f"{100 * g['share']:.0f}%",
                g["rows"],
                g.get("license"),
                g.get("legal_basis"),
                "; ".join(f"{k}: {', '.join(v)}" for k, v in g["attributes"].items()),
            )
            for g in groups
        ],
    )


def search_output(
    output: str = typer.Argument(..., help="The model output: a file, the text itself, or '-' for standard input."),
    version: str = typer.Option("HEAD", "--version", "-v"),
    min_tokens: int = typer.Option(6, "--min-tokens", help="Shortest span reported, in tokens."),
    common_mass: float = typer.Option(
        0.5, "--common-mass", help="Drop spans made only of the most frequent tokens that make up this share of the corpus (0: keep all)."
    ),
    max_spans: int = typer.Option(20, "--max-spans"),
    rows_per_span: int = typer.Option(5, "--rows-per-span"),
    k: int = typer.Option(10, "-k", help="Most similar rows to the whole output (0: none)."),
    no_provenance: bool = typer.Option(False, "--no-provenance", help="Only row, source and key per hit (faster)."),
    corpus: str = typer.Option("main", "--corpus"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Trace a model output to training rows: its maximal verbatim spans (longest first) with the rows
    holding them, then the most similar rows; every hit with its provenance, grouped by source."""
    from ..search import search_output as run
    from .app import open_store

    res = run(
        open_store(),
        _text_arg(output),
        version,
        corpus=corpus,
        min_tokens=min_tokens,
        common_mass=common_mass,
        max_spans=max_spans,
        rows_per_span=rows_per_span,
        k=k,
        provenance=not no_provenance,
    )
    if as_json:
        render.print_json(res)
        return
    render.out.print(
        f"output: {res['output_tokens']} tokens, {res['tokens_in_spans']} in verbatim spans ({res['spans_found']} maximal spans) — version {res['tag'] or res['version_id'][:12]}"
    )
    if res["summary"]:
        render.out.print(res["summary"], highlight=False, markup=False)
    for i, sp in enumerate(res["spans"], start=1):
        render.table(
            f"span {i}: {sp['length']} tokens, {sp['occurrences']} occurrence(s) in {sp['rows_containing']} row(s): {sp['text'][:160]!r}",
            HIT_COLUMNS,
            [_hit_line(h) for h in sp["rows"]],
        )
    for method, hits in res["similar"].items():
        render.table(
            f"most similar rows ({method})", ["rank", "score", *HIT_COLUMNS], [(h["rank"], h["score"], *_hit_line(h)) for h in hits]
        )
    if res["by_source"]:
        _by_source(res["by_source"], "verbatim matches by source")


def similar(
    text: str = typer.Argument(..., help="The task: text, a file, or '-' for standard input."),
    version: str = typer.Option("HEAD", "--version", "-v"),
    k: int = typer.Option(20, "-k"),
    method: str = typer.Option("auto", "--method", help="lexical, embedding, or auto (every index the version has)."),
    no_provenance: bool = typer.Option(False, "--no-provenance"),
    corpus: str = typer.Option("main", "--corpus"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The training rows nearest a task (BM25 or embeddings), with provenance and curation scores."""
    from ..search import similar as run
    from .app import open_store

    res = run(open_store(), _text_arg(text), version, k=k, method=method, corpus=corpus, provenance=not no_provenance)
    if as_json:
        render.print_json(res)
        return
    for m, hits in res["hits"].items():
        render.table(
            f"rows nearest the task ({m}) in {res['tag'] or res['version_id'][:12]}",
            ["rank", "score", *HIT_COLUMNS, "scores"],
            [
                (
                    h["rank"],
                    h["score"],
                    *_hit_line(h),
                    ", ".join(f"{a}={b}" for a, b in ((h.get("provenance") or {}).get("scores") or {}).items()),
                )
                for h in hits
            ],
        )
        _by_source(res["by_source"][m], f"by source ({m})")
    if res["summary"]:
        render.out.print(res["summary"], highlight=False, markup=False)


def overlap(
    eval_file: str = typer.Argument(..., metavar="EVAL.jsonl", help="Eval items, one JSON object a line."),
    version: str = typer.Option("HEAD", "--version", "-v"),
    n: int = typer.Option(13, "--n", help="n-gram length in tokens."),
    id_field: str = typer.Option("id", "--id-field"),
    text_field: str = typer.Option("text", "--text-field"),
    rows_per_item: int = typer.Option(10, "--rows-per-item"),
    corpus: str = typer.Option("main", "--corpus"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Contamination check: training rows sharing an n-gram with each eval item, per item and per source."""
    from ..search import overlap as run
    from .app import open_store

    res = run(open_store(), eval_file, version, n=n, id_field=id_field, text_field=text_field, corpus=corpus, rows_per_item=rows_per_item)
    if as_json:
        render.print_json(res)
        return
    render.out.print(
        f"{res['contaminated_items']} of {res['items']} eval items share a {n}-gram with version {res['tag'] or res['version_id'][:12]}"
    )
    hit = [it for it in res["per_item"] if it["contaminated"]]
    if hit:
        render.table(
            "contaminated items",
            ["item", "n-grams found", "fraction", "rows", "sources", "example rows"],
            [
                (
                    it["id"],
                    f"{it['ngrams_found']}/{it['ngrams']}",
                    it["fraction"],
                    it["rows"],
                    ", ".join(f"{s} ({c})" for s, c in it["sources"].items()),
                    ", ".join(f"{e['row_id'][:12]} ({e['source_key']})" for e in it["examples"][:3]),
                )
                for it in hit
            ],
        )
    if res["per_source"]:
        render.table(
            "by training source", ["source", "items", "rows"], [(g["source_id"], g["items"], g["rows"]) for g in res["per_source"]]
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to *app*."""
    app.command("index")(index)
    app.command("search-output")(search_output)
    app.command("similar")(similar)
    app.command("overlap")(overlap)
