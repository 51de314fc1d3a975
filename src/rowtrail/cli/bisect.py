"""``rowtrail bisect GOOD BAD --test CMD``: find the change that makes a test fail (``ops/bisect.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from . import render

TEST_HELP = (
    "Shell command run on each candidate corpus: exit 0 good, 1 bad, 125 skip (any other code stops). "
    "The candidate is one Parquet file (content fields, row_id, source_id, weight), in $ROWTRAIL_BISECT_CORPUS and as {corpus} in the command."
)


def bisect(
    good: str = typer.Argument(..., help="A version that passes the test (tag, id or HEAD~N)."),
    bad: str = typer.Argument(..., help="A later version that fails it."),
    test: str = typer.Option(..., "--test", "-t", help=TEST_HELP),
    pipeline: list[Path] | None = typer.Option(None, "--pipeline", "-p", help="Pipeline file defining steps that run user functions (repeatable)."),
    corpus: str = typer.Option("main", "--corpus"),
    keep: bool = typer.Option(False, "--keep", help="Keep every candidate's Parquet file (the report names the directory)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Find the first source or step change between GOOD and BAD that makes a test fail (read-only)."""
    from ..ops.bisect import Trial
    from ..ops.bisect import bisect as run
    from ..steps import load_pipeline
    from .app import open_store

    steps = [s for p in pipeline or [] for s in load_pipeline(p).steps]
    console = render.err if as_json else render.out

    def line(t: Trial) -> None:
        extra = f" exit {t.exit_code}" if t.exit_code not in (None, 0, 1) else ""
        note = f" — {t.note}" if t.note else ""
        console.print(f"[{t.k}/{t.n}] {t.result:<4}{extra}  {t.rows} rows  {t.seconds:.2f} s  {t.description}{note}", markup=False, highlight=False)

    report = run(open_store(), good, bad, test=test, steps=steps or None, corpus=corpus, keep=keep, log=line)
    if as_json:
        render.print_json(report.to_dict())
        return
    _verdict(report)


def _verdict(report: Any) -> None:
    out = render.out
    out.print(f"{len(report.changes)} change(s) from GOOD to BAD, {report.tests} test(s) run", markup=False, highlight=False)
    if report.first_bad is not None:
        out.print(f"first bad change: #{report.first_bad.index} {report.first_bad.label}", markup=False, highlight=False)
    else:
        out.print("skipped candidates leave more than one suspect; the first bad change is one of:", markup=False, highlight=False)
        for c in report.suspects:
            out.print(f"  #{c.index} {c.label}", markup=False, highlight=False)
    if report.workdir:
        out.print(f"candidate files kept in {report.workdir}", markup=False, highlight=False)
