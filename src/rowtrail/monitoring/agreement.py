"""Inter-annotator agreement: Cohen's kappa, Fleiss' kappa and Krippendorff's alpha, in numpy.

Every function takes plain arrays and returns a float (``nan`` when the figure is undefined: fewer
than two pairable values, or no variation to correct for chance). They match the reference
implementations (scikit-learn's ``cohen_kappa_score`` and the ``krippendorff`` package) to floating
point; ``tests/unit/test_agreement.py`` checks that on random data.

Formulas
    Cohen's kappa of two raters over the same items: ``κ = (p_o − p_e) / (1 − p_e)`` with ``p_o`` the
    share of items on which they agree and ``p_e = Σ_c p1(c)·p2(c)`` the agreement expected from
    their own label shares; with ``weights="linear"|"quadratic"`` the disagreement of labels ``i < j``
    (in sorted label order) costs ``|i − j|`` or ``(i − j)²`` instead of 1.

    Fleiss' kappa of ``n`` raters per item over ``N`` items (a ``N × C`` count matrix whose rows sum
    to ``n``): ``P_i = (Σ_c n_ic² − n) / (n (n − 1))``, ``P̄`` their mean, ``p_c = Σ_i n_ic / (N n)``,
    ``P_e = Σ_c p_c²``, ``κ = (P̄ − P_e) / (1 − P_e)``.

    Krippendorff's alpha over a raters × units matrix with missing values (``nan``): units with fewer
    than two values are not pairable and left out; the coincidence matrix is
    ``o_ck = Σ_u n_uc (n_uk − [c = k]) / (m_u − 1)`` (``m_u`` values in unit ``u``), ``n_c = Σ_k o_ck``,
    ``n = Σ_c n_c``, and ``α = 1 − (n − 1) Σ o_ck δ²_ck / Σ n_c n_k δ²_ck``, with the distance
    ``δ²`` nominal (``[c ≠ k]``), ordinal (``(Σ_{g=c..k} n_g − (n_c + n_k)/2)²`` over the sorted
    values) or interval (``(v_c − v_k)²``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

LEVELS = ("nominal", "ordinal", "interval")


def _codes(*columns: Any) -> tuple[list[np.ndarray], np.ndarray]:
    """Integer codes of the values of several equally typed columns over their sorted union
    (numbers compare as numbers; anything with a string in it compares as text)."""
    arrays = [np.asarray(c) for c in columns]
    if all(a.dtype.kind in "iufb" for a in arrays):
        values = np.concatenate([a.astype(np.float64) for a in arrays]) if arrays else np.empty(0)
    elif all(a.dtype.kind in "US" for a in arrays):
        values = np.concatenate(arrays)
    else:
        obj = [a.astype(object) for a in arrays]
        text = any(isinstance(v, str) for a in obj for v in a)
        values = np.concatenate([a.astype(str) if text else a.astype(np.float64) for a in obj]) if obj else np.empty(0)
    cats, inverse = np.unique(values, return_inverse=True)
    out, at = [], 0
    for a in arrays:
        out.append(inverse.reshape(-1)[at : at + len(a)])
        at += len(a)
    return out, cats


def cohen_kappa(a: Any, b: Any, *, weights: str | None = None, labels: Any = None) -> float:
    """Cohen's kappa of two raters' labels for the same items (aligned sequences). ``labels`` fixes
    the ordered label set (as scikit-learn's ``labels``), so that weighted distances count labels
    neither rater used; by default it is the labels they used, sorted."""
    if len(a) != len(b):
        raise ValueError(f"the two raters label {len(a)} and {len(b)} items; align them on common items first")
    if len(a) == 0:
        return float("nan")
    if labels is not None:
        cats = np.asarray(labels)
        order = np.argsort(cats, kind="stable")
        ca, cb = (order[np.minimum(np.searchsorted(cats[order], np.asarray(x)), len(cats) - 1)] for x in (a, b))
        if not (np.array_equal(cats[ca], np.asarray(a)) and np.array_equal(cats[cb], np.asarray(b))):
            raise ValueError("a label is not in labels")
    else:
        (ca, cb), cats = _codes(a, b)
    k = len(cats)
    conf = np.bincount(ca * k + cb, minlength=k * k).reshape(k, k).astype(np.float64)
    expected = np.outer(conf.sum(1), conf.sum(0)) / conf.sum()
    idx = np.arange(k)
    if weights is None:
        w = (idx[:, None] != idx[None, :]).astype(np.float64)
    elif weights == "linear":
        w = np.abs(idx[:, None] - idx[None, :]).astype(np.float64)
    elif weights == "quadratic":
        w = ((idx[:, None] - idx[None, :]) ** 2).astype(np.float64)
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic', not {weights!r}")
    denom = float((w * expected).sum())
    if denom == 0.0:
        return float("nan")
    return 1.0 - float((w * conf).sum()) / denom


def fleiss_kappa(counts: Any) -> float:
    """Fleiss' kappa from an items × categories count matrix whose rows all sum to the same n ≥ 2."""
    m = np.asarray(counts, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] == 0:
        return float("nan")
    n = m.sum(1)
    if not np.all(n == n[0]) or n[0] < 2:
        raise ValueError("Fleiss' kappa needs the same number (≥ 2) of ratings for every item; use fleiss_table() to build the matrix")
    r = n[0]
    p_i = ((m * m).sum(1) - r) / (r * (r - 1))
    p_c = m.sum(0) / m.sum()
    p_bar, p_e = float(p_i.mean()), float((p_c * p_c).sum())
    if p_e == 1.0:
        return float("nan")
    return (p_bar - p_e) / (1.0 - p_e)


def fleiss_table(units: Any, values: Any) -> tuple[np.ndarray, int]:
    """The count matrix of the units rated by the most common number of raters (Fleiss needs one
    number for all), and that number. Returns an empty matrix when no unit has two ratings."""
    (cu,), _ucats = _codes(units)
    (cv,), vcats = _codes(values)
    nu, nv = int(cu.max()) + 1 if len(cu) else 0, len(vcats)
    m = np.bincount(cu * nv + cv, minlength=nu * nv).reshape(nu, nv)
    sizes = m.sum(1)
    ok = sizes >= 2
    if not ok.any():
        return np.zeros((0, nv), dtype=np.int64), 0
    size = int(np.bincount(sizes[ok]).argmax())
    return m[sizes == size], size


def reliability_matrix(units: Any, raters: Any, values: Any) -> tuple[np.ndarray, np.ndarray]:
    """A raters × units matrix of value codes (``nan`` where a rater did not rate a unit) from long
    data, and the sorted distinct values the codes index. A rater's repeated rating of a unit keeps
    the last one."""
    (cu,), _ = _codes(units)
    (cr,), _ = _codes(raters)
    (cv,), cats = _codes(values)
    out = np.full((int(cr.max()) + 1 if len(cr) else 0, int(cu.max()) + 1 if len(cu) else 0), np.nan)
    out[cr, cu] = cv
    return out, cats


def krippendorff_alpha(reliability: Any, level: str = "nominal", values: Any = None) -> float:
    """Krippendorff's alpha of a raters × units matrix (``nan`` = missing). Entries are values
    (interval: numbers) or, when ``values`` is given, codes indexing it (``reliability_matrix``)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    data = np.asarray(reliability, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError("reliability data must be a raters × units matrix")
    if values is not None:
        domain = np.asarray(values, dtype=np.float64) if level == "interval" else np.arange(len(values), dtype=np.float64)
        present = ~np.isnan(data)
        codes = np.where(present, data, 0).astype(np.int64)
        k = len(domain)
    else:
        present = ~np.isnan(data)
        domain, inv = np.unique(data[present], return_inverse=True)
        codes = np.zeros(data.shape, dtype=np.int64)
        codes[present] = inv.reshape(-1)
        k = len(domain)
    if k == 0:
        return float("nan")
    units = data.shape[1]
    # n_uc: how many raters gave unit u value c
    flat = (np.arange(units)[None, :] * k + codes)[present]
    n_uc = np.bincount(flat, minlength=units * k).reshape(units, k).astype(np.float64)
    m_u = n_uc.sum(1)
    keep = m_u >= 2
    n_uc, m_u = n_uc[keep], m_u[keep]
    if n_uc.shape[0] == 0:
        return float("nan")
    scaled = n_uc / (m_u - 1.0)[:, None]
    o = scaled.T @ n_uc - np.diag(scaled.sum(0))
    n_c = o.sum(1)
    n = n_c.sum()
    if level == "nominal":
        d = 1.0 - np.eye(k)
    elif level == "interval":
        d = (domain[:, None] - domain[None, :]) ** 2
    else:
        cum = np.cumsum(n_c)
        lo = np.minimum.outer(np.arange(k), np.arange(k))
        hi = np.maximum.outer(np.arange(k), np.arange(k))
        between = cum[hi] - np.where(lo > 0, cum[np.maximum(lo - 1, 0)], 0.0)
        d = (between - (n_c[:, None] + n_c[None, :]) / 2.0) ** 2
    expected = float((np.outer(n_c, n_c) * d).sum())
    if expected == 0.0:
        return float("nan")
    return 1.0 - (n - 1.0) * float((o * d).sum()) / expected
