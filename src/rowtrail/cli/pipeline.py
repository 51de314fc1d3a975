"""CLI for pipelines: ``apply``, ``dropped``, ``monitor`` and ``bisect``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from . import render


def _open() -> Any:
    from .app import open_store

    return open_store()


def _summary_rows(steps: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    rows = []
    for i, s in enumerate(steps, 1):
        dropped = ", ".join(f"{k} {v}" for k, v in s["dropped"].items()) or "-"
        edges = ", ".join(f"{k} {v}" for k, v in s["edges"].items()) or "-"
        rows.append((i, s["name"], s["use"], s["step_id"][:12], s["rows_in"], s["rows_out"], f"{s['weight_out']:g}", dropped, edges))
    return rows


def print_steps(steps: list[dict[str, Any]]) -> None:
    render.table("steps", ["#", "step", "use", "id", "rows in", "rows out", "weight out", "dropped", "edges"], _summary_rows(steps))
    sources = sorted({src for s in steps for src in s["per_source"]})
    if steps and sources:
        cols = ["source", "rows in", *[f"after {i}" for i in range(1, len(steps) + 1)]]
        rows = [(src, steps[0]["per_source"].get(src, {}).get("rows_in", 0), *[s["per_source"].get(src, {}).get("rows_out", 0) for s in steps]) for src in sources[:50]]
        render.table("rows per source", cols, rows)
        if len(sources) > 50:
            render.out.print(f"… and {len(sources) - 50} more sources (--json lists all)")


def apply(
    pipeline: Path = typer.Argument(..., help="A pipeline file (TOML: \\[\\[step]] tables, optional \\[monitor])."),
    corpus: str = typer.Option("main", "--corpus"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what the pipeline would do; stage nothing."),
    engine: str = typer.Option("local", "--engine", help="Where the steps run: 'local' (this process) or 'ray' (Ray Data; pip install 'rowtrail\\[ray]'). Same result either way."),
    address: str | None = typer.Option(None, "--address", help="With --engine ray: the Ray cluster to join ('auto', 'ray://HOST:10001'); default: a local Ray."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Set the corpus pipeline, run it over the input set, and stage the result for 'commit'."""
    from ..ops.apply import ENGINES
    from ..ops.apply import apply as run_apply
    from ..steps import load_pipeline

    if engine not in ENGINES:
        raise typer.BadParameter(f"--engine is one of {', '.join(ENGINES)}", param_hint="--engine")
    if address and engine != "ray":
        raise typer.BadParameter("--address needs --engine ray", param_hint="--address")
    pipe = load_pipeline(pipeline)
    store = _open()
    with render.progress("apply", not as_json) as bar:
        rep = run_apply(store, pipe, corpus=corpus, dry_run=dry_run, progress=bar, engine=engine, address=address)
    if as_json:
        render.print_json(rep.to_dict())
        return
    for w in rep.warnings:
        render.err.print(f"[yellow]warning: {w}[/yellow]")
    what = "would give" if dry_run else "gives"
    render.out.print(f"pipeline of {len(rep.pipeline)} step(s) over {rep.rows_in} input rows {what} {rep.rows_out} rows (weight {rep.weight_out:g})")
    print_steps(rep.steps)
    if not dry_run:
        render.out.print("staged; 'rowtrail commit -m MESSAGE' records it as a version")


def dropped(
    version: str = typer.Option("HEAD", "--version", "-v"),
    step: str | None = typer.Option(None, "--step", help="A step name or step id prefix."),
    source: str | None = typer.Option(None, "--source", "-s"),
    rows: int = typer.Option(0, "--rows", help="Also list up to this many dropped rows."),
    corpus: str = typer.Option("main", "--corpus"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Rows a version's pipeline dropped: counts by step, reason and source."""
    from ..ops.lineage import dropped as find

    res = find(_open(), version, step=step, source=source, corpus=corpus, rows=rows)
    if as_json:
        render.print_json(res)
        return
    if res["run"] is None:
        render.out.print("this version's pipeline has no steps; nothing was dropped by steps (see 'rowtrail trace ROW' for removals)")
        return
    table = []
    for s in res["steps"]:
        for reason, n in s["by_reason"].items():
            table.append((s["step"], reason, n, ", ".join(f"{k} {v}" for k, v in sorted(s["by_source"].items(), key=lambda kv: -kv[1])[:5])))
    render.table(f"dropped by the pipeline of {res['tag'] or res['version_id'][:12]}: {res['total']} rows", ["step", "reason", "rows", "top sources"], table)
    if res["rows"]:
        render.table("rows", ["row_id", "step", "reason", "source"], [(r["row_id"], r["step"], r["reason"], r["source_id"]) for r in res["rows"]])


def monitor(
    version: str = typer.Argument("HEAD"),
    corpus: str = typer.Option("main", "--corpus"),
    plot: bool = typer.Option(False, "--plot", help="Draw the figures (needs -o FILE.png; pip install 'rowtrail\\[plot]')."),
    output: Path | None = typer.Option(None, "--output", "-o"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """What each pipeline step of a version did to the distribution: counts, weights, drift."""
    from ..ops.monitor import monitor as reports

    res = reports(_open(), version, corpus=corpus)
    if plot:
        from ..monitoring.drift import plot as draw

        if output is None:
            raise typer.BadParameter("--plot needs -o FILE.png")
        if not res["steps"]:
            from ..errors import RowtrailError

            raise RowtrailError("this version's pipeline has no steps; nothing to plot")
        draw(res["steps"], output, thresholds=res.get("thresholds") or None)
        render.err.print(f"wrote {output}")
        if not as_json:
            return
    if as_json:
        render.print_json(res)
        return
    if not res["steps"]:
        render.out.print("this version's pipeline has no steps")
        return
    print_steps(res["steps"])
    rows = []
    for s in res["steps"]:
        for col, f in s["drift"].items():
            ks = f.get("ks")
            rows.append((s["name"], col, f["kind"], _num(f.get("psi")), _num(f.get("kl")), _num(ks), _num(f.get("max_change")), ", ".join(f"{a['level']}:{a['figure']}" for a in s["alerts"] if a["column"] == col)))
    render.table("drift per step (before → after)", ["step", "column", "kind", "PSI", "KL", "KS", "max share change", "alerts"], rows)


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}"
