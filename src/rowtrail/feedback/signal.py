"""The training signal between collection and training: the distribution of labels, ratings and
preference margins after the inputs and after every pipeline step, per guideline version, and
expected against actual.

It replays the version's pipeline run (``contamination.replay``: drops, weight changes and lineage
edges per step) and weighs every judgement by its weight at that point, so an upsampling or a filter
shows up as the change it makes to what training will see. Drift figures are the step monitoring's
(``monitoring/drift.py``): ``categorical_drift`` (shares, ``psi``, ``kl``, ``max_change``) for labels,
ratings as categories and pairs; ``numeric_drift`` (means, ``psi``/``kl`` over quantile bins, ``ks``)
for ratings and margins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..monitoring.drift import categorical_drift, numeric_drift
from ..segments import ATTR_PREFIX

if TYPE_CHECKING:
    from ..store import Store

NAMES = ("annotation_kind", "task", "label", "rating", "chosen", "margin", "guideline_version", "batch")


def _label(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _values(cols: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per input row: its categorical signal value (label, rating as text, or ``pair``) and its
    numeric one (rating or margin; nan when none)."""
    kind = cols[ATTR_PREFIX + "annotation_kind"]
    cat = np.empty(len(kind), dtype=object)
    num = np.full(len(kind), np.nan)
    for i, k in enumerate(kind.tolist()):
        if k == "label":
            cat[i] = str(cols[ATTR_PREFIX + "label"][i])
        elif k == "rating":
            r = cols[ATTR_PREFIX + "rating"][i]
            cat[i] = _label(float(r))
            num[i] = float(r)
        elif k == "pair":
            cat[i] = "pair"
            m = cols[ATTR_PREFIX + "margin"][i]
            num[i] = np.nan if m is None else float(m)
    return cat, num


def shares(values: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    total = float(weights.sum())
    if total <= 0:
        return {}
    keys, inv = np.unique(values.astype(str), return_inverse=True)
    sums = np.bincount(inv.reshape(-1), weights=weights, minlength=len(keys))
    return {str(k): float(s / total) for k, s in zip(keys, sums)}


def _brief(d: Mapping[str, Any]) -> dict[str, Any]:
    keep = ("psi", "kl", "ks", "ks_pvalue", "max_change", "max_change_value", "mean_before", "mean_after")
    return {k: d[k] for k in keep if k in d}


def monitor(store: Store, version: str = "HEAD", corpus: str = "main") -> dict[str, Any]:
    """Label / rating / margin distributions per pipeline step and per guideline version, with drift."""
    from .contamination import replay
    from .data import record_attributes

    info = store.state.resolve(version, corpus)
    vid = info.version_id
    inputs = store.version_inputs(vid)
    cols = record_attributes(store, inputs, [ATTR_PREFIX + n for n in NAMES])
    is_ann = np.array([k is not None for k in cols[ATTR_PREFIX + "annotation_kind"]], dtype=bool)
    cat, num = _values(cols)
    task = np.array(
        [t if t is not None else k for t, k in zip(cols[ATTR_PREFIX + "task"], cols[ATTR_PREFIX + "annotation_kind"])], dtype=object
    )
    guide = cols[ATTR_PREFIX + "guideline_version"]
    stages = replay(store, vid)
    tasks = []
    for t in sorted({str(x) for x in task[is_ann]}):
        mine = is_ann & (task.astype(str) == t)
        kinds = sorted({str(k) for k in cols[ATTR_PREFIX + "annotation_kind"][mine]})
        steps = []
        prev = None
        for st in stages:
            a, w = st["ancestor"], st["weights"]
            sel = mine[a]
            c, x, ww = cat[a][sel], num[a][sel], w[sel]
            row: dict[str, Any] = {
                "step": st["name"],
                "step_id": st["step_id"],
                "rows": int(sel.sum()),
                "weight": float(ww.sum()),
                "shares": shares(c, ww),
            }
            has_num = np.isfinite(x).any()
            if has_num:
                ok = np.isfinite(x)
                row["mean"] = float(np.average(x[ok], weights=ww[ok])) if ww[ok].sum() > 0 else None
            if prev is not None:
                row["drift"] = _brief(categorical_drift(prev[0], c, before_weights=prev[2], after_weights=ww))
                if has_num:
                    pb, pw = prev[1], prev[2]
                    okb, oka = np.isfinite(pb), np.isfinite(x)
                    row["drift_numeric"] = _brief(numeric_drift(pb[okb], x[oka], before_weights=pw[okb], after_weights=ww[oka]))
            steps.append(row)
            prev = (c, x, ww)
        first, last = stages[0], stages[-1]
        fsel, lsel = mine[first["ancestor"]], mine[last["ancestor"]]
        collected_vs_trained = _brief(
            categorical_drift(
                cat[first["ancestor"]][fsel],
                cat[last["ancestor"]][lsel],
                before_weights=first["weights"][fsel],
                after_weights=last["weights"][lsel],
            )
        )
        per_guideline = []
        a, w = last["ancestor"], last["weights"]
        sel = mine[a]
        gprev = None
        for g in sorted({str(v) for v in guide[a][sel]}, key=lambda s: (len(s), s)):
            gs = sel & (guide[a].astype(str) == g)
            c, ww = cat[a][gs], w[gs]
            entry: dict[str, Any] = {"guideline": g, "rows": int(gs.sum()), "weight": float(ww.sum()), "shares": shares(c, ww)}
            x = num[a][gs]
            if np.isfinite(x).any():
                ok = np.isfinite(x)
                entry["mean"] = float(np.average(x[ok], weights=ww[ok]))
            if gprev is not None:
                entry["drift_from_previous"] = _brief(categorical_drift(gprev[0], c, before_weights=gprev[1], after_weights=ww))
            per_guideline.append(entry)
            gprev = (c, ww)
        tasks.append(
            {"task": t, "kinds": kinds, "steps": steps, "collected_vs_trained": collected_vs_trained, "per_guideline": per_guideline}
        )
    return {"version_id": vid, "tag": info.tag, "tasks": tasks}


def expected_vs_actual(actual: dict[str, float], expected: dict[str, float]) -> dict[str, Any]:
    """Drift figures of an actual distribution (shares) against an expected one."""
    keys = sorted(set(actual) | set(expected))
    vals = np.array(keys, dtype=object)
    d = categorical_drift(
        vals,
        vals,
        before_weights=np.array([expected.get(k, 0.0) for k in keys]),
        after_weights=np.array([actual.get(k, 0.0) for k in keys]),
    )
    out = {"expected": {k: expected.get(k, 0.0) for k in keys}, "actual": {k: actual.get(k, 0.0) for k in keys}, **_brief(d)}
    out["verdict"] = verdict(out.get("psi"))
    return out


PSI_MODERATE = 0.1
PSI_MAJOR = 0.25


def verdict(psi: float | None) -> str | None:
    """The usual reading of a population stability index: below 0.1 the distributions match, 0.1 to
    0.25 is a moderate shift, above 0.25 a major one."""
    if psi is None:
        return None
    return "matches" if psi < PSI_MODERATE else ("moderate shift" if psi < PSI_MAJOR else "major shift")
