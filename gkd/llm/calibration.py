"""Calibration of class probabilities (Ray-free): reliability bins, ECE, and the precision at each confidence
level that turns a teacher's confidence into a per-node weight.

The teacher's probabilities are measured on validation nodes (never test) before its targets are used:
`fit_precision` bins val nodes by the teacher's top probability and records the fraction right in each bin
(made monotone, so a more confident target never weighs less); `precision_at` reads it for any node.
"""

from __future__ import annotations

import numpy as np

DEFAULT_EDGES = np.linspace(0.0, 1.0, 11)


def reliability(probs: np.ndarray, labels: np.ndarray, edges: np.ndarray = DEFAULT_EDGES) -> dict:
    """(n, C) probabilities + (n,) labels -> {acc, ece, bins: [{lo, hi, count, conf, acc}]} over confidence bins
    (the top probability); ECE = sum over bins of count/n * |acc - conf|."""
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probs {probs.shape} and labels {labels.shape} do not match")
    if not len(labels):
        return {"acc": None, "ece": None, "bins": []}
    conf, pred = probs.max(1), probs.argmax(1)
    right = pred == labels
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, len(edges) - 2)
    bins, ece = [], 0.0
    for b in range(len(edges) - 1):
        m = which == b
        if not m.any():
            continue
        acc_b, conf_b = float(right[m].mean()), float(conf[m].mean())
        ece += m.mean() * abs(acc_b - conf_b)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": int(m.sum()),
                     "conf": round(conf_b, 4), "acc": round(acc_b, 4)})
    return {"acc": round(float(right.mean()), 4), "ece": round(float(ece), 4), "bins": bins}


def fit_precision(probs: np.ndarray, labels: np.ndarray) -> dict:
    """The teacher's precision as a function of its confidence, fitted on labelled (val) nodes: isotonic
    regression of "top class right" on the top probability (monotone: a more confident target never gets a
    lower precision) -> {x, y} knots for `precision_at`, plus the reliability bins and the node count."""
    from sklearn.isotonic import IsotonicRegression

    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels, np.int64)
    if not len(labels):
        raise ValueError("fit_precision needs labelled nodes with teacher outputs; none were given")
    conf = probs.max(1)
    right = (probs.argmax(1) == labels).astype(np.float64)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(conf, right)
    return {"x": [round(float(v), 6) for v in iso.X_thresholds_], "y": [round(float(v), 6) for v in iso.y_thresholds_],
            "nodes": int(len(labels)), **reliability(probs, labels)}


def precision_at(fit: dict, probs: np.ndarray) -> np.ndarray:
    """(n,) calibrated precision of each row's top class, read off a `fit_precision` curve."""
    conf = np.asarray(probs, np.float64).max(1)
    return np.interp(conf, fit["x"], fit["y"]).astype(np.float32)
