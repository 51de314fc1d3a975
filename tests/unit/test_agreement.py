"""Agreement statistics against the reference implementations: scikit-learn's cohen_kappa_score and
the krippendorff package (nominal, ordinal, interval, with missing data); Fleiss' kappa against the
worked example of Fleiss (1971) as tabulated on Wikipedia."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from rowtrail.monitoring.agreement import cohen_kappa, fleiss_kappa, fleiss_table, krippendorff_alpha, reliability_matrix


@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_matches_sklearn(weights):
    rng = np.random.default_rng(1)
    for _ in range(30):
        n = int(rng.integers(5, 80))
        a = rng.integers(0, 5, n)
        b = np.where(rng.random(n) < 0.6, a, rng.integers(0, 5, n))
        assert cohen_kappa(a, b, weights=weights) == pytest.approx(cohen_kappa_score(a, b, weights=weights), abs=1e-12)


def test_cohen_with_a_fixed_label_set_matches_sklearn():
    # neither rater uses 2: with the label set fixed, 1 and 3 are two steps apart, as in sklearn
    a, b = [1, 3, 3, 4, 1, 4, 3], [1, 3, 4, 4, 3, 4, 1]
    for w in (None, "linear", "quadratic"):
        assert cohen_kappa(a, b, weights=w, labels=[1, 2, 3, 4]) == pytest.approx(
            cohen_kappa_score(a, b, weights=w, labels=[1, 2, 3, 4]), abs=1e-12
        )
    assert cohen_kappa(a, b, weights="quadratic", labels=[1, 2, 3, 4]) != pytest.approx(cohen_kappa(a, b, weights="quadratic"))
    with pytest.raises(ValueError):
        cohen_kappa([1, 5], [1, 1], labels=[1, 2])


def test_cohen_string_labels_and_edge_cases():
    a = ["good", "bad", "good", "good", "bad", "meh"]
    b = ["good", "bad", "bad", "good", "bad", "good"]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    assert np.isnan(cohen_kappa(["x", "x"], ["x", "x"]))  # no variation: undefined, not 1
    with pytest.raises(ValueError):
        cohen_kappa([1, 2], [1])


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval"])
def test_krippendorff_matches_package_with_missing_data(level):
    rng = np.random.default_rng(2)
    for _ in range(25):
        raters, units = int(rng.integers(2, 7)), int(rng.integers(5, 60))
        data = rng.integers(1, 6, (raters, units)).astype(float)
        data[rng.random(data.shape) < 0.35] = np.nan
        if (np.sum(~np.isnan(data), 0) >= 2).sum() < 2:
            continue
        ref = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
        assert krippendorff_alpha(data, level) == pytest.approx(ref, abs=1e-10)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=6, max_size=6), min_size=3, max_size=5))
def test_krippendorff_property(rows):
    data = np.array([[np.nan if v is None else float(v) for v in r] for r in rows])
    present = ~np.isnan(data)
    pairable = present.sum(0) >= 2
    if not pairable.any() or len(np.unique(data[:, pairable][present[:, pairable]])) < 2:
        return  # the package raises where alpha is undefined; ours returns nan
    for level in ("nominal", "ordinal", "interval"):
        ref = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
        assert krippendorff_alpha(data, level) == pytest.approx(ref, abs=1e-9)


def test_reliability_matrix_from_long_data_string_values():
    units = ["u1", "u1", "u2", "u2", "u2", "u3", "u3"]
    raters = ["a", "b", "a", "b", "c", "b", "c"]
    values = ["x", "x", "y", "x", "y", "z", "z"]
    mat, cats = reliability_matrix(units, raters, values)
    assert list(cats) == ["x", "y", "z"] and mat.shape == (3, 3)
    ref = krippendorff.alpha(reliability_data=mat, level_of_measurement="nominal")
    assert krippendorff_alpha(mat, "nominal", values=list(cats)) == pytest.approx(ref, abs=1e-12)


def test_fleiss_worked_example():
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    assert fleiss_kappa(table) == pytest.approx(0.20993, abs=1e-5)
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 1], [2, 1]])


def test_fleiss_table_keeps_the_modal_rating_count_and_equals_the_two_rater_case():
    units = ["a", "a", "b", "b", "c", "c", "d", "d", "d"]
    values = [1, 1, 1, 2, 2, 2, 1, 2, 2]
    table, size = fleiss_table(units, values)
    assert size == 2 and table.tolist() == [[2, 0], [1, 1], [0, 2]]
    # with two raters per item Fleiss' kappa is Scott's pi: p_o against pooled shares
    p_o = (1 + 0 + 1) / 3
    p_e = (3 / 6) ** 2 + (3 / 6) ** 2
    assert fleiss_kappa(table) == pytest.approx((p_o - p_e) / (1 - p_e))
