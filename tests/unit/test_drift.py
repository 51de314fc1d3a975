"""Drift figures: KS agrees with scipy, PSI and KL with hand and scipy computations, weights behave as
repeated rows, missing and empty inputs give counts and None, thresholds and the PNG summary."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special, stats

from rowtrail.monitoring import drift
from rowtrail.monitoring.drift import EPSILON, NULL_LABEL, categorical_drift, check, kl_divergence, numeric_drift, plot, psi

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _smoothed(counts: np.ndarray, eps: float = EPSILON) -> np.ndarray:
    p = np.maximum(counts / counts.sum(), eps)
    return p / p.sum()


# --- KS ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n1", "n2", "shift"), [(200, 150, 0.0), (200, 150, 0.5), (3000, 4000, 0.1), (40, 40, 1.0)])
def test_unweighted_ks_is_scipy(n1, n2, shift):
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=n1), rng.normal(loc=shift, size=n2)
    res = stats.ks_2samp(a, b)
    out = numeric_drift(a, b)
    assert out["ks"] == float(res.statistic)
    assert out["ks_pvalue"] == float(res.pvalue)


def test_identical_samples_have_ks_zero():
    a = np.random.default_rng(1).normal(size=500)
    out = numeric_drift(a, a.copy())
    assert out["ks"] == 0.0 and out["ks_pvalue"] == 1.0
    assert out["psi"] == 0.0 and out["kl"] == 0.0


def test_weighted_ks_with_integer_weights_is_ks_on_repeated_rows():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=300), rng.normal(loc=0.3, size=200)
    wa, wb = rng.integers(0, 5, size=a.size), rng.integers(1, 4, size=b.size)
    out = numeric_drift(a, b, before_weights=wa, after_weights=wb)
    ra, rb = np.repeat(a, wa), np.repeat(b, wb)
    assert out["ks"] == pytest.approx(stats.ks_2samp(ra, rb).statistic, abs=1e-12)
    assert out["mean_before"] == pytest.approx(ra.mean())
    assert out["hist_after"] == pytest.approx(np.histogram(rb, bins=[-np.inf, *np.nextafter(out["edges"], np.inf), np.inf])[0])
    # The p-value uses Kish effective sizes with scipy's asymptotic distribution, not the repeated counts.
    ne = lambda w: w.sum() ** 2 / (w.astype(float) ** 2).sum()  # noqa: E731
    m, n = ne(wa), ne(wb)
    assert out["ks_pvalue"] == pytest.approx(stats.kstwo.sf(out["ks"], np.round(m * n / (m + n))))


def test_uniform_weights_fall_back_to_scipy():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=50), rng.normal(size=60)
    out = numeric_drift(a, b, before_weights=np.full(50, 2.5), after_weights=np.full(60, 0.5))
    res = stats.ks_2samp(a, b)
    assert (out["ks"], out["ks_pvalue"]) == (float(res.statistic), float(res.pvalue))


# --- PSI and KL ----------------------------------------------------------------------------------


def test_psi_of_a_known_shift():
    before = np.arange(100.0)
    out = numeric_drift(before, before + 5)
    # Deciles of 0..99 cut after 9, 19, …, 89; the shift moves 5 rows out of the first bin into the last.
    assert out["edges"] == [9.0, 19.0, 29.0, 39.0, 49.0, 59.0, 69.0, 79.0, 89.0]
    assert out["hist_before"] == [10.0] * 10
    assert out["hist_after"] == [5.0] + [10.0] * 8 + [15.0]
    assert out["psi"] == pytest.approx(0.05 * math.log(2) + 0.05 * math.log(1.5), rel=1e-12)
    assert numeric_drift(before, before[::-1])["psi"] == 0.0


def test_kl_matches_scipy_on_the_binned_vectors():
    rng = np.random.default_rng(5)
    out = numeric_drift(rng.normal(size=2000), rng.normal(0.4, 1.3, size=1500), bins=20)
    h1, h2 = np.array(out["hist_before"]), np.array(out["hist_after"])
    assert out["kl"] == pytest.approx(special.rel_entr(_smoothed(h2), _smoothed(h1)).sum(), rel=1e-12)
    assert out["kl"] == pytest.approx(stats.entropy(_smoothed(h2), _smoothed(h1)), rel=1e-12)
    assert out["psi"] == pytest.approx(stats.entropy(_smoothed(h2), _smoothed(h1)) + stats.entropy(_smoothed(h1), _smoothed(h2)), rel=1e-12)


def test_empty_bins_are_smoothed_not_infinite():
    p, q = np.array([5.0, 0.0, 5.0]), np.array([1.0, 8.0, 1.0])
    assert kl_divergence(p, q) == pytest.approx(special.rel_entr(_smoothed(p), _smoothed(q)).sum())
    assert math.isfinite(psi(q, p)) and psi(q, p) > 1
    assert kl_divergence(p, q, eps=1e-9) > kl_divergence(p, q)  # a smaller floor costs the empty bin more


def test_psi_and_kl_reject_bad_vectors():
    with pytest.raises(ValueError, match="same length"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="sums to 0"):
        kl_divergence([0, 0], [1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        psi([1, -1], [1, 1])
    with pytest.raises(ValueError, match="eps"):
        psi([1, 1], [1, 1], eps=0)


def test_tied_quantiles_merge_bins():
    out = numeric_drift([1, 1, 1, 1, 2, 2], [1, 2, 2, 2])
    assert out["edges"] == [1.0, 2.0] and out["bins"] == 3
    assert out["hist_before"] == [4.0, 2.0, 0.0] and out["hist_after"] == [1.0, 3.0, 0.0]
    constant = numeric_drift([3.0] * 10, [3.0] * 4)
    assert constant["psi"] == 0.0 and constant["ks"] == 0.0


# --- missing, empty, bad input -------------------------------------------------------------------


def test_nan_and_none_are_missing_with_their_weights():
    out = numeric_drift([1.0, np.nan, 3.0, None], [np.nan, 2.0], before_weights=[1, 100, 3, 100], after_weights=[5, 1])
    assert (out["n_before"], out["missing_before"], out["n_after"], out["missing_after"]) == (2, 2, 1, 1)
    assert out["mean_before"] == pytest.approx((1 * 1 + 3 * 3) / 4)
    assert out["weight_before"] == 4.0 and out["mean_after"] == 2.0


@pytest.mark.parametrize(("before", "after"), [([], [1.0, 2.0]), ([1.0, 2.0], []), ([None, np.nan], [1.0]), ([], [])])
def test_an_empty_side_gives_none(before, after):
    out = numeric_drift(before, after)
    assert out["psi"] is None and out["kl"] is None and out["ks"] is None and out["ks_pvalue"] is None and out["bins"] is None
    assert (out["mean_before"] is None) == (out["n_before"] == 0)


@pytest.mark.parametrize(("before", "after"), [([], ["a"]), (["a", None], []), ([], [])])
def test_an_empty_categorical_side_gives_none(before, after):
    out = categorical_drift(before, after)
    assert out["psi"] is None and out["kl"] is None and out["max_change"] is None and out["max_change_value"] is None
    assert out["change"] == {} and (out["proportions_before"] == {}) == (before == [])
    assert (out["n_before"], out["n_after"]) == (len(before), len(after))


def test_zero_total_weight_counts_as_empty():
    out = numeric_drift([1.0, 2.0], [1.0], before_weights=[0, 0])
    assert out["n_before"] == 2 and out["mean_before"] is None and out["psi"] is None


def test_bad_inputs_say_what_to_do():
    with pytest.raises(TypeError, match="categorical_drift"):
        numeric_drift(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="categorical_drift"):
        numeric_drift(np.array(["x", 1], dtype=object), [1.0])
    with pytest.raises(ValueError, match="before_weights"):
        numeric_drift([1.0, 2.0], [1.0], before_weights=[1.0])
    with pytest.raises(ValueError, match="non-negative"):
        categorical_drift(["a"], ["a"], after_weights=[-1.0])
    with pytest.raises(ValueError, match="bins"):
        numeric_drift([1.0], [1.0], bins=0)


# --- categorical ---------------------------------------------------------------------------------


def test_categorical_shares_and_max_change_with_weights():
    before = ["a", "a", "b", None, "c"]
    after = ["a", "b", "b", float("nan"), "d"]
    out = categorical_drift(before, after, before_weights=[1, 1, 2, 1, 5], after_weights=[2, 1, 1, 4, 2])
    assert out["proportions_before"] == pytest.approx({NULL_LABEL: 0.1, "a": 0.2, "b": 0.2, "c": 0.5, "d": 0.0})
    assert out["proportions_after"] == pytest.approx({NULL_LABEL: 0.4, "a": 0.2, "b": 0.2, "c": 0.0, "d": 0.2})
    assert out["change"] == pytest.approx({NULL_LABEL: 0.3, "a": 0.0, "b": 0.0, "c": -0.5, "d": 0.2})
    assert out["max_change"] == pytest.approx(0.5) and out["max_change_value"] == "c"
    assert (out["missing_before"], out["missing_after"], out["n_before"], out["n_after"]) == (1, 1, 5, 5)
    h1, h2 = np.array([1, 2, 2, 5, 0.0]), np.array([4, 2, 2, 0, 2.0])
    assert out["psi"] == pytest.approx(psi(h1, h2)) and out["kl"] == pytest.approx(stats.entropy(_smoothed(h2), _smoothed(h1)))


def test_categorical_values_are_strings():
    out = categorical_drift(np.array([1, 2, 2]), [2, "2", 3])
    assert list(out["proportions_before"]) == ["1", "2", "3"]
    assert out["proportions_after"]["2"] == pytest.approx(2 / 3)


def test_categorical_identical_is_zero():
    v = np.array(["x", "y", "y", "z"])
    out = categorical_drift(v, v[::-1])
    assert out["psi"] == 0.0 and out["kl"] == 0.0 and out["max_change"] == 0.0


# --- check ---------------------------------------------------------------------------------------


THRESHOLDS = {"psi": {"warn": 0.1, "fail": 0.25}, "ks": {"warn": 0.1}, "kl": {"fail": 1.0}, "max_change": {"warn": 0.2}}


def test_check_levels():
    figures = {"psi": 0.25, "ks": 0.05, "kl": 0.3, "max_change": None}
    assert check(figures, THRESHOLDS) == [
        {"level": "warn", "figure": "psi", "value": 0.25, "threshold": 0.1},
        {"level": "fail", "figure": "psi", "value": 0.25, "threshold": 0.25},
    ]
    assert check({"psi": 0.1}, THRESHOLDS) == [{"level": "warn", "figure": "psi", "value": 0.1, "threshold": 0.1}]
    assert check({"psi": 0.0999}, THRESHOLDS) == []
    cat = categorical_drift(["a"] * 9 + ["b"], ["b"] * 10)
    assert [(f["figure"], f["level"]) for f in check(cat, THRESHOLDS)] == [
        ("psi", "warn"),
        ("psi", "fail"),
        ("kl", "fail"),
        ("max_change", "warn"),
    ]


def test_check_rejects_unknown_names():
    with pytest.raises(ValueError, match="psi, kl, ks, max_change"):
        check({"psi": 1.0}, {"psi_max": {"warn": 0.1}})
    with pytest.raises(ValueError, match="warn, fail"):
        check({"psi": 1.0}, {"psi": {"error": 0.1}})


# --- properties ----------------------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
samples = st.lists(finite, min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(a=samples, b=samples, bins=st.integers(1, 12))
def test_figures_are_in_range_and_unit_weights_change_nothing(a, b, bins):
    out = numeric_drift(a, b, bins=bins)
    assert out["psi"] is not None and out["psi"] >= 0 and out["kl"] >= 0
    assert 0.0 <= out["ks"] <= 1.0 and 0.0 <= out["ks_pvalue"] <= 1.0
    assert sum(out["hist_after"]) == len(b)
    weighted = numeric_drift(a, b, bins=bins, before_weights=np.ones(len(a)), after_weights=np.ones(len(b)))
    assert weighted == out


@settings(max_examples=60, deadline=None)
@given(p=st.lists(st.floats(0, 1e3), min_size=1, max_size=12), data=st.data())
def test_psi_is_non_negative_and_symmetric(p, data):
    q = data.draw(st.lists(st.floats(0, 1e3), min_size=len(p), max_size=len(p)))
    if sum(p) <= 0 or sum(q) <= 0:
        return
    assert psi(p, q) >= 0 and kl_divergence(p, q) >= -1e-12
    assert psi(p, q) == pytest.approx(psi(q, p), abs=1e-9)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's p-value for tiny samples; only its statistic is used here
@settings(max_examples=40, deadline=None)
@given(
    a=samples, b=samples, wa=st.lists(st.integers(0, 4), min_size=40, max_size=40), wb=st.lists(st.integers(1, 4), min_size=40, max_size=40)
)
def test_weighted_ks_is_repeated_ks(a, b, wa, wb):
    wa, wb = np.array(wa[: len(a)]), np.array(wb[: len(b)])
    if wa.sum() == 0:
        return
    out = numeric_drift(a, b, before_weights=wa, after_weights=wb)
    assert out["ks"] == pytest.approx(stats.ks_2samp(np.repeat(a, wa), np.repeat(b, wb)).statistic, abs=1e-9)


# --- plot ----------------------------------------------------------------------------------------


def _reports(with_drift: bool) -> list[dict]:
    rng = np.random.default_rng(9)
    sources = [f"src-{i}" for i in range(13)]
    reports = []
    rows = 10_000
    for k, name in enumerate(["dedup", "quality filter", "reweight"]):
        out = int(rows * 0.8)
        per = {
            s: {"rows_in": rows // 13, "rows_out": out // 13, "weight_in": float(rows // 13), "weight_out": float(rng.uniform(1, 100))}
            for s in sources[: 13 - k]
        }
        drift_figs: dict = {}
        if with_drift and k != 1:  # the middle step has no drift entries
            drift_figs["length"] = {**numeric_drift(rng.normal(size=500), rng.normal(0.2 * k, size=400)), "kind": "numeric"}
            drift_figs["lang"] = {**categorical_drift(rng.choice(list("abc"), 300), rng.choice(list("abcd"), 300)), "kind": "categorical"}
        reports.append(
            {
                "step_id": f"s{k}",
                "name": name,
                "rows_in": rows,
                "rows_out": out,
                "weight_in": float(rows),
                "weight_out": float(out) * 1.1,
                "dropped": {"near_duplicate": rows - out}
                if k == 0
                else ({"low_quality": 100, "too_short": rows - out - 100} if k == 1 else {}),
                "per_source": per,
                "drift": drift_figs,
            }
        )
        rows = out
    return reports


@pytest.mark.parametrize("with_drift", [True, False])
def test_plot_writes_a_png(tmp_path, with_drift):
    path = plot(_reports(with_drift), tmp_path / "monitoring.png", thresholds=THRESHOLDS)
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000


def test_plot_takes_minimal_reports(tmp_path):
    reports = [{"step_id": "a", "name": "a", "rows_in": 3, "rows_out": 2, "weight_in": 3.0, "weight_out": 2.0}]
    assert (plot(reports, tmp_path / "min.png")).read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError, match="no reports"):
        plot([], tmp_path / "none.png")


def test_plot_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'rowtrail\[plot\]'"):
        drift.plot(_reports(False), tmp_path / "x.png")


def test_import_does_not_pull_in_matplotlib_or_scipy():
    import subprocess

    code = "import sys, rowtrail.monitoring; print(any(m.split('.')[0] in ('matplotlib', 'scipy') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
