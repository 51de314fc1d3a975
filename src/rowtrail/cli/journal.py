"""CLI for the journal as an append-only log: ``journal root`` (its RFC 9162 tree head) and
``journal prove OLD_SIZE`` (a consistency proof that the journal still starts with the entries a
kept head covered); ``rowtrail check-proof FILE --old-root HEX`` checks one offline."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer

from . import render

app = typer.Typer(help="The journal's tree head and consistency proofs (RFC 9162): show that history was only appended to.", no_args_is_help=True)


@app.command("root")
def root(
    size: int | None = typer.Option(None, "--size", help="The head over the first N entries (default: every committed entry)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The journal's tree head: keep it, and a later 'journal prove' shows the journal only grew."""
    from .app import open_store

    head = open_store().journal_root(size)
    if as_json:
        render.print_json(head)
    else:
        render.out.print(f"journal tree of {head['tree_size']} entries: root {head['root']}", markup=False)


@app.command("prove")
def prove(
    old_size: int = typer.Argument(..., help="The tree size of the head you kept ('journal root')."),
    new_size: int | None = typer.Option(None, "--new-size", help="Prove against the first N entries (default: every committed entry)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write the proof here (default: standard output)."),
) -> None:
    """A consistency proof from the tree of OLD_SIZE entries to today's journal (RFC 9162 §2.1.4)."""
    from .app import open_store

    proof = open_store().prove_consistency(old_size, new_size)
    data = orjson.dumps(proof, option=orjson.OPT_INDENT_2) + b"\n"
    if output is None:
        render.print_json(proof)
    else:
        output.write_bytes(data)
        render.err.print(f"wrote a consistency proof {proof['old_size']} → {proof['new_size']} entries to {output}", markup=False)
