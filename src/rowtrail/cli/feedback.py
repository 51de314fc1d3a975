"""CLI for feedback provenance: ``guideline add|list|show|diff``, ``annotations import|list``,
``agreement``, ``signal``, ``model add|list``, ``contamination`` and ``run-card``. The work is in
``rowtrail.feedback``; this module parses and renders."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from . import render

guideline_app = typer.Typer(help="Annotation guidelines: registered, content-hashed texts, one per version.", no_args_is_help=True)
annotations_app = typer.Typer(
    help="Annotations as rows: import exports from Argilla, Label Studio or the plain JSONL/CSV schema.", no_args_is_help=True
)
model_app = typer.Typer(
    help="Models whose outputs may re-enter the corpus: their training run and registered outputs.", no_args_is_help=True
)


def _store() -> Any:
    from .app import open_store

    return open_store()


def _version(store: Any, ref: str) -> str:
    """A version ref, or a training run id standing for the version it trained on."""
    if ref.startswith("run-"):
        from ..errors import RefError

        for e in store.state.entries:
            if e["kind"] == "run" and e["run_id"] == ref:
                return str(e["version_id"])
        raise RefError(f"no training run '{ref}'; see 'rowtrail runs'")
    return ref


def _json_arg(value: str, option: str) -> Any:
    """A JSON option given inline or as a file."""
    from ..errors import RowtrailError

    try:
        text = Path(value).read_text(encoding="utf-8") if Path(value).is_file() else value
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise RowtrailError(f"{option} is neither JSON nor a readable JSON file: {exc}") from None


def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


# -- guidelines -------------------------------------------------------------------------------------


@guideline_app.command("add")
def guideline_add(
    file: Path = typer.Argument(..., help="The guideline text (UTF-8: Markdown, plain text)."),
    version: str = typer.Option(..., "--version", "-v", help="Its version (e.g. 3). Versions never change once registered."),
    expected: str | None = typer.Option(
        None, "--expected", help='The label distribution it expects: JSON ({"good": 0.6, "bad": 0.4} or per task) or a JSON file.'
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Register a guideline text under a version (stored by its SHA-256)."""
    from ..feedback.guidelines import add

    g, new = add(_store(), file, version, expected=_json_arg(expected, "--expected") if expected else None)
    if as_json:
        render.print_json({**g.to_dict(), "new": new})
    else:
        render.out.print(
            f"{'registered' if new else 'already registered'}: guideline v{g.version} = {g.digest} ({g.name}, {g.bytes} bytes)",
            markup=False,
        )


@guideline_app.command("list")
def guideline_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Registered guideline versions, with the annotation batches that fall under each."""
    from ..feedback.annotations import batches_by_guideline
    from ..feedback.guidelines import registered

    store = _store()
    found = registered(store)
    batches = batches_by_guideline(store)
    rows = [{**g.to_dict(), "batches": batches.get(v, [])} for v, g in found.items()]
    if as_json:
        render.print_json(rows)
    else:
        render.table(
            "guidelines",
            ["version", "sha256", "file", "bytes", "registered", "batches"],
            [(r["version"], r["digest"][:16], r["name"], r["bytes"], r["at"][:19], ", ".join(r["batches"]) or "–") for r in rows],
        )


@guideline_app.command("show")
def guideline_show(version: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """Print a registered guideline's text."""
    from ..feedback.guidelines import get, text

    store = _store()
    body = text(store, version)
    if as_json:
        render.print_json({**get(store, version).to_dict(), "text": body})
    else:
        sys.stdout.write(body)


