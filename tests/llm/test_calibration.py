import numpy as np
import pytest

from gkd.llm.calibration import reliability


def test_reliability_bins_and_ece_by_hand():
    # 4 nodes at confidence 0.9 (3 right), 2 at 0.55 (1 right)
    probs = np.array([[0.9, 0.1]] * 4 + [[0.45, 0.55]] * 2)
    labels = np.array([0, 0, 0, 1, 1, 0])
    r = reliability(probs, labels)
    assert r["acc"] == pytest.approx(4 / 6, abs=1e-4)
    assert [(b["lo"], b["count"], b["conf"], b["acc"]) for b in r["bins"]] == [
        (pytest.approx(0.5), 2, 0.55, 0.5), (pytest.approx(0.9), 4, 0.9, 0.75)]
    assert r["ece"] == pytest.approx(2 / 6 * 0.05 + 4 / 6 * 0.15, abs=1e-4)
    # a perfectly calibrated, always-right classifier at confidence 1
    assert reliability(np.eye(3), np.arange(3))["ece"] == 0
    assert reliability(np.zeros((0, 3)), np.zeros(0, int)) == {"acc": None, "ece": None, "bins": []}
    with pytest.raises(ValueError, match="do not match"):
        reliability(np.eye(3), np.arange(2))


def test_precision_curve_is_monotone_and_read_at_each_confidence():
    from gkd.llm.calibration import fit_precision, precision_at

    rng = np.random.default_rng(0)
    conf = rng.uniform(0.5, 1.0, 2000)
    right = rng.uniform(size=2000) < conf ** 2  # precision conf^2: an over-confident teacher
    labels = np.where(right, 0, 1)
    probs = np.stack([conf, 1 - conf], 1)  # class 0 is always the top one
    fit = fit_precision(probs, labels)
    assert fit["nodes"] == 2000 and np.all(np.diff(fit["y"]) >= 0)
    got = precision_at(fit, np.array([[0.3, 0.7], [0.1, 0.9], [0.99, 0.01]]))
    assert got[0] == pytest.approx(0.49, abs=0.08) and got[1] == pytest.approx(0.81, abs=0.08)
    assert got[2] == pytest.approx(0.98, abs=0.08) and got[0] < got[1] < got[2] + 1e-6
    with pytest.raises(ValueError, match="labelled nodes"):
        fit_precision(np.zeros((0, 2)), np.zeros(0, int))
