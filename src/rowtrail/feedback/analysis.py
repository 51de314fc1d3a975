"""Agreement over a version's annotations — per batch, guideline version, annotator and week — and
calibration drift per annotator.

Judgements are compared per **unit**: the same task and item (for a preference pair, also the same
two sides). Each task is reported on its own, with the level of measurement of its kind: labels and
pairs are nominal, ratings ordinal (``level="interval"`` to treat them as interval).

Per group of judgements (``figures``): Krippendorff's alpha at that level (missing data allowed);
Fleiss' kappa over the units rated by the most common number of annotators (ratings as categories);
and the mean of Cohen's kappa over annotator pairs sharing at least ``MIN_COMMON`` units (quadratic
weights for ratings, unweighted otherwise). Grouped by annotator, a group is every judgement on the
items that annotator judged, and ``alpha_without`` is the same items' alpha without that annotator's
judgements (above ``alpha``: they lower agreement).

Per annotator, against the **pool** (every other annotator of the same unit): the pool value of a
unit is the others' most frequent value (labels, pairs; ties go to the smallest) or the others'
median rounded down to a value they gave (ratings); ``kappa_vs_pool`` is Cohen's kappa of the
annotator's values against those, ``agreement`` the share equal to it, and for ratings ``bias`` the
mean of (rating − the others' mean); ``timeline`` gives the same per ISO week, with the annotator's
label shares, so a drift can be read off week by week.

**Calibration drift** (``drift``). For each annotator, in time order of their judgements on units
the pool also rated, two sequences are tested for one change point:

- agreement with the pool (1 when the judgement equals the pool value, else 0), and
- for ratings, the residual (rating − the others' mean on the unit), which does not move when the
  mix of items changes, only when the annotator's scale does.

The statistic is the largest two-sample statistic over the splits leaving at least ``min_segment``
judgements on each side (every split, or an even grid of ``MAX_SPLITS`` = 256 of them on longer
sequences) (a G-test of the 0/1 shares; Welch's t for residuals), and its p-value is a
permutation test (``permutations`` shuffles of the sequence, seeded from the annotator id, so the
result is reproducible): ``p = (1 + #{shuffled max ≥ observed max}) / (1 + permutations)``. An
annotator is flagged when a sequence's p ≤ ``alpha / tests`` (Bonferroni over the tests run) **and**
the change is large enough to matter: agreement moves by at least ``min_agreement_change`` (default
0.15), or the residual mean by at least ``min_shift`` (default 0.5 rating points). The annotator's
own label distribution before and after their best split is reported alongside (``labels_before``,
``labels_after``) without being part of the flag, since it also moves when the item mix does.

The pool as a whole (``reference_shift``) gets the same test on its label sequence in time order:
when the shared reference point moves for everyone, agreement stays high and no annotator is
flagged, but the pool's label distribution changes (a G-test over the categories).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..monitoring.agreement import cohen_kappa, fleiss_kappa, krippendorff_alpha
from .data import Annotations

MIN_COMMON = 5
BY = ("guideline", "annotator", "batch", "week")


@dataclass(frozen=True)
class DriftConfig:
    alpha: float = 0.01
    permutations: int = 499
    min_segment: int = 10
    min_agreement_change: float = 0.15
    min_shift: float = 0.5


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if len(values) and isinstance(values[0], str):
        cats, inv = np.unique(values.astype(str), return_inverse=True)
    else:
        cats, inv = np.unique(values.astype(np.float64), return_inverse=True)
    return inv.reshape(-1), cats


def figures(units: np.ndarray, raters: np.ndarray, values: np.ndarray, level: str) -> dict[str, Any]:
    """Agreement figures of one set of judgements (aligned arrays)."""
    out: dict[str, Any] = {"judgements": int(len(units)), "annotators": int(len(set(raters.tolist())))}
    if len(units) == 0:
        return {
            **out,
            "units": 0,
            "pairable_units": 0,
            "alpha": None,
            "fleiss_kappa": None,
            "fleiss_units": 0,
            "cohen_kappa_mean": None,
            "cohen_pairs": 0,
        }
    uc, _ = _codes(units.astype(str))
    rc, rcats = _codes(raters.astype(str))
    vc, vcats = _codes(values)
    nu, nr = int(uc.max()) + 1, len(rcats)
    mat = np.full((nr, nu), np.nan)
    mat[rc, uc] = vc
    dom = vcats.astype(np.float64) if level == "interval" else np.arange(len(vcats), dtype=np.float64)
    per_unit = (~np.isnan(mat)).sum(0)
    alpha = krippendorff_alpha(mat, level, values=dom if level == "interval" else list(range(len(vcats))))
    # Fleiss over the units with the most common number of ratings
    counts = np.zeros((nu, len(vcats)), dtype=np.int64)
    np.add.at(counts, (uc, vc), 1)
    ok = per_unit >= 2
    fleiss, fleiss_units, fleiss_raters = None, 0, 0
    if ok.any():
        size = int(np.bincount(per_unit[ok]).argmax())
        sel = counts[per_unit == size]
        fleiss_units, fleiss_raters = int(len(sel)), size
        f = fleiss_kappa(sel)
        fleiss = None if np.isnan(f) else float(f)
    kappas = []
    weights = "quadratic" if level != "nominal" else None
    present = ~np.isnan(mat)
    shared = present.astype(np.float64) @ present.T.astype(np.float64)  # units each pair of annotators shares
    every = np.arange(len(vcats))
    for i, j in zip(*np.nonzero(np.triu(shared >= MIN_COMMON, 1))):
        common = present[i] & present[j]
        k = cohen_kappa(mat[i, common].astype(np.int64), mat[j, common].astype(np.int64), weights=weights, labels=every)
        if not np.isnan(k):
            kappas.append(k)
    return {
        **out,
        "units": int(nu),
        "pairable_units": int(ok.sum()),
        "alpha": None if np.isnan(alpha) else float(alpha),
        "fleiss_kappa": fleiss,
        "fleiss_units": fleiss_units,
        "fleiss_raters": fleiss_raters,
        "cohen_kappa_mean": float(np.mean(kappas)) if kappas else None,
        "cohen_pairs": len(kappas),
    }


MAX_SPLITS = 256  # candidate change points per sequence: every split, or an even grid of this many


def _pool(
    units: np.ndarray, codes: np.ndarray, cats: np.ndarray, values: np.ndarray, numeric: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per judgement: the pool value (a code) of the other judgements of its unit (-1 when there
    are none), the others' mean value (numeric; nan otherwise) and how many others there are."""
    n = len(units)
    if n == 0:
        return np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64)
    uc = np.unique(units, return_inverse=True)[1].reshape(-1)
    nu, k = int(uc.max()) + 1, len(cats)
    size = np.bincount(uc, minlength=nu)
    others = size[uc] - 1
    if numeric:
        x = values.astype(np.float64)
        sums = np.bincount(uc, weights=x, minlength=nu)
        with np.errstate(invalid="ignore", divide="ignore"):
            others_mean = np.where(others > 0, (sums[uc] - x) / others, np.nan)
        # each unit's values in one padded row; a judgement's others are its unit's row without it
        order = np.argsort(uc, kind="stable")
        pos = np.arange(n) - np.searchsorted(uc[order], uc[order])
        slot = np.empty(n, dtype=np.int64)
        slot[order] = pos
        grid = np.full((nu, int(size.max())), np.nan)
        grid[uc, slot] = x
        rest = grid[uc]
        rest[np.arange(n), slot] = np.nan
        has = others > 0
        med = np.full(n, np.nan)
        med[has] = np.nanmedian(rest[has], axis=1)
        below = np.where(rest <= med[:, None], rest, -np.inf).max(1)  # the others' median, rounded down to a value they gave
        pool = np.where(has, np.searchsorted(cats.astype(np.float64), below), -1)
    else:
        others_mean = np.full(n, np.nan)
        counts = np.zeros((nu, k), dtype=np.int64)
        np.add.at(counts, (uc, codes), 1)
        mine = counts[uc]
        mine[np.arange(n), codes] -= 1
        pool = np.where(others > 0, np.argmax(mine, axis=1), -1)  # most frequent among the others; ties go to the smallest
    return pool.astype(np.int64), others_mean, others.astype(np.int64)


