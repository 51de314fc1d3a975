"""CLI for training runs: ``runs`` (list; which runs consumed a row or a source), ``run show``,
``run record`` (register a run made outside the recorder) and ``attribute``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from . import render

app = typer.Typer(help="Training runs bound to corpus versions.", no_args_is_help=True)


def runs(
    consumed_source: str | None = typer.Option(None, "--consumed-source", help="Only runs that trained on rows of this source."),
    consumed_row: str | None = typer.Option(None, "--consumed-row", help="Only runs that trained on this row."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Training runs, and which of them consumed a row or a source."""
    from ..ops.runs import run_entries, runs_consuming, summary
    from .app import open_store

    store = open_store()
    if consumed_source or consumed_row:
        if consumed_source:
            store.sources.get(consumed_source)
        res = runs_consuming(store, row=consumed_row, source=consumed_source)
        if as_json:
            render.print_json(res)
        else:
            render.table("runs that consumed it", ["run", "version", "finished", "rows", "steps"], [(r["run_id"], r["version_id"][:12], r["finished_at"][:19], r["rows"], r["step_count"]) for r in res])
        return
    all_runs = [summary(e) for e in run_entries(store)]
    if as_json:
        render.print_json(all_runs)
        return
    render.table("runs", ["run", "version", "source", "finished", "steps", "rows consumed"], [(r["run_id"], r["version_id"][:12], r["source"], (r["finished_at"] or "")[:19], r["steps"], r["rows_consumed"]) for r in all_runs])


@app.command("show")
def show(run_id: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """A run's record: version, config, steps, rows consumed."""
    from ..ops.runs import get, summary
    from .app import open_store

    r = get(open_store(), run_id)
    s = summary(r.entry)
    if as_json:
        render.print_json(s)
    else:
        render.kv(f"run {s['run_id']}", [(k, json.dumps(v) if isinstance(v, dict) else v) for k, v in s.items() if k != "run_id"])


@app.command("record")
def record(
    version: str = typer.Option(..., "--version", "-v"),
    config: Path = typer.Option(..., "--config", help="The run's config (JSON or TOML)."),
    row_ids: Path | None = typer.Option(None, "--row-ids", help="The rows it consumed, one id per line (default: every row of the version)."),
    corpus: str = typer.Option("main", "--corpus"),
) -> None:
    """Register a run made outside the recorder (another framework or cluster) with the rows it consumed."""
    import tomllib

    from ..errors import RowtrailError
    from ..ops.runs import record_external
    from .app import open_store

    try:
        text = config.read_text(encoding="utf-8")
        cfg = tomllib.loads(text) if config.suffix == ".toml" else json.loads(text)
        ids = row_ids.read_text(encoding="utf-8").split() if row_ids else None
    except (OSError, ValueError) as exc:
        raise RowtrailError(f"cannot read the run's files: {exc}") from None
    store = open_store()
    if ids is None:
        ids = store.rows(version, corpus=corpus).column("row_id").to_pylist()
    rid = record_external(store, version, cfg, ids, corpus=corpus)
    render.out.print(f"registered {rid}: {len(ids)} row(s) of {version}", markup=False)


@app.command("merge")
def merge(run_ids: list[str] = typer.Argument(..., help="The per-rank runs of one data-parallel run, in rank order.")) -> None:
    """Merge the per-rank ledgers of a data-parallel run into one run."""
    from ..ops.runs import merge_runs
    from .app import open_store

    rid = merge_runs(open_store(), list(run_ids))
    render.out.print(f"merged {len(run_ids)} rank ledgers into {rid}", markup=False)


def attribute(
    run_id: str = typer.Argument(...),
    group: str | None = typer.Option(None, "--group", "-g", help="The parameter group (default: the run's only group)."),
    by: str = typer.Option("row", "--by", help="row or source."),
    top: int = typer.Option(20, "--top"),
    first_step: int | None = typer.Option(None, "--from-step"),
    last_step: int | None = typer.Option(None, "--to-step", help="Exclusive."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The rows (or sources) behind a parameter group's updates, with their governance."""
    from ..ops.runs import get
    from .app import open_store

    steps = None if first_step is None and last_step is None else (first_step or 0, last_step if last_step is not None else 1 << 62)
    res = get(open_store(), run_id).attribute(group=group, steps=steps, top=top, by=by)
    if as_json:
        render.print_json(res)
        return
    if by == "source":
        render.table(f"sources behind group {res['group']} of {res['run_id']}", ["source", "contribution"], [(t["source_id"], f"{t['contribution']:.6g}") for t in res["top"]])
    else:
        render.table(
            f"rows behind group {res['group']} of {res['run_id']}",
            ["row", "contribution", "source", "licence", "legal basis", "admitted by"],
            [(t["row_id"][:16], f"{t['contribution']:.6g}", t["source_id"], t["license"], t["legal_basis"], t["admitted_by"] or "-") for t in res["top"]],
        )
    render.out.print(f"total {res['total']:.6g} (Σ‖Δθ‖² over the steps: {res['update_sq']:.6g})", markup=False)