@guideline_app.command("diff")
def guideline_diff(
    old: str = typer.Argument(..., help="Guideline version A."),
    new: str = typer.Argument(..., help="Guideline version B."),
    version: str | None = typer.Option(None, "--in", help="Count batches in this corpus version only (default: every import)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The text diff between two guideline versions, and which annotation batches fall under each."""
    from ..feedback.guidelines import diff

    d = diff(_store(), old, new, version=version)
    if as_json:
        render.print_json(d)
        return
    render.out.print(
        d["diff"] or f"(guideline v{d['old']['version']} and v{d['new']['version']} have the same text)\n", markup=False, end=""
    )
    render.table(
        "annotation batches",
        ["guideline", "sha256", "batches"],
        [(f"v{g['version']}", g["digest"][:16], ", ".join(d["batches"][g["version"]]) or "–") for g in (d["old"], d["new"])],
    )


# -- annotations ------------------------------------------------------------------------------------


@annotations_app.command("import")
def annotations_import(
    file: Path = typer.Argument(..., help="The export: plain JSONL/CSV, an Argilla records JSON or a Label Studio JSON export."),
    source: str = typer.Option(..., "--source", "-s", help="An annotation-batch (or user-feedback) source."),
    fmt: str | None = typer.Option(
        None, "--format", help="jsonl, csv, argilla or label-studio (default: from the suffix: .csv, else jsonl)."
    ),
    batch: str | None = typer.Option(None, "--batch", help="Batch name for records that name none (default: the file's stem)."),
    guideline_version: str | None = typer.Option(None, "--guideline-version", help="Guideline version for records that name none."),
    collected_at: str | None = typer.Option(None, "--collected-at", help="Collection time (RFC 3339) for records that carry none."),
    question: str | None = typer.Option(
        None, "--question", help="Argilla question / Label Studio control to import (needed when records answer several)."
    ),
    pseudonymize: bool = typer.Option(
        False,
        "--pseudonymize",
        help="Replace annotator ids by HMAC-SHA256 pseudonyms (key: ROWTRAIL_PSEUDONYM_KEY or --key-file, never stored).",
    ),
    key_file: Path | None = typer.Option(None, "--key-file", help="The pseudonymization key file (outside the store)."),
    corpus: str = typer.Option("main", "--corpus"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Import annotations as rows (staged until 'rowtrail commit')."""
    from ..feedback.annotations import import_annotations

    with render.progress("import", not as_json) as bar:
        rep = import_annotations(
            _store(),
            file,
            source=source,
            fmt=fmt,
            batch=batch,
            guideline_version=guideline_version,
            collected_at=collected_at,
            question=question,
            pseudonymize=pseudonymize or key_file is not None,
            key_file=key_file,
            corpus=corpus,
            progress=bar,
        )
    if as_json:
        render.print_json(rep.to_dict())
        return
    render.kv(
        f"imported {rep.judgements} judgement(s) from {rep.file}",
        [
            ("source", rep.source),
            ("format", rep.format),
            ("new rows", rep.new),
            ("unchanged", rep.unchanged),
            ("kinds", ", ".join(f"{k}: {v}" for k, v in rep.kinds.items())),
            ("batches", ", ".join(rep.batches)),
            ("guideline versions", ", ".join(rep.guideline_versions)),
            ("annotators", f"{rep.annotators}" + (f" (pseudonymized, key id {rep.key_id})" if rep.pseudonymized else "")),
            ("ingest", rep.ingest_id),
        ],
    )


@annotations_app.command("list")
def annotations_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Every annotation import: source, format, file, batches, guideline versions."""
    from ..feedback.annotations import imports

    rows = imports(_store())
    if as_json:
        render.print_json(rows)
        return
    render.table(
        "annotation imports",
        ["at", "source", "format", "file", "judgements", "batches", "guidelines", "pseudonym key"],
        [
            (
                e["at"][:19],
                e["source"],
                e["format"],
                e["file"]["name"],
                e["judgements"],
                ", ".join(e["batches"]),
                ", ".join(e["guideline_versions"]),
                e.get("pseudonym_key_id") or "–",
            )
            for e in rows
        ],
    )


# -- agreement and signal ---------------------------------------------------------------------------


def agreement(
    version: str = typer.Argument("HEAD", help="A version (tag or id), or a training run (its version)."),
    by: str = typer.Option("guideline", "--by", help="guideline, annotator, batch or week."),
    level: str | None = typer.Option(
        None, "--level", help="nominal, ordinal or interval (default: nominal for labels and pairs, ordinal for ratings)."
    ),
    task: str | None = typer.Option(None, "--task", help="Only this task."),
    permutations: int = typer.Option(499, "--permutations", help="Shuffles for the drift test's p-value."),
    alpha: float = typer.Option(0.01, "--alpha", help="Drift test level (Bonferroni over an annotator's tests)."),
    corpus: str = typer.Option("main", "--corpus"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Inter-annotator agreement (Krippendorff's alpha, Fleiss' and Cohen's kappa) per guideline,
    annotator, batch or week, and each annotator's calibration drift."""
    from ..feedback import analysis
    from ..feedback.data import load

    if by not in analysis.BY:
        raise typer.BadParameter(f"--by must be one of {', '.join(analysis.BY)}")
    if level is not None and level not in ("nominal", "ordinal", "interval"):
        raise typer.BadParameter("--level must be nominal, ordinal or interval")
    store = _store()
    ann = load(store, _version(store, version), corpus)
    if task is not None:
        ann = ann.take(ann.task.astype(str) == task)
    rep = analysis.agreement(ann, by=by, level=level, cfg=analysis.DriftConfig(alpha=alpha, permutations=permutations))
    if as_json:
        render.print_json(rep)
        return
    if not rep["tasks"]:
        render.out.print(f"version {version} holds no annotations", markup=False)
        return
    for t in rep["tasks"]:
        o = t["overall"]
        render.out.print(
            f"task {t['task']} ({t['kind']}, {t['level']}): {o['judgements']} judgements, {o['annotators']} annotators, {o['units']} items — "
            f"alpha {_f(o['alpha'])}, Fleiss {_f(o['fleiss_kappa'])} ({o['fleiss_units']} items × {o.get('fleiss_raters', 0)}), Cohen mean {_f(o['cohen_kappa_mean'])} ({o['cohen_pairs']} pairs)",
            markup=False,
        )
        if by == "annotator":
            render.table(
                f"by annotator — {t['task']}",
                ["annotator", "judgements", "alpha on their items", "without them", "kappa vs pool", "agreement", "drift"],
                [
                    (
                        g["group"],
                        g["judgements"],
                        _f(g["alpha"]),
                        _f(g["alpha_without"]),
                        _f(g["kappa_vs_pool"]),
                        _f(g["agreement"]),
                        "DRIFT" if g["drift"] else "–",
                    )
                    for g in t["groups"]
                ],
            )
        else:
            render.table(
                f"by {by} — {t['task']}",
                [by, "judgements", "items", "annotators", "alpha", "Fleiss kappa", "Cohen mean"],
                [
                    (
                        g["group"],
                        g["judgements"],
                        g["units"],
                        g["annotators"],
                        _f(g["alpha"]),
                        _f(g["fleiss_kappa"]),
                        _f(g["cohen_kappa_mean"]),
                    )
                    for g in t["groups"]
                ],
            )
        rows = []
        for a in t["annotators"]:
            best = min(a["tests"].values(), key=lambda x: x["p"]) if a.get("tests") else None
            rows.append(
                (
                    a["annotator"],
                    a["judgements"],
                    _f(a["kappa_vs_pool"]),
                    _f(a["agreement"]),
                    _f(a.get("bias")),
                    "DRIFT" if a.get("drift") else "–",
                    ", ".join(a.get("flagged_by") or []) or "–",
                    a.get("change_at", "–") if a.get("drift") else "–",
                    _f(best["p"], 4) if best else "–",
                )
            )
        render.table(
            f"annotators against the pool — {t['task']}",
            ["annotator", "judgements", "kappa vs pool", "agreement", "bias", "drift", "by", "change at", "min p"],
            rows,
        )
        for a in t["annotators"]:
            if a.get("drift"):
                render.table(
                    f"{a['annotator']} over time — {t['task']}",
                    ["week", "judgements", "agreement with pool", "mean", "bias", "labels"],
                    [
                        (
                            p["week"],
                            p["judgements"],
                            _f(p["agreement"]),
                            _f(p.get("mean")),
                            _f(p.get("bias")),
                            ", ".join(f"{k}: {v:.2f}" for k, v in p["labels"].items()),
                        )
                        for p in a["timeline"]
                    ],
                )
        ref = t.get("reference_shift")
        if ref:
            render.out.print(
                f"pool label distribution: {'SHIFTED' if ref['shift'] else 'stable'} (best split {ref['change_at']}, total variation {_f(ref['total_variation'])}, p {_f(ref['p'], 4)})",
                markup=False,
            )


def signal(
    version: str = typer.Argument("HEAD", help="A version (tag or id), or a training run (its version)."),
    corpus: str = typer.Option("main", "--corpus"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The training signal per pipeline step and per guideline version: label / rating / margin
    distributions, weighted, with drift (psi, KL, KS)."""
    from ..feedback.signal import monitor

    store = _store()
    rep = monitor(store, _version(store, version), corpus)
    if as_json:
        render.print_json(rep)
        return
    for t in rep["tasks"]:
        keys = sorted({k for s in t["steps"] for k in s["shares"]})
        render.table(
            f"signal per step — {t['task']}",
            ["step", "rows", "weight", *keys, "mean", "psi", "max change"],
            [
                (
                    s["step"],
                    s["rows"],
                    _f(s["weight"], 1),
                    *[_f(s["shares"].get(k, 0.0)) for k in keys],
                    _f(s.get("mean")),
                    _f((s.get("drift") or {}).get("psi"), 4),
                    _f((s.get("drift") or {}).get("max_change")),
                )
                for s in t["steps"]
            ],
        )
        render.table(
            f"signal per guideline — {t['task']}",
            ["guideline", "rows", "weight", *keys, "mean", "psi vs previous"],
            [
                (
                    f"v{g['guideline']}",
                    g["rows"],
                    _f(g["weight"], 1),
                    *[_f(g["shares"].get(k, 0.0)) for k in keys],
                    _f(g.get("mean")),
                    _f((g.get("drift_from_previous") or {}).get("psi"), 4),
                )
                for g in t["per_guideline"]
            ],
        )
        c = t["collected_vs_trained"]
        render.out.print(
            f"collected → trained: psi {_f(c.get('psi'), 4)}, KL {_f(c.get('kl'), 4)}, largest share change {_f(c.get('max_change'))} ({c.get('max_change_value')})",
            markup=False,
        )


# -- models and contamination -----------------------------------------------------------------------


@model_app.command("add")
def model_add(
    model: str = typer.Argument(..., help="The model id sources and rows name as their generator (e.g. model-v37)."),
    run: str | None = typer.Option(None, "--run", help="The training run that produced it ('rowtrail runs')."),
    outputs: Path | None = typer.Option(None, "--outputs", help="Its outputs (JSONL or CSV), for the registered-outputs detector."),
    text_field: str = typer.Option("text", "--text-field"),
    id_field: str = typer.Option("output_id", "--id-field"),
    note: str | None = typer.Option(None, "--note"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Register a model: the run that produced it and, optionally, its outputs."""
    from ..feedback.contamination import add_model, read_outputs

    store = _store()
    table = read_outputs(outputs, text_field, id_field) if outputs else None
    e = add_model(store, model, run=run, outputs=table, note=note)
    if as_json:
        render.print_json(e)
    else:
        render.out.print(
            f"registered {model}"
            + (f" (run {run})" if run else "")
            + (f" with {e['output_count']} output(s)" if table is not None else ""),
            markup=False,
        )


@model_app.command("list")
def model_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Registered models."""
    from ..feedback.contamination import models

    store = _store()
    rows = [e for entries in models(store).values() for e in entries]
    if as_json:
        render.print_json(rows)
        return
    vs = store.state.versions
    render.table(
        "models",
        ["model", "run", "trained on", "outputs", "registered"],
        [
            (
                e["model"],
                e["run_id"] or "–",
                (vs[e["version_id"]].tag or e["version_id"][:12]) if e.get("version_id") in vs else "–",
                e["output_count"],
                e["at"][:19],
            )
            for e in rows
        ],
    )


def contamination(
    version: str = typer.Argument("HEAD", help="A version (tag or id), or a training run (its version)."),
    detector: str = typer.Option(
        "registered", "--detector", help="registered (exact + near match against registered model outputs) or none."
    ),
    threshold: float = typer.Option(0.7, "--threshold", help="Near-match Jaccard threshold of the registered-outputs detector."),
    chains: int = typer.Option(10, "--chains", help="How many chains (model → output → rating → training row) to list, heaviest first."),
    corpus: str = typer.Option("main", "--corpus"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The share of a version's training signal derived from model outputs, per step and per
    source, and the chains model → run → output → rating → training row."""
    from ..feedback import contamination as c

    if detector not in ("registered", "none"):
        raise typer.BadParameter("--detector must be 'registered' or 'none'")
    store = _store()
    det = c.RegisteredOutputs(store, threshold=threshold) if detector == "registered" else None
    rep = c.report(store, _version(store, version), detector=det, chains=chains, corpus=corpus)
    if as_json:
        render.print_json(rep)
        return
    render.table(
        f"model-derived share of the training weight — {rep['tag'] or rep['version_id'][:12]}",
        ["after", "rows", "weight", "model-derived rows", "model-derived weight", "share"],
        [
            (s["step"], s["rows"], _f(s["weight"], 1), s["generated_rows"], _f(s["generated_weight"], 1), _f(s["share"], 4))
            for s in rep["steps"]
        ],
    )
    render.table(
        "per source",
        ["source", "rows", "weight", "model-derived weight", "share", "how known"],
        [
            (
                k,
                v["rows"],
                _f(v["weight"], 1),
                _f(v["generated_weight"], 1),
                _f(v["share"], 4),
                ", ".join(f"{a}: {b}" for a, b in v["via"].items()) or "–",
            )
            for k, v in rep["per_source"].items()
        ],
    )
    render.table(
        "models",
        ["model", "registered", "run", "trained on", "earlier version"],
        [
            (
                m["model"],
                "yes" if m["registered"] else "no",
                m["run_id"] or "–",
                m["run_version_tag"] or (m["run_version"] or "–")[:12],
                {True: "yes", False: "no", None: "–"}[m["earlier"]],
            )
            for m in rep["models"]
        ],
    )
    render.table(
        f"chains ({len(rep['chains'])} of {rep['chains_total']})",
        ["model", "run", "output", "how", "rating row", "annotator", "guideline", "training row", "weight"],
        [
            (
                x["model"],
                x["run_id"] or "–",
                x["output"],
                x["match"] + (f" {x['similarity']:.2f}" if x["similarity"] is not None and x["match"] == "detector:near" else ""),
                x["rating_row"][:12],
                x["annotator"] or "–",
                x["guideline"] or "–",
                x["training_row"][:12],
                _f(x["weight"], 1),
            )
            for x in rep["chains"]
        ],
    )
    if not rep["replay_matches_version"]:
        render.err.print(
            "warning: replaying the pipeline run did not reproduce the version's rows; shares per step may be off (run 'rowtrail verify')"
        )


def run_card(
    run: str | None = typer.Argument(None, help="A training run id ('rowtrail runs')."),
    version: str | None = typer.Option(None, "--version", "-v", help="Instead of a run: a version."),
    expected: str | None = typer.Option(
        None, "--expected", help='Expected label shares: JSON ({"task": {"label": share}} or {"label": share}) or a JSON file.'
    ),
    fmt: str | None = typer.Option(None, "--format", help="md or json (default: from -o's suffix, else md)."),
    output: Path | None = typer.Option(None, "-o", "--output"),
    as_json: bool = typer.Option(False, "--json"),
    corpus: str = typer.Option("main", "--corpus"),
) -> None:
    """A training run's answers to the three questions: annotations by guideline version and batch,
    the pinned transformations, and expected vs actual training signal with drift figures."""
    from ..errors import RowtrailError
    from ..feedback.runcard import markdown
    from ..feedback.runcard import run_card as make

    if (run is None) == (version is None):
        raise typer.BadParameter("give a run id or --version V (not both)")
    exp = None
    if expected:
        try:
            text = Path(expected).read_text(encoding="utf-8") if Path(expected).is_file() else expected
            exp = json.loads(text)
        except (OSError, ValueError) as exc:
            raise RowtrailError(f"--expected is neither a JSON object nor a readable JSON file: {exc}") from None
        if not isinstance(exp, dict) or not exp:
            raise RowtrailError('--expected must be a JSON object such as {"good": 0.6, "bad": 0.4}')
        if all(isinstance(v, (int, float)) for v in exp.values()):
            exp = {"*": {str(k): float(v) for k, v in exp.items()}}
    card = make(_store(), run, version=version, expected=exp, corpus=corpus)
    kind = "json" if as_json else (fmt or ("json" if output and output.suffix == ".json" else "md"))
    if kind not in ("md", "json"):
        raise typer.BadParameter("--format must be md or json")
    text = render.dumps(card) if kind == "json" else markdown(card)
    if output:
        output.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        render.err.print(f"wrote {output}")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def register(app: typer.Typer) -> None:
    """Add this module's commands to *app*."""
    app.add_typer(guideline_app, name="guideline")
    app.add_typer(annotations_app, name="annotations")
    app.add_typer(model_app, name="model")
    app.command("agreement")(agreement)
    app.command("signal")(signal)
    app.command("contamination")(contamination)
    app.command("run-card")(run_card)