def _splits(n: int, m: int) -> np.ndarray:
    """Candidate split points s (the first s values before the change), m ≤ s ≤ n − m."""
    s = np.arange(m, n - m + 1)
    if len(s) > MAX_SPLITS:
        s = np.unique(np.linspace(m, n - m, MAX_SPLITS).round().astype(np.int64))
    return s


def _g_stat(x: np.ndarray, k: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """G statistic of homogeneity before/after each candidate split of category codes ``x``
    (rows of a 2-D array are independent sequences); returns (max G per row, its split)."""
    x = np.atleast_2d(x)
    n = x.shape[1]
    s = _splits(n, m)
    before = np.stack([np.cumsum(x == c, axis=1)[:, s - 1] for c in range(k)], axis=2).astype(np.float64)
    total = np.stack([(x == c).sum(1) for c in range(k)], axis=1)[:, None, :].astype(np.float64)
    after = total - before
    sf = s[None, :, None].astype(np.float64)
    p = total / n

    def term(obs: np.ndarray, size: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(obs > 0, obs * np.log(obs / (size * p)), 0.0)

    g = 2.0 * (term(before, sf) + term(after, n - sf)).sum(2)
    return g.max(1), s[g.argmax(1)]


def _t_stat(x: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Welch's |t| of the means before/after each candidate split; rows are sequences."""
    x = np.atleast_2d(x).astype(np.float64)
    n = x.shape[1]
    c1, c2 = np.cumsum(x, 1), np.cumsum(x * x, 1)
    s = _splits(n, m)
    s1, q1 = c1[:, s - 1], c2[:, s - 1]
    s2, q2 = c1[:, -1:] - s1, c2[:, -1:] - q1
    n1, n2 = s.astype(np.float64), (n - s).astype(np.float64)
    mu1, mu2 = s1 / n1, s2 / n2
    v1 = np.maximum(q1 / n1 - mu1**2, 0) * n1 / np.maximum(n1 - 1, 1)
    v2 = np.maximum(q2 / n2 - mu2**2, 0) * n2 / np.maximum(n2 - 1, 1)
    se = np.sqrt(v1 / n1 + v2 / n2)
    t = np.abs(mu1 - mu2) / np.where(se > 0, se, np.inf)
    return t.max(1), s[t.argmax(1)]


def change_point(seq: np.ndarray, kind: str, cfg: DriftConfig, seed_text: str) -> dict[str, Any] | None:
    """The most likely single change point of a sequence and its permutation p-value, or None when
    the sequence is too short (fewer than 2 × min_segment values)."""
    n = len(seq)
    m = max(cfg.min_segment, 1)
    if n < 2 * m:
        return None
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:8], "big"))
    perms = np.array([rng.permutation(n) for _ in range(cfg.permutations)]) if cfg.permutations else np.empty((0, n), dtype=np.int64)
    chunk = max(1, 4_000_000 // (min(n, MAX_SPLITS) * 8 + n))
    if kind == "categorical":
        codes = np.unique(seq, return_inverse=True)[1].reshape(-1)
        k = int(codes.max()) + 1
        stat, split = _g_stat(codes[None, :], k, m)
        null = (
            np.concatenate([_g_stat(codes[perms[i : i + chunk]], k, m)[0] for i in range(0, len(perms), chunk)])
            if len(perms)
            else np.empty(0)
        )
        change: dict[str, Any] = {"before": None, "after": None}
    else:
        x = seq.astype(np.float64)
        stat, split = _t_stat(x[None, :], m)
        null = np.concatenate([_t_stat(x[perms[i : i + chunk]], m)[0] for i in range(0, len(perms), chunk)]) if len(perms) else np.empty(0)
        change = {"before": float(x[: split[0]].mean()), "after": float(x[split[0] :].mean())}
    p = (1.0 + float((null >= stat[0] - 1e-12).sum())) / (1.0 + len(null))
    return {"statistic": float(stat[0]), "split": int(split[0]), "n": int(n), "p": p, **change}


def drift(ann: Annotations, numeric: bool, cfg: DriftConfig = DriftConfig()) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """Per annotator calibration drift, and the pool's reference shift (see the module docstring)."""
    units = ann.unit().astype(str)
    values = ann.value()
    codes, cats = _codes(values)
    pool, others_mean, others = _pool(units, codes, cats, values, numeric)
    out: dict[str, dict[str, Any]] = {}
    order_all = np.argsort(ann.collected_at, kind="stable")
    for who in sorted(set(ann.annotator.astype(str).tolist())):
        mine = np.flatnonzero((ann.annotator.astype(str) == who) & (others > 0))
        mine = mine[np.argsort(ann.collected_at[mine], kind="stable")]
        agree = (codes[mine] == pool[mine]).astype(np.int64)
        tests: dict[str, Any] = {}
        cp = change_point(agree, "categorical", cfg, f"agreement:{who}")
        if cp is not None:
            cp["before"], cp["after"] = float(agree[: cp["split"]].mean()), float(agree[cp["split"] :].mean())
            cp["change"] = cp["after"] - cp["before"]
            tests["agreement"] = cp
        if numeric:
            resid = values[mine].astype(np.float64) - others_mean[mine]
            cp = change_point(resid, "numeric", cfg, f"residual:{who}")
            if cp is not None:
                cp["change"] = cp["after"] - cp["before"]
                tests["residual"] = cp
        limit = cfg.alpha / max(len(tests), 1)
        flags = []
        if "agreement" in tests and tests["agreement"]["p"] <= limit and abs(tests["agreement"]["change"]) >= cfg.min_agreement_change:
            flags.append("agreement")
        if "residual" in tests and tests["residual"]["p"] <= limit and abs(tests["residual"]["change"]) >= cfg.min_shift:
            flags.append("residual")
        best = min(tests.values(), key=lambda t: t["p"]) if tests else None
        info: dict[str, Any] = {
            "drift": bool(flags),
            "flagged_by": flags,
            "tests": tests,
            "threshold_p": limit,
            "judgements_with_pool": int(len(mine)),
        }
        if best is not None:
            at = mine[best["split"]]
            info["change_at"] = str(ann.collected_at[at].astype("datetime64[s]")) + "Z"
            before, after = codes[mine[: best["split"]]], codes[mine[best["split"] :]]
            info["labels_before"] = _shares(before, cats)
            info["labels_after"] = _shares(after, cats)
        out[who] = info
    seq = codes[order_all]
    ref = change_point(seq, "categorical", cfg, "reference") if len(seq) else None
    if ref is not None:
        split = ref["split"]
        ref["labels_before"] = _shares(seq[:split], cats)
        ref["labels_after"] = _shares(seq[split:], cats)
        ref["change_at"] = str(ann.collected_at[order_all[split]].astype("datetime64[s]")) + "Z"
        tv = 0.5 * sum(
            abs(ref["labels_after"].get(c, 0.0) - ref["labels_before"].get(c, 0.0))
            for c in set(ref["labels_before"]) | set(ref["labels_after"])
        )
        ref["total_variation"] = tv
        ref["shift"] = bool(ref["p"] <= cfg.alpha and tv >= cfg.min_agreement_change)
        del ref["before"], ref["after"]
    return out, ref


def _shares(codes: np.ndarray, cats: np.ndarray) -> dict[str, float]:
    if len(codes) == 0:
        return {}
    counts = np.bincount(codes, minlength=len(cats))
    return {_label(c): float(n / len(codes)) for c, n in zip(cats.tolist(), counts) if n}


def _label(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def annotator_vs_pool(ann: Annotations, numeric: bool) -> dict[str, dict[str, Any]]:
    units = ann.unit().astype(str)
    values = ann.value()
    codes, cats = _codes(values)
    pool, others_mean, others = _pool(units, codes, cats, values, numeric)
    weeks = ann.week().astype(str)
    out = {}
    for who in sorted(set(ann.annotator.astype(str).tolist())):
        mine = np.flatnonzero((ann.annotator.astype(str) == who) & (others > 0))
        k = (
            cohen_kappa(codes[mine], pool[mine], weights="quadratic" if numeric else None, labels=np.arange(len(cats)))
            if len(mine)
            else float("nan")
        )
        row: dict[str, Any] = {
            "judgements": int((ann.annotator.astype(str) == who).sum()),
            "with_pool": int(len(mine)),
            "kappa_vs_pool": None if np.isnan(k) else float(k),
            "agreement": float((codes[mine] == pool[mine]).mean()) if len(mine) else None,
        }
        if numeric:
            row["bias"] = float(np.mean(values[mine].astype(np.float64) - others_mean[mine])) if len(mine) else None
        # the annotator over time: per ISO week, their label shares, agreement with the pool and bias
        timeline = []
        for w in sorted(set(weeks[ann.annotator.astype(str) == who].tolist())):
            sel = np.flatnonzero((ann.annotator.astype(str) == who) & (weeks == w))
            pooled = sel[others[sel] > 0]
            point: dict[str, Any] = {
                "week": w,
                "judgements": int(len(sel)),
                "labels": _shares(codes[sel], cats),
                "agreement": float((codes[pooled] == pool[pooled]).mean()) if len(pooled) else None,
            }
            if numeric:
                point["mean"] = float(values[sel].astype(np.float64).mean())
                point["bias"] = float(np.mean(values[pooled].astype(np.float64) - others_mean[pooled])) if len(pooled) else None
            timeline.append(point)
        row["timeline"] = timeline
        out[who] = row
    return out


def agreement(ann: Annotations, by: str = "guideline", level: str | None = None, cfg: DriftConfig = DriftConfig()) -> dict[str, Any]:
    """Agreement of a version's annotations, per task: overall, per group ``by``, per annotator
    (against the pool, with the drift flag) and the pool's reference shift."""
    if by not in BY:
        raise ValueError(f"--by must be one of {', '.join(BY)}, not {by!r}")
    tasks = []
    for task in sorted(set(ann.task.astype(str).tolist())):
        t = ann.take(ann.task.astype(str) == task)
        kinds = sorted(set(t.kind.astype(str).tolist()))
        kind = kinds[0] if len(kinds) == 1 else "mixed"
        lvl = level or ("ordinal" if kind == "rating" else "nominal")
        numeric = kind == "rating"
        units, raters, values = t.unit(), t.annotator.astype(str), t.value()
        key = {"guideline": t.guideline, "annotator": t.annotator, "batch": t.batch, "week": None}[by]
        key = t.week() if key is None else key.astype(str)
        groups = []
        for g in sorted(set(key.tolist())):
            sel = key == g
            if by == "annotator":
                # the annotator's items with every judgement on them; and the same without theirs
                sel = np.isin(units, units[key == g])
                row = {"group": g, **figures(units[sel], raters[sel], values[sel], lvl)}
                row["judgements"] = int((key == g).sum())
                row["alpha_without"] = figures(units[sel & (key != g)], raters[sel & (key != g)], values[sel & (key != g)], lvl)["alpha"]
            else:
                row = {"group": g, **figures(units[sel], raters[sel], values[sel], lvl)}
            groups.append(row)
        per_annotator = annotator_vs_pool(t, numeric)
        drifts, ref = drift(t, numeric, cfg)
        for who, d in drifts.items():
            per_annotator[who].update(d)
        if by == "annotator":
            for row in groups:
                row.update({k: per_annotator[row["group"]][k] for k in ("kappa_vs_pool", "agreement", "drift")})
        tasks.append(
            {
                "task": task,
                "kind": kind,
                "level": lvl,
                "overall": figures(units, raters, values, lvl),
                "by": by,
                "groups": groups,
                "annotators": [{"annotator": who, **row} for who, row in per_annotator.items()],
                "reference_shift": ref,
            }
        )
    return {
        "version_id": ann.version_id,
        "tag": ann.tag,
        "judgements": int(len(ann)),
        "drift_method": {
            "test": "single change point, permutation p-value (G-test on agreement-with-pool, Welch t on rating residuals)",
            "alpha": cfg.alpha,
            "permutations": cfg.permutations,
            "min_segment": cfg.min_segment,
            "min_agreement_change": cfg.min_agreement_change,
            "min_shift": cfg.min_shift,
        },
        "tasks": tasks,
    }


def flagged(report: dict[str, Any]) -> list[str]:
    """Annotators flagged for drift in an agreement report, over all tasks."""
    return sorted({a["annotator"] for t in report["tasks"] for a in t["annotators"] if a.get("drift")})


def weighted_shares(values: Sequence[Any], weights: np.ndarray) -> dict[str, float]:
    total = float(np.sum(weights))
    out: dict[str, float] = {}
    for v, w in zip(values, weights):
        k = _label(v)
        out[k] = out.get(k, 0.0) + float(w)
    return {k: v / total for k, v in sorted(out.items())} if total > 0 else {}
