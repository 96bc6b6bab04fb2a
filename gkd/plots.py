"""PNGs: training curves and confusion matrices (the stages' MLflow artifacts) and the headless pyplot that
BENCHMARKS.md's plots use too. Outside gkd/tracking, so that the stages of llm/ and gnn/ do not import tracking."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot on the headless Agg backend."""
    import matplotlib

    matplotlib.use("Agg")  # no display on cluster nodes
    import matplotlib.pyplot as plt

    return plt


def curve_png(history: list[dict], keys: list[str], path: str | Path, step_key: str = "epoch",
              title: str = "") -> Path | None:
    """One panel per key present in `history` (rows of {step_key: s, key: value}); None if none is."""
    keys = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in history)]
    if not keys:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        rows = [r for r in history if isinstance(r.get(key), (int, float))]
        ax.plot([r.get(step_key, i + 1) for i, r in enumerate(rows)], [r[key] for r in rows], marker=".", lw=1)
        ax.set_xlabel(step_key)
        ax.set_title(key)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """counts[i, j] = nodes of class i predicted as j."""
    m = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(m, (np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)), 1)
    return m


def confusion_png(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str], path: str | Path,
                  title: str = "") -> Path:
    """Row-normalised confusion matrix (rows: true class, columns: predicted) as a heat map."""
    plt = pyplot()
    m = confusion(y_true, y_pred, len(class_names)).astype(np.float64)
    m /= np.maximum(m.sum(1, keepdims=True), 1)
    size = max(4.0, 0.18 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    fontsize = 8 if len(class_names) <= 20 else 5
    ax.set_xticks(ticks, class_names, rotation=90, fontsize=fontsize)
    ax.set_yticks(ticks, class_names, fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = float((np.asarray(y_true) == np.asarray(y_pred)).mean()) if len(y_true) else 0.0
    ax.set_title(f"{title} (acc {acc:.3f}, {len(y_true):,} nodes)" if title else f"acc {acc:.3f}")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reliability_png(bins: list[dict], path: str | Path, title: str = "") -> Path:
    """Reliability curve: accuracy vs mean confidence per bin (marker size ~ nodes), with the diagonal."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="calibrated")
    if bins:
        n = max(b["count"] for b in bins)
        ax.plot([b["conf"] for b in bins], [b["acc"] for b in bins], c="C0", lw=1)
        ax.scatter([b["conf"] for b in bins], [b["acc"] for b in bins], s=[20 + 180 * b["count"] / n for b in bins],
                   c="C0", label="teacher")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
