"""What every source loader returns before ingest: node and edge tables in canonical columns.

Ray-free: sources are plain functions `load(cfg) -> RawGraph`; ingest adds node ids, draws the
missing splits, shards, encodes and writes the canonical store.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from gkd.config import SplitConfig

HOLDOUT = "holdout"
# A source gives train/val/test/unlabeled (or null); ingest alone makes 'holdout' (draw_holdout).
SPLITS = ("train", "val", "test", "unlabeled", HOLDOUT)

# Canonical node columns a source fills (node_id is the row position, added by ingest).
RAW_NODE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),  # the source's own id
        ("text", pa.string()),
        ("label", pa.int32()),  # class index, -1 = unknown
        # train/val/test/unlabeled, or null = draw with SplitConfig. 'unlabeled' on a node with a
        # label (e.g. an OGB node outside the official split files) keeps it out of supervision.
        ("split", pa.string()),
    ]
)
EDGE_SCHEMA = pa.schema([("src", pa.int64()), ("dst", pa.int64())])


@dataclass
class RawGraph:
    """nodes: RAW_NODE_SCHEMA (row i = node i); edges: EDGE_SCHEMA, row positions into nodes."""

    nodes: pa.Table
    edges: pa.Table
    class_names: list[str]
    directed: bool = False
    # Things the user should know (fallbacks taken, rows dropped), printed in the ingest summary.
    notes: list[str] = field(default_factory=list)
    # Source-specific counts for meta.json (e.g. {"dropped_edges_unknown_ids": 3}).
    stats: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.nodes = self.nodes.select(RAW_NODE_SCHEMA.names).cast(RAW_NODE_SCHEMA)
        self.edges = self.edges.select(EDGE_SCHEMA.names).cast(EDGE_SCHEMA)

    @property
    def num_nodes(self) -> int:
        return self.nodes.num_rows


def draw_split(labels: np.ndarray, split: np.ndarray | None, cfg: SplitConfig) -> np.ndarray:
    """Fill missing splits (None/'') for labelled nodes; unlabelled nodes become 'unlabeled'.

    labels: (N,) int, -1 = unknown. split: (N,) object or None. Returns (N,) object array.
    Per-class mode puts train_per_class then val_per_class of each class (seeded order) in
    train/val and the rest in test; a class too small keeps at least one test node when it can.
    """
    n = len(labels)
    out = np.full(n, None, dtype=object) if split is None else np.asarray(split, dtype=object).copy()
    missing = np.array([s is None or s == "" for s in out], dtype=bool)
    out[missing & (labels < 0)] = "unlabeled"
    todo = np.flatnonzero(missing & (labels >= 0))
    if len(todo) == 0:
        return out
    rng = np.random.default_rng(cfg.seed)
    if cfg.per_class:
        for c in np.unique(labels[todo]):
            idx = todo[labels[todo] == c]
            idx = idx[rng.permutation(len(idx))]
            n_train = min(cfg.train_per_class, max(len(idx) - 1, 1))
            n_val = min(cfg.val_per_class or 0, max(len(idx) - n_train - 1, 0))
            out[idx[:n_train]] = "train"
            out[idx[n_train : n_train + n_val]] = "val"
            out[idx[n_train + n_val :]] = "test"
    else:
        idx = todo[rng.permutation(len(todo))]
        n_train = int(round(cfg.train_fraction * len(idx)))
        n_val = int(round(cfg.val_fraction * len(idx)))
        out[idx[:n_train]] = "train"
        out[idx[n_train : n_train + n_val]] = "val"
        out[idx[n_train + n_val :]] = "test"
    return out


def class_index(names: list[str]) -> dict[str, int]:
    return {name: i for i, name in enumerate(names)}


def draw_holdout(labels: np.ndarray, split: np.ndarray, cfg: SplitConfig) -> np.ndarray:
    """Copy of split (N,) object with round(cfg.holdout_fraction * T) of its T labelled 'test' nodes,
    drawn with rng [cfg.seed, 71], renamed 'holdout' (the same draw for every source)."""
    out = np.asarray(split, dtype=object).copy()
    test = np.flatnonzero((out == "test") & (np.asarray(labels) >= 0))
    k = int(round(cfg.holdout_fraction * len(test)))
    if k:
        out[np.random.default_rng([cfg.seed, 71]).choice(test, size=k, replace=False)] = HOLDOUT
    return out
