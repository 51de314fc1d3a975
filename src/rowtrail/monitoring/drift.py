"""Distribution drift between the rows before and after one transformation step.

A step may drop, change or reweight rows, so every figure here is weighted: each row carries a
non-negative weight (1.0 when none is given), and shares, means, histograms and empirical CDFs are
all taken over weight, not over row counts.

Figures
    ``psi``         population stability index, ``Σ (a − e)·ln(a / e)`` over bin (or category) shares,
                    ``e`` before the step and ``a`` after it. Always ≥ 0; 0 means the same shares.
    ``kl``          Kullback–Leibler divergence ``KL(after ‖ before) = Σ a·ln(a / e)``, natural log.
    ``ks``          two-sample Kolmogorov–Smirnov statistic (numeric columns), in [0, 1].
    ``max_change``  largest absolute change of a category's share (categorical columns), in [0, 1].

Smoothing: before ``psi`` and ``kl`` are taken, each share vector has every share below ``eps``
(default ``EPSILON`` = 1e-4) raised to ``eps`` and is then renormalised to sum to 1. An empty bin thus
costs a large but finite amount instead of ``inf``; shares that are all ≥ ``eps`` are left unchanged.

Numeric bins are the ``bins`` quantiles of the *before* distribution (weighted, inverted-CDF, so a cut
point is always an observed value); the outer bins are open, so values after the step that fall
outside the old range land in the first or last bin. Tied cut points merge, so a column with few
distinct values gets fewer bins; the figure dict says how many were used.

``check`` compares a figure dict with warn/fail thresholds; ``plot`` draws a PNG of a pipeline's
per-step monitoring reports (needs the ``plot`` extra).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

EPSILON = 1e-4
"""Floor for a bin or category share before ``psi`` and ``kl`` (see the module docstring)."""

DEFAULT_BINS = 10
NULL_LABEL = "(null)"
"""Label under which ``categorical_drift`` counts None and NaN values."""

FIGURES = ("psi", "kl", "ks", "max_change")
"""Figure names ``check`` accepts thresholds for."""

LEVELS: tuple[Literal["warn"], Literal["fail"]] = ("warn", "fail")
TOP_SOURCES = 10
TOP_COLUMNS = 10

Floats = NDArray[np.float64]


class NumericDrift(TypedDict):
    """What ``numeric_drift`` returns. Figures are None when either side has no rows (or no weight)."""

    kind: Literal["numeric"]
    n_before: int  # rows the figures are computed over (missing values excluded)
    n_after: int
    missing_before: int  # rows whose value was None or NaN
    missing_after: int
    weight_before: float
    weight_after: float
    mean_before: float | None
    mean_after: float | None
    bins: int | None  # bins actually used (tied quantiles merge)
    edges: list[float]  # interior cut points; bin i holds values in (edges[i-1], edges[i]]
    hist_before: list[float]  # weight per bin
    hist_after: list[float]
    psi: float | None
    kl: float | None
    ks: float | None
    ks_pvalue: float | None


class CategoricalDrift(TypedDict):
    """What ``categorical_drift`` returns. Share dicts are keyed by ``str(value)``, sorted by key."""

    kind: Literal["categorical"]
    n_before: int  # rows, null values included (they are a category)
    n_after: int
    missing_before: int  # rows whose value was None or NaN, counted under NULL_LABEL
    missing_after: int
    weight_before: float
    weight_after: float
    proportions_before: dict[str, float]
    proportions_after: dict[str, float]
    change: dict[str, float]  # after − before share
    max_change: float | None  # largest absolute change
    max_change_value: str | None  # the category it belongs to
    psi: float | None
    kl: float | None


class Finding(TypedDict):
    """One exceeded threshold, as ``check`` reports it."""

    level: Literal["warn", "fail"]
    figure: str
    value: float
    threshold: float


# --- share vectors -------------------------------------------------------------------------------


def _shares(counts: ArrayLike, eps: float, name: str) -> Floats:
    c = np.asarray(counts, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D vector of counts or weights")
    if not np.all(np.isfinite(c)) or np.any(c < 0):
        raise ValueError(f"{name} must hold finite, non-negative counts or weights")
    total = c.sum()
    if total <= 0:
        raise ValueError(f"{name} sums to 0: there is no distribution to compare")
    p = np.maximum(c / total, eps)
    return p / p.sum()


def _pair(p: ArrayLike, q: ArrayLike, eps: float, names: tuple[str, str]) -> tuple[Floats, Floats]:
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    a, b = _shares(p, eps, names[0]), _shares(q, eps, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same length, got {a.size} and {b.size}")
    return a, b


def psi(expected: ArrayLike, actual: ArrayLike, eps: float = EPSILON) -> float:
    """Population stability index of ``actual`` against ``expected``, two aligned vectors of counts or weights.

    Both are turned into smoothed shares (see the module docstring), then ``Σ (a − e)·ln(a / e)``.
    """
    e, a = _pair(expected, actual, eps, ("expected", "actual"))
    return float(np.sum((a - e) * np.log(a / e)))


def kl_divergence(p: ArrayLike, q: ArrayLike, eps: float = EPSILON) -> float:
    """``KL(p ‖ q)`` in nats, ``p`` and ``q`` aligned vectors of counts or weights, smoothed as ``psi`` does."""
    a, b = _pair(p, q, eps, ("p", "q"))
    return float(np.sum(a * np.log(a / b)))


# --- inputs --------------------------------------------------------------------------------------


def _weights(n: int, weights: ArrayLike | None, side: str) -> Floats:
    if weights is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"{side}_weights has shape {w.shape}, but there are {n} {side} values")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{side}_weights must be finite and non-negative")
    return w


def _numeric(values: ArrayLike, weights: ArrayLike | None, side: str) -> tuple[Floats, Floats, int]:
    """Values and weights with missing rows removed, and how many were missing."""
    raw = np.asarray(values)
    if raw.ndim != 1:
        raise ValueError(f"{side} must be 1-D, got shape {raw.shape}")
    hint = f"numeric_drift needs numbers, but {side} holds {raw.dtype} values; use categorical_drift for them"
    if raw.dtype.kind in "USVMm":
        raise TypeError(hint)
    try:
        x = raw.astype(np.float64)  # None → NaN
    except (TypeError, ValueError) as e:
        raise TypeError(hint) from e
    w = _weights(x.size, weights, side)
    present = ~np.isnan(x)
    return x[present], w[present], int(x.size - np.count_nonzero(present))


def _labels(values: ArrayLike, side: str) -> tuple[NDArray[np.str_], int]:
    """``str(value)`` per row, None and NaN as NULL_LABEL, and how many were null."""
    # A list mixing strings and NaN would become a string array holding "nan"; keep the objects.
    raw = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if raw.ndim != 1:
        raise ValueError(f"{side} must be 1-D, got shape {raw.shape}")
    if raw.dtype.kind in "US":
        return raw.astype(str), 0
    obj = raw.astype(object)
    # Both comparisons are elementwise on an object array: None by equality (not an identity test
    # here), NaN as the one value unequal to itself.
    null = (obj == None).astype(bool) | (obj != obj).astype(bool)  # noqa: E711
    # np.where widens the string dtype to fit NULL_LABEL; assigning into astype(str) would truncate it.
    return np.where(null, NULL_LABEL, obj.astype(str)), int(np.count_nonzero(null))


# --- numeric -------------------------------------------------------------------------------------


def _cut_points(x: Floats, w: Floats, bins: int) -> Floats:
    """Distinct interior weighted quantiles of ``x`` (inverted CDF: each one an observed value)."""
    order = np.argsort(x, kind="stable")
    xs, cw = x[order], np.cumsum(w[order])
    # i·total/bins rather than (i/bins)·total: exact for integer totals, so ranks land where expected.
    targets = np.arange(1, bins) * cw[-1] / bins
    idx = np.minimum(np.searchsorted(cw, targets, side="left"), xs.size - 1)
    return np.unique(xs[idx])


def _histogram(x: Floats, w: Floats, edges: Floats) -> Floats:
    # side="left": a value equal to a cut point belongs to the bin below it, as the quantile put it there.
    return np.bincount(np.searchsorted(edges, x, side="left"), weights=w, minlength=edges.size + 1).astype(np.float64)


def _weighted_ecdf_distance(x1: Floats, w1: Floats, x2: Floats, w2: Floats) -> float:
    o1, o2 = np.argsort(x1, kind="stable"), np.argsort(x2, kind="stable")
    s1, s2 = x1[o1], x2[o2]
    c1, c2 = np.cumsum(w1[o1]), np.cumsum(w2[o2])
    # Divide by the last partial sum, not w.sum(): the CDF then ends at exactly 1 and never passes it.
    f1 = np.concatenate(([0.0], c1 / c1[-1]))
    f2 = np.concatenate(([0.0], c2 / c2[-1]))
    at = np.concatenate((s1, s2))
    d = np.abs(f1[np.searchsorted(s1, at, side="right")] - f2[np.searchsorted(s2, at, side="right")])
    return float(np.clip(d.max(), 0.0, 1.0))


def _kish(w: Floats) -> float:
    return float(w.sum() ** 2 / np.sum(w * w))


def _ks(x1: Floats, w1: Floats, x2: Floats, w2: Floats) -> tuple[float, float]:
    """Two-sided two-sample KS statistic and p-value over rows with positive weight.

    Equal weights within each side make a plain sample, and scipy's ``ks_2samp`` is used as is.
    Otherwise the statistic is the largest gap between the weighted empirical CDFs, and the p-value is
    ``ks_2samp``'s asymptotic one (``method='asymp'``, two-sided) with Kish effective sample sizes
    ``n_eff = (Σw)² / Σw²`` in place of the row counts.
    """
    from scipy import stats  # lazily: importing rowtrail.monitoring stays cheap

    k1, k2 = w1 > 0, w2 > 0
    x1, w1, x2, w2 = x1[k1], w1[k1], x2[k2], w2[k2]
    if np.all(w1 == w1[0]) and np.all(w2 == w2[0]):
        with warnings.catch_warnings():
            # scipy warns when its exact method gives way to the asymptotic one; the result is its
            # documented answer either way, and the warning would repeat for every column of every step.
            warnings.filterwarnings("ignore", "ks_2samp: Exact calculation unsuccessful", RuntimeWarning)
            res = stats.ks_2samp(x1, x2)
        return float(res.statistic), float(res.pvalue)
    d = _weighted_ecdf_distance(x1, w1, x2, w2)
    m, n = _kish(w1), _kish(w2)
    # As ks_2samp does for method='asymp'; at least 1, since kstwo is undefined for n = 0.
    en = max(1.0, float(np.round(m * n / (m + n))))
    p = float(np.clip(stats.kstwo.sf(d, en), 0.0, 1.0))
    return d, p


def numeric_drift(
    before: ArrayLike,
    after: ArrayLike,
    *,
    before_weights: ArrayLike | None = None,
    after_weights: ArrayLike | None = None,
    bins: int = DEFAULT_BINS,
) -> NumericDrift:
    """Drift figures for a numeric column: weighted means, ``psi`` and ``kl`` over ``bins`` quantile bins
    of ``before``, and the two-sample KS statistic with its p-value.

    None and NaN values are left out (with their weights) and counted in ``missing_before`` /
    ``missing_after``; ±inf are kept as values (they fall in the outer bins). When a side has no rows left, or only rows of weight 0, its mean and every
    comparative figure are None. Raises TypeError for non-numeric values, ValueError for bad weights.
    """
    if not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    x1, w1, miss1 = _numeric(before, before_weights, "before")
    x2, w2, miss2 = _numeric(after, after_weights, "after")
    t1, t2 = float(w1.sum()), float(w2.sum())
    compared = t1 > 0 and t2 > 0
    edges = _cut_points(x1, w1, int(bins)) if compared else np.empty(0)
    h1, h2 = (_histogram(x1, w1, edges), _histogram(x2, w2, edges)) if compared else (np.empty(0), np.empty(0))
    d, p = _ks(x1, w1, x2, w2) if compared else (None, None)
    return {
        "kind": "numeric",
        "n_before": int(x1.size),
        "n_after": int(x2.size),
        "missing_before": miss1,
        "missing_after": miss2,
        "weight_before": t1,
        "weight_after": t2,
        "mean_before": float(np.average(x1, weights=w1)) if t1 > 0 else None,
        "mean_after": float(np.average(x2, weights=w2)) if t2 > 0 else None,
        "bins": int(edges.size + 1) if compared else None,
        "edges": edges.tolist(),
        "hist_before": h1.tolist(),
        "hist_after": h2.tolist(),
        "psi": psi(h1, h2) if compared else None,
        "kl": kl_divergence(h2, h1) if compared else None,
        "ks": d,
        "ks_pvalue": p,
    }


# --- categorical ---------------------------------------------------------------------------------


def categorical_drift(
    before: ArrayLike,
    after: ArrayLike,
    *,
    before_weights: ArrayLike | None = None,
    after_weights: ArrayLike | None = None,
) -> CategoricalDrift:
    """Drift figures for a categorical column: weighted shares per value on each side, their change,
    the largest absolute change, ``psi`` and ``kl``.

    Values are compared by ``str(value)`` (so ``1`` and ``"1"`` are one category); None and NaN are
    one category, ``NULL_LABEL``. The share dicts are keyed by every value seen on either side, sorted.
    A side with no rows (or only rows of weight 0) has empty share dicts, and ``change``, ``max_change``,
    ``psi`` and ``kl`` are then empty or None.
    """
    l1, null1 = _labels(before, "before")
    l2, null2 = _labels(after, "after")
    w1 = _weights(l1.size, before_weights, "before")
    w2 = _weights(l2.size, after_weights, "after")
    t1, t2 = float(w1.sum()), float(w2.sum())
    cats, inverse = np.unique(np.concatenate((l1, l2)), return_inverse=True)
    inverse = inverse.reshape(-1)
    h1 = np.bincount(inverse[: l1.size], weights=w1, minlength=cats.size)
    h2 = np.bincount(inverse[l1.size :], weights=w2, minlength=cats.size)
    keys = cats.tolist()
    compared = t1 > 0 and t2 > 0
    delta = h2 / t2 - h1 / t1 if compared else np.empty(0)
    top = int(np.argmax(np.abs(delta))) if compared else 0
    return {
        "kind": "categorical",
        "n_before": int(l1.size),
        "n_after": int(l2.size),
        "missing_before": null1,
        "missing_after": null2,
        "weight_before": t1,
        "weight_after": t2,
        "proportions_before": dict(zip(keys, (h1 / t1).tolist())) if t1 > 0 else {},
        "proportions_after": dict(zip(keys, (h2 / t2).tolist())) if t2 > 0 else {},
        "change": dict(zip(keys, delta.tolist())),
        "max_change": float(abs(delta[top])) if compared else None,
        "max_change_value": keys[top] if compared else None,
        "psi": psi(h1, h2) if compared else None,
        "kl": kl_divergence(h2, h1) if compared else None,
    }


# --- thresholds ----------------------------------------------------------------------------------


def check(figures: Mapping[str, Any], thresholds: Mapping[str, Mapping[str, float]]) -> list[Finding]:
    """Every threshold that ``figures`` (a ``numeric_drift`` or ``categorical_drift`` dict) reaches.

    ``thresholds`` maps a figure name (one of ``FIGURES``) to ``{"warn": t, "fail": t}`` (either may be
    left out); a value ≥ ``t`` is reported. A figure the dict lacks or holds as None (another column
    kind, an empty side) is skipped, so one threshold set serves both kinds. Findings come in the order
    of ``thresholds``, warn before fail; a value past both gives both.
    """
    found: list[Finding] = []
    for name, levels in thresholds.items():
        if name not in FIGURES:
            raise ValueError(f"unknown figure {name!r} in thresholds; allowed: {', '.join(FIGURES)}")
        unknown = set(levels) - set(LEVELS)
        if unknown:
            raise ValueError(f"unknown level(s) {sorted(unknown)} for {name!r}; allowed: {', '.join(LEVELS)}")
        value = figures.get(name)
        if value is None or math.isnan(value):
            continue
        for level in LEVELS:
            if level in levels and value >= levels[level]:
                found.append({"level": level, "figure": name, "value": float(value), "threshold": float(levels[level])})
    return found


# --- plot ----------------------------------------------------------------------------------------


def _top_and_other(names: list[str], matrix: Floats, top: int) -> tuple[list[str], Floats]:
    """Keep the ``top`` rows of ``matrix`` with the largest totals, summing the rest into "other"."""
    if len(names) <= top:
        return names, matrix
    order = np.argsort(-matrix.sum(axis=1), kind="stable")
    keep, rest = order[:top], order[top:]
    return [names[i] for i in keep] + ["other"], np.vstack((matrix[keep], matrix[rest].sum(axis=0)))


def _stacked(ax: Any, x: Floats, names: list[str], matrix: Floats, colours: Any) -> None:
    bottom = np.zeros(matrix.shape[1])
    for i, (name, row) in enumerate(zip(names, matrix)):
        colour = "lightgrey" if name == "other" else colours(i % 20)
        ax.bar(x, row, bottom=bottom, label=name, color=colour, width=0.7)
        bottom += row


def plot(
    reports: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """Write a PNG summarising a pipeline's per-step monitoring reports to ``path``; returns the path.

    Each report is a mapping with ``step_id``, ``name``, ``rows_in``, ``rows_out``, ``weight_in``,
    ``weight_out`` and, optionally, ``dropped`` (reason → rows), ``per_source`` (source id → its
    ``rows_in``/``rows_out``/``weight_in``/``weight_out``) and ``drift`` (column → a ``numeric_drift`` or
    ``categorical_drift`` dict). Panels: rows in/out, weight in/out, each source's share of the weight
    after every step (top 10, the rest as "other"), drops by reason, and PSI and KS per column (top 10
    columns by PSI). ``thresholds`` (as for ``check``) draws the psi and ks levels as dashed lines.

    Needs matplotlib (the ``plot`` extra); draws on an Agg canvas without touching pyplot's state.
    """
    try:
        from matplotlib import colormaps
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError("rowtrail.monitoring.plot needs matplotlib: pip install 'rowtrail[plot]'") from e
    if not reports:
        raise ValueError("no reports to plot")

    steps = len(reports)
    x = np.arange(steps, dtype=np.float64)
    labels = [str(r.get("name") or r.get("step_id") or i) for i, r in enumerate(reports)]
    colours = colormaps["tab20"]

    fig = Figure(figsize=(15, 13), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 2, sharex=True)
    fig.suptitle(f"rowtrail monitoring: {steps} step{'s' if steps != 1 else ''}")

    def in_out(ax: Any, key: str, title: str) -> None:
        vin = np.array([float(r.get(f"{key}_in", 0)) for r in reports])
        vout = np.array([float(r.get(f"{key}_out", 0)) for r in reports])
        ax.bar(x - 0.2, vin, width=0.4, label="in", color=colours(1))
        ax.bar(x + 0.2, vout, width=0.4, label="out", color=colours(0))
        ax.set_title(title)
        ax.legend(fontsize="small")

    in_out(axes[0, 0], "rows", "rows in / out")
    in_out(axes[0, 1], "weight", "weight in / out")

    # Per-source share of the weight after each step.
    ax = axes[1, 0]
    sources = sorted({str(s) for r in reports for s in (r.get("per_source") or {})})
    if sources:
        index = {s: i for i, s in enumerate(sources)}
        weight = np.zeros((len(sources), steps))
        for j, r in enumerate(reports):
            for s, v in (r.get("per_source") or {}).items():
                weight[index[str(s)], j] = float(v.get("weight_out", 0.0))
        totals = weight.sum(axis=0)
        share = np.divide(weight, totals, out=np.zeros_like(weight), where=totals > 0)
        names, share = _top_and_other(sources, share, TOP_SOURCES)
        _stacked(ax, x, names, share, colours)
        ax.set_ylim(0, 1)
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        ax.text(0.5, 0.5, "no per-source figures", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("share of weight per source, after the step")

    # Drops by reason.
    ax = axes[1, 1]
    reasons = sorted({str(k) for r in reports for k in (r.get("dropped") or {})})
    if reasons:
        index = {k: i for i, k in enumerate(reasons)}
        dropped = np.zeros((len(reasons), steps))
        for j, r in enumerate(reports):
            for k, v in (r.get("dropped") or {}).items():
                dropped[index[str(k)], j] = float(v)
        names, dropped = _top_and_other(reasons, dropped, TOP_SOURCES)
        _stacked(ax, x, names, dropped, colours)
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        ax.text(0.5, 0.5, "no drops", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("rows dropped, by reason")

    # PSI and KS per column: NaN where a step has no figure for the column, so its line breaks there.
    columns = sorted({str(c) for r in reports for c in (r.get("drift") or {})})
    figs = {name: np.full((len(columns), steps), np.nan) for name in ("psi", "ks")}
    index = {c: i for i, c in enumerate(columns)}
    for j, r in enumerate(reports):
        for c, d in (r.get("drift") or {}).items():
            for name, m in figs.items():
                v = d.get(name)
                if v is not None:
                    m[index[str(c)], j] = float(v)
    if columns:
        # Rank columns by worst PSI; a column never given a PSI ranks last.
        worst = np.where(np.isnan(figs["psi"]), -np.inf, figs["psi"]).max(axis=1)
        keep = np.argsort(-worst, kind="stable")[:TOP_COLUMNS]
    for ax, name in ((axes[2, 0], "psi"), (axes[2, 1], "ks")):
        title = name.upper() + (" (numeric columns)" if name == "ks" else "")
        if len(columns) > TOP_COLUMNS:
            title += f", top {TOP_COLUMNS} of {len(columns)} columns by PSI"
        ax.set_title(title)
        m = figs[name]
        if not columns or np.all(np.isnan(m)):
            ax.text(0.5, 0.5, f"no {name.upper()} figures", ha="center", va="center", transform=ax.transAxes)
            continue
        for k, i in enumerate(keep):
            if not np.all(np.isnan(m[i])):
                ax.plot(x, m[i], marker="o", label=columns[i], color=colours(k % 20))
        for level, style in (("warn", "orange"), ("fail", "red")):
            t = (thresholds or {}).get(name, {}).get(level)
            if t is not None:
                ax.axhline(t, linestyle="--", color=style, linewidth=1, label=f"{level} {t:g}")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))

    for ax in axes[2]:
        ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_xlim(-0.6, steps - 0.4)

    out = Path(path)
    fig.savefig(out, format="png", dpi=100)
    return out
