"""CLI for admission policies: ``policy set FILE``, ``policy show``, ``policy check [V]``."""

from __future__ import annotations

from pathlib import Path

import typer

from . import render

app = typer.Typer(help="Admission policies: which sources a version may hold, and how rows are classified.", no_args_is_help=True)


@app.command("set")
def set_(file: Path = typer.Argument(..., help="A policy file (TOML: \\[\\[rule]] and \\[\\[classify]] tables).")) -> None:
    """Make FILE the store's admission policy (checked by every later commit)."""
    from ..errors import PolicyError
    from ..ops.policy import set_policy
    from .app import open_store

    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read {file}: {exc}") from None
    digest = set_policy(open_store(), text, str(file))
    render.out.print(f"policy {digest[:12]} set; every commit now checks it ('rowtrail policy check V' checks a version)", markup=False)


@app.command("show")
def show(as_json: bool = typer.Option(False, "--json")) -> None:
    """The store's current admission policy."""
    from ..ops.policy import current
    from .app import open_store

    digest, doc, text = current(open_store().state)
    if as_json:
        render.print_json({"digest": digest, "policy": doc})
    elif digest is None:
        render.out.print("no admission policy is set")
    else:
        render.out.print(f"# policy {digest}\n{text}", markup=False, highlight=False)


@app.command("check")
def check(
    version: str = typer.Argument("HEAD"),
    corpus: str = typer.Option("main", "--corpus"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Evaluate the current policy over a version's sources; exit 1 when it rejects any."""
    from ..ops.policy import check as run
    from .app import open_store

    res = run(open_store(), version, corpus)
    if as_json:
        render.print_json(res)
    else:
        rows = []
        for sid, v in sorted(res["sources"].items()):
            why = "; ".join(p for r in v["rules"] if not r["ok"] for p in r["problems"])
            rows.append((sid, v["rows"], "admitted" if v["admitted"] else "REJECTED", v["rule"] or "-", why, ", ".join(f"{k}={x}" for k, x in v["classification"].items())))
        render.table(f"policy {res['policy'][:12]} over {res['tag'] or res['version_id'][:12]}", ["source", "rows", "decision", "rule", "problems", "classification"], rows)
    if not res["ok"]:
        raise typer.Exit(1)
