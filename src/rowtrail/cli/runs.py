"""CLI for training runs: ``runs`` (list; which runs consumed a row or a source), ``run show``,
``run record`` (register a run made outside the recorder) and ``attribute``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
        return
    cfg = s.pop("config") or {}
    rows = [(k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in s.items() if k != "run_id"]
    model, opt = cfg.get("model") or {}, cfg.get("optimizer") or {}
    if model:
        rows.append(("model", f"{model.get('class')} ({model.get('parameters'):,} parameters)"))
    if opt:
        rows.append(("optimizer", f"{opt.get('class')} lr={(opt.get('defaults') or {}).get('lr')}"))
    if cfg.get("groups"):
        sizes = cfg.get("group_parameters") or {}
        rows.append(("groups", ", ".join(f"{g} ({sizes.get(g, '?'):,})" if isinstance(sizes.get(g), int) else g for g in cfg["groups"])))
    if cfg.get("untraced"):
        rows.append(("untraced", json.dumps(cfg["untraced"])))
    if cfg.get("features"):
        f = cfg["features"]
        rows.append(("features", f"{f.get('dim_total')} fp16 values per example, every {f.get('every')} step(s), {len(f.get('layers') or [])} layer(s)"))
    if cfg.get("user"):
        rows.append(("user config", json.dumps(cfg["user"])))
    render.kv(f"run {s['run_id']}", rows)


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
    model: str | None = typer.Option(None, "--model", help="Test-example attribution: 'file.py:function' (or 'module:function') returning the trained torch model."),
    test: Path | None = typer.Option(None, "--test", help="An .npz with arrays 'inputs' and 'targets' (and optionally 'names'): the test examples."),
    measure: str = typer.Option("margin", "--measure", help="margin or loss."),
    query: int | None = typer.Option(None, "--query", help="Report only this test example (index)."),
    weights: str = typer.Option("auto", "--weights", help="auto (the run's weight checkpoints when kept), checkpoints or final (the model given)."),
    damping: float | None = typer.Option(None, "--damping", help="λ of the damped Fisher (default 0.1 × its mean diagonal)."),
    remove_source: str | None = typer.Option(None, "--remove-source", help="Counterfactual: predicted change of each test example without this source's rows."),
    remove_rows: Path | None = typer.Option(None, "--remove-rows", help="Counterfactual: a file of row ids, one per line."),
    verify: str | None = typer.Option(None, "--verify", help="With a counterfactual: 'file.py:function' that trains a fresh model on the given row ids and returns the measure per test example; reports predicted vs actual."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Which rows (or sources) shaped a parameter group's updates (--group), or helped and hurt test
    examples (--model and --test), with their governance; optionally what removing rows would do."""
    from ..ops.runs import get
    from .app import open_store

    run = get(open_store(), run_id)
    if model is None and test is None:
        if remove_source or remove_rows or verify:
            raise typer.BadParameter("a counterfactual needs test examples: give --model and --test")
        steps = None if first_step is None and last_step is None else (first_step or 0, last_step if last_step is not None else 1 << 62)
        _group_report(run.attribute(group=group, steps=steps, top=top, by=by), by, as_json)
        return
    if model is None or test is None:
        raise typer.BadParameter("test-example attribution needs both --model and --test")
    if group is not None or first_step is not None or last_step is not None:
        raise typer.BadParameter("--group/--from-step/--to-step attribute a parameter group; --model/--test attribute test examples — not both")
    _examples_report(run, model, test, measure, query, weights, damping, top, remove_source, remove_rows, verify, as_json)


def _group_report(res: dict[str, Any], by: str, as_json: bool) -> None:
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


def _load_test(path: Path) -> tuple[Any, Any, list[str]]:
    import numpy as np

    from ..errors import RowtrailError

    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("inputs", "targets") if k not in z.files]
            if missing:
                raise RowtrailError(f"{path}: no array {', '.join(repr(k) for k in missing)}; the file holds {', '.join(z.files) or 'nothing'}")
            inputs, targets = z["inputs"], z["targets"]
            names = [str(x) for x in z["names"]] if "names" in z.files else [str(i) for i in range(len(inputs))]
    except (OSError, ValueError) as exc:
        raise RowtrailError(f"{path}: not a readable .npz without pickled objects ({exc})") from None
    if len(inputs) != len(targets) or len(names) != len(inputs):
        raise RowtrailError(f"{path}: {len(inputs)} inputs, {len(targets)} targets and {len(names)} names; they must match")
    return inputs, targets, names


def _examples_report(run: Any, model_ref: str, test: Path, measure: str, query: int | None, weights: str, damping: float | None, top: int, remove_source: str | None, remove_rows: Path | None, verify: str | None, as_json: bool) -> None:
    from ..steps.pipeline import _import_function

    inputs, targets, names = _load_test(test)
    factory = _import_function(model_ref, Path.cwd(), "--model")
    model = factory()
    res = run.attribute(model=model, test_inputs=inputs, test_targets=targets, measure=measure, damping=damping, weights=weights)
    queries = range(len(names)) if query is None else [query]
    if query is not None and not 0 <= query < len(names):
        raise typer.BadParameter(f"--query {query}: the test file has {len(names)} example(s)")
    out: dict[str, Any] = {"run_id": run.id, "measure": res.measure, "damping": res.damping, "notes": res.notes, "queries": []}
    for q in queries:
        scores = res.scores()[q]
        order = scores.argsort(kind="stable")
        harmful = [{"row_id": p.pop("row_id"), "score": float(scores[i]), **p} for i, p in zip(order[:top], run.provenance(res._ids[order[:top]]))]
        out["queries"].append({"query": q, "name": names[q], "helpful": res.top(q, top), "harmful": [h for h in harmful if h["score"] < 0]})
    if remove_source or remove_rows:
        rows = [r.strip() for r in remove_rows.read_text().splitlines() if r.strip()] if remove_rows else None
        retrain = _import_function(verify, Path.cwd(), "--verify") if verify else None
        cf = res.counterfactual(rows=rows, source=remove_source, retrain=retrain) if rows is not None else res.counterfactual(source=remove_source, retrain=retrain)
        out["counterfactual"] = {"removed_source": remove_source, **cf}
    if as_json:
        render.print_json(out)
        return
    from rich.markup import escape

    for note in res.notes:
        render.err.print(f"[yellow]note:[/yellow] {escape(note)}")
    for qr in out["queries"]:
        for kind in ("helpful", "harmful"):
            render.table(
                f"{kind} rows for test example {qr['name']} ({res.measure}) in {run.id}",
                ["row", "score", "source", "licence", "legal basis", "admitted by"],
                [(t["row_id"][:16], f"{t['score']:.4g}", t["source_id"], t["license"], t["legal_basis"], t["admitted_by"] or "-") for t in qr[kind]],
            )
    if "counterfactual" in out:
        cf = out["counterfactual"]
        head = ["test example", "predicted change"] + (["actual change"] if "actual" in cf else [])
        rows_out = [[names[i], f"{p:+.4g}"] + ([f"{cf['actual'][i]:+.4g}"] if "actual" in cf else []) for i, p in enumerate(cf["predicted"]) if query is None or i == query]
        render.table(f"without {cf['removed']} row(s){' of ' + remove_source if remove_source else ''}", head, rows_out)
