"""A seeded, realistic annotation set with planted facts, for tests, the demo and benchmarks.

``generate()`` makes a rating task (helpfulness 1–5) over items collected across eight weeks:
several annotators, three per item, two guideline versions (v1 for the first four weeks, v2 after),
four batches, one annotator whose scale drifts upwards from week 3 (inside guideline v1, so the
drift is not a guideline change), and items of which some were produced by a model (``item_generator``
= the model id), some by humans, and some with no declared origin — among those, planted exact and
near copies of the model's registered outputs (what the registered-outputs detector must find).

Everything is a pure function of the seed. The returned ``Synth`` holds the plain-format records
(the plain schema of docs/feedback.md), the items, the model's outputs and the truth to check reports against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ANNOTATORS = ("ana@acme.test", "ben@acme.test", "chen@acme.test", "dara@acme.test", "eli@acme.test", "fay@acme.test")
DRIFTING = "dara@acme.test"
MODEL = "model-v37"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
WORDS = (
    "the model answer explains how to configure retries for the client and notes that timeouts apply per request "
    "while the pool keeps connections open across calls so a slow server can still block other requests unless "
    "limits are set carefully for each host and the caller checks errors before parsing any returned body data "
    "cache invalidation happens when keys expire or a write lands on the primary replica first"
).split()


@dataclass
class Synth:
    records: list[dict[str, Any]]
    items: dict[str, dict[str, Any]]  # item_id → {prompt, response, generator (declared or None), week}
    model_outputs: list[dict[str, str]]  # {output_id, text}: what the model produced (registered)
    truth: dict[str, Any] = field(default_factory=dict)


def _text(rng: np.random.Generator, n: int = 28) -> str:
    return " ".join(rng.choice(WORDS, size=n).tolist())


def generate(
    seed: int = 7, items: int = 240, weeks: int = 8, raters_per_item: int = 3, drift_week: int = 3, drift: float = 0.75, model: str = MODEL
) -> Synth:
    """The annotation set; ``drift`` is the probability that the drifting annotator rates one point
    up after ``drift_week`` (0: nobody drifts), ``model`` the id of the model behind generated items."""
    rng = np.random.default_rng(seed)
    quality = rng.choice([1, 2, 3, 4, 5], size=items, p=[0.1, 0.2, 0.3, 0.25, 0.15])
    origin = rng.choice(["model", "human", "unknown"], size=items, p=[0.3, 0.6, 0.1])
    out_items: dict[str, dict[str, Any]] = {}
    outputs: list[dict[str, str]] = []
    planted_exact: list[str] = []
    planted_near: list[str] = []
    unknown = 0
    for i in range(items):
        item_id = f"item-{i:04d}"
        week = i * weeks // items
        text = _text(rng)
        gen: str | None = "human"
        if origin[i] == "model":
            gen = model
            outputs.append({"output_id": f"{model}/out-{len(outputs):04d}", "text": text})
        elif origin[i] == "unknown":
            gen = None
            choice, unknown = unknown, unknown + 1
            if choice % 3 != 2:  # two of three unknown items copy a model output: exact, then near
                out_text = _text(rng)
                outputs.append({"output_id": f"{model}/out-{len(outputs):04d}", "text": out_text})
                if choice % 3 == 0:
                    text = out_text
                    planted_exact.append(item_id)
                else:
                    words = out_text.split()
                    words[len(words) // 2] = "indeed"  # one word changed: a near copy
                    text = " ".join(words)
                    planted_near.append(item_id)
        out_items[item_id] = {"prompt": f"question {i}", "response": text, "generator": gen, "week": week}
    records: list[dict[str, Any]] = []
    drift_at = START + timedelta(weeks=drift_week)
    for i in range(items):
        item_id = f"item-{i:04d}"
        week = out_items[item_id]["week"]
        raters = rng.choice(len(ANNOTATORS), size=raters_per_item, replace=False)
        for r in sorted(raters.tolist()):
            who = ANNOTATORS[r]
            at = START + timedelta(weeks=week, hours=float(rng.uniform(0, 24 * 5)))
            q = int(quality[i])
            noise = rng.random()
            rating = q if noise < 0.85 else q + (1 if noise < 0.925 else -1)
            if who == DRIFTING and at >= drift_at and rng.random() < drift:
                rating = q + 1  # the drifting annotator's scale moves up
            rating = int(min(5, max(1, rating)))
            rec: dict[str, Any] = {
                "item_id": item_id,
                "annotator": who,
                "guideline_version": "1" if week < weeks // 2 else "2",
                "collected_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "platform": "acme-labeling",
                "batch": f"b{week // 2 + 1}",
                "task": "helpfulness",
                "rating": rating,
                "item": {"prompt": out_items[item_id]["prompt"], "response": out_items[item_id]["response"]},
            }
            if out_items[item_id]["generator"] is not None:
                rec["item_generator"] = out_items[item_id]["generator"]
            records.append(rec)
    records.sort(key=lambda r: (r["collected_at"], r["annotator"]))
    gens = [out_items[r["item_id"]]["generator"] for r in records]
    truth = {
        "drifting": DRIFTING if drift > 0 else None,
        "drift_at": drift_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": model,
        "model_items": sorted(k for k, v in out_items.items() if v["generator"] == model),
        "planted_exact": sorted(planted_exact),
        "planted_near": sorted(planted_near),
        "judgements": len(records),
        "judgements_on_model_items": sum(1 for g in gens if g == model),
        "judgements_on_planted": sum(1 for r in records if r["item_id"] in set(planted_exact) | set(planted_near)),
    }
    return Synth(records, out_items, outputs, truth)


def write_plain(records: list[dict[str, Any]], path: str | Path) -> Path:
    p = Path(path)
    p.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")
    return p


def write_outputs(outputs: list[dict[str, str]], path: str | Path) -> Path:
    p = Path(path)
    p.write_text("".join(json.dumps(o, sort_keys=True) + "\n" for o in outputs), encoding="utf-8")
    return p


def to_argilla(records: list[dict[str, Any]], question: str = "helpfulness") -> list[dict[str, Any]]:
    """The records as an Argilla v2 records export (``dataset.records.to_json``): one record per
    item, one response per annotator (``user_id``); guideline version, time and origin as metadata."""
    by_item: dict[str, dict[str, Any]] = {}
    for r in records:
        rec = by_item.setdefault(
            r["item_id"],
            {
                "id": r["item_id"],
                "fields": r["item"],
                "metadata": {
                    "guideline_version": r["guideline_version"],
                    "collected_at": r["collected_at"],
                    "batch": r["batch"],
                    **({"item_generator": r["item_generator"]} if "item_generator" in r else {}),
                },
                "suggestions": {},
                "responses": {question: []},
                "vectors": {},
                "_server_id": None,
            },
        )
        rec["responses"][question].append({"value": r["rating"], "user_id": r["annotator"]})
    return list(by_item.values())


def to_label_studio(records: list[dict[str, Any]], question: str = "helpfulness") -> list[dict[str, Any]]:
    """The records as a Label Studio JSON export: one task per item, one annotation per annotator
    with a ``rating`` result."""
    tasks: dict[str, dict[str, Any]] = {}
    for r in records:
        t = tasks.setdefault(
            r["item_id"],
            {
                "id": len(tasks) + 1,
                "data": {
                    **r["item"],
                    "item_id": r["item_id"],
                    "guideline_version": r["guideline_version"],
                    "batch": r["batch"],
                    **({"item_generator": r["item_generator"]} if "item_generator" in r else {}),
                },
                "annotations": [],
                "predictions": [],
            },
        )
        t["annotations"].append(
            {
                "id": len(t["annotations"]) + 1,
                "completed_by": r["annotator"],
                "result": [{"from_name": question, "to_name": "response", "type": "rating", "value": {"rating": r["rating"]}}],
                "was_cancelled": False,
                "ground_truth": False,
                "created_at": r["collected_at"],
                "lead_time": 12.5,
                "task": t["id"],
            }
        )
    return list(tasks.values())
