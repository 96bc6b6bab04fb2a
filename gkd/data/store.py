"""The canonical graph store (DESIGN.md) and the in-memory `TAG` view later stages use.

Layout under <workdir>/graph/:
  meta.json                 name, source, counts, class names, split sizes, encoder, schema_version
  nodes/*.parquet           node_id:int64, key:string, text:string, label:int32, split:string[, part:int32]
                            split: train/val/test/unlabeled/holdout
  edges/*.parquet           src:int64, dst:int64 (as the source gave them, held-out nodes' edges included)
  csr.npz                   indptr (N+1,), indices (nnz,), int64; symmetrised unless directed,
                            deduplicated, no self-loops; no entry touches a held-out node
  holdout_edges.npz         node (h,), neighbor (h,) int64: the CSR rows the held-out nodes would have had,
                            less their held-out neighbours; sorted by (node, neighbor), unique
  x.npy                     (N, d) node features, row i = node i
  partition.npy             (N,) int32 METIS part per node (optional)
meta.json is written last: a store without it is incomplete.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from gkd.data.raw import EDGE_SCHEMA, HOLDOUT, SPLITS
from gkd.errors import GraphStoreError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
NODE_SCHEMA = pa.schema(
    [
        ("node_id", pa.int64()),
        ("key", pa.string()),
        ("text", pa.string()),
        ("label", pa.int32()),
        ("split", pa.string()),
    ]
)
META_KEYS = (
    "name",
    "source",
    "num_nodes",
    "num_edges",
    "num_classes",
    "class_names",
    "split_sizes",
    "encoder",
    "schema_version",
    "directed",
)


# ----------------------------------------------------------------------------- CSR


def unique_sorted(a: np.ndarray) -> np.ndarray:
    """np.unique(a) by sort + neighbour compare: numpy 2.4's np.unique is ~100x slower on 1e7+ ints."""
    a = np.sort(a)
    if len(a) == 0:
        return a
    keep = np.empty(len(a), dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def build_csr(src: np.ndarray, dst: np.ndarray, num_nodes: int, directed: bool = False):
    """Edges (E,) x 2 -> CSR (indptr (N+1,), indices (nnz,)) int64, sorted, deduplicated, no self-loops."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    if not directed:
        src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    keep = src != dst
    key = src[keep] * np.int64(num_nodes) + dst[keep]
    del src, dst, keep
    key = unique_sorted(key)  # sorts by (src, dst) and drops duplicates
    indices = key % num_nodes
    counts = np.bincount(key // num_nodes, minlength=num_nodes)
    indptr = np.zeros(num_nodes + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, indices.astype(np.int64, copy=False)


def save_csr(path: Path, indptr: np.ndarray, indices: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez(tmp, indptr=indptr, indices=indices)
    tmp.replace(path)


def load_csr(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise GraphStoreError(f"{path} is missing: run `gkd ingest` for this work dir first")
    with np.load(path) as z:
        return z["indptr"], z["indices"]


# ----------------------------------------------------------------------------- held-out nodes


def cut_holdout(indptr: np.ndarray, indices: np.ndarray, nodes: np.ndarray):
    """Take `nodes` out of a CSR: (indptr, indices) with no entry touching them; (node, neighbor) (h,) int64
    their rows' entries to other nodes, sorted as the CSR is; the count of entries between two of them."""
    n = len(indptr) - 1
    nodes = np.unique(np.asarray(nodes, dtype=np.int64))
    held = np.zeros(n, dtype=bool)
    held[nodes] = True
    deg = np.diff(indptr)
    # the held rows' entries, in CSR order
    deg_held = deg[nodes]
    first = np.repeat(indptr[:-1][nodes] - np.cumsum(deg_held) + deg_held, deg_held)
    pos = first + np.arange(len(first), dtype=np.int64)
    node, neighbor = np.repeat(nodes, deg_held), indices[pos]
    between = held[neighbor]
    # entries of the other rows that point at a held node
    into = np.flatnonzero(held[indices])
    rows = np.searchsorted(indptr, into, side="right") - 1
    removed = np.bincount(rows[~held[rows]], minlength=n)
    keep = ~np.repeat(held, deg)
    keep[into] = False
    new_indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.where(held, 0, deg - removed), out=new_indptr[1:])
    return new_indptr, indices[keep], node[~between], neighbor[~between], int(between.sum())


def save_holdout(path: Path, node: np.ndarray, neighbor: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez(tmp, node=np.asarray(node, dtype=np.int64), neighbor=np.asarray(neighbor, dtype=np.int64))
    tmp.replace(path)


@dataclass
class Holdout:
    """Test nodes held out of the graph: nodes (m,) int64 sorted, labels (m,) int32, and per node its
    (k_i,) int64 neighbours in the graph (the new-node path's input)."""

    nodes: np.ndarray
    labels: np.ndarray
    neighbors: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.nodes)


def read_holdout(graph_dir: str | Path) -> Holdout:
    """The store's held-out nodes and their neighbours (empty for a store without any, or an older one)."""
    graph_dir = Path(graph_dir)
    labels, split = node_arrays(graph_dir)
    nodes = np.flatnonzero(split == HOLDOUT).astype(np.int64)
    path = graph_dir / "holdout_edges.npz"
    if len(nodes) == 0 and not path.is_file():
        return Holdout(nodes, labels[nodes], [])
    if not path.is_file():
        raise GraphStoreError(f"{path} is missing but {len(nodes)} nodes have split 'holdout': rerun ingest")
    try:
        with np.load(path) as z:
            node, neighbor = z["node"], z["neighbor"]
    except (OSError, ValueError, KeyError) as err:
        raise GraphStoreError(f"{path} is not an npz with arrays node and neighbor ({err}): rerun ingest") from None
    if node.shape != neighbor.shape or node.ndim != 1 or not (node.dtype.kind == neighbor.dtype.kind == "i"):
        raise GraphStoreError(f"{path}: node {node.shape} {node.dtype} and neighbor {neighbor.shape} "
                              f"{neighbor.dtype} must be equal-length 1-D integer arrays: rerun ingest")
    node, neighbor = node.astype(np.int64), neighbor.astype(np.int64)
    n = len(split)
    for name, v in (("node", node), ("neighbor", neighbor)):
        if len(v) and (v.min() < 0 or v.max() >= n):
            raise GraphStoreError(f"{path}: {name} id {int(v[(v < 0) | (v >= n)][0])} outside 0..{n - 1}: rerun ingest")
    if (split[node] != HOLDOUT).any():
        raise GraphStoreError(f"{path}: node {int(node[split[node] != HOLDOUT][0])} is not a held-out node "
                              "(its split is not 'holdout'): rerun ingest")
    if (split[neighbor] == HOLDOUT).any():
        raise GraphStoreError(f"{path}: neighbor {int(neighbor[split[neighbor] == HOLDOUT][0])} is itself a "
                              "held-out node: rerun ingest")
    key = node * np.int64(n) + neighbor
    if len(key) > 1 and not (np.diff(key) > 0).all():
        raise GraphStoreError(f"{path}: rows are not sorted by (node, neighbor) without duplicates: rerun ingest")
    bounds = np.searchsorted(node, np.concatenate([nodes, [n]]))
    return Holdout(nodes, labels[nodes], [neighbor[a:b] for a, b in zip(bounds[:-1], bounds[1:])])


# ----------------------------------------------------------------------------- tables


def read_table(folder: Path, columns: list[str] | None = None) -> pa.Table:
    """All Parquet shards of nodes/ or edges/ as one table (shard order)."""
    files = sorted(folder.glob("*.parquet"))
    if not files:
        raise GraphStoreError(f"{folder} holds no .parquet shards: the store is incomplete; rerun ingest")
    return pads.dataset([str(f) for f in files], format="parquet").to_table(columns=columns)


def node_arrays(graph_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,) int32, split (N,) object) in node_id order, whatever the shard order."""
    t = read_table(graph_dir / "nodes", ["node_id", "label", "split"])
    ids = t["node_id"].to_numpy()
    labels = np.empty(len(ids), dtype=np.int32)
    split = np.empty(len(ids), dtype=object)
    labels[ids] = t["label"].to_numpy()
    split[ids] = np.asarray(t["split"].to_pylist(), dtype=object)
    return labels, split


def write_meta(graph_dir: Path, meta: dict) -> None:
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise GraphStoreError(f"meta.json would miss keys {missing}")
    tmp = graph_dir / "meta.json.partial"
    tmp.write_text(json.dumps(meta, indent=2, default=str))
    tmp.replace(graph_dir / "meta.json")


def read_meta(graph_dir: Path) -> dict:
    path = Path(graph_dir) / "meta.json"
    if not path.is_file():
        raise GraphStoreError(
            f"{path} is missing: {graph_dir} is not a complete graph store (run `gkd ingest`)"
        )
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise GraphStoreError(f"{path} is not valid JSON ({err}): rerun ingest") from None
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise GraphStoreError(f"{path} lacks keys {missing}: rerun ingest")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise GraphStoreError(
            f"{path} has schema_version {meta['schema_version']}, this gkd reads {SCHEMA_VERSION}: "
            "rerun ingest with this version"
        )
    return meta


# ----------------------------------------------------------------------------- TAG view


@dataclass
class TAG:
    """A text-attributed graph in memory: CSR (N+1,)/(nnz,), features (N, d), labels (N,), splits."""

    name: str
    indptr: np.ndarray
    indices: np.ndarray
    labels: np.ndarray
    split: np.ndarray
    class_names: list[str]
    x: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    graph_dir: Path | None = None

    @classmethod
    def load(cls, graph_dir: str | Path, features: bool = True, mmap: bool = True) -> "TAG":
        graph_dir = Path(graph_dir)
        meta = read_meta(graph_dir)
        indptr, indices = load_csr(graph_dir / "csr.npz")
        labels, split = node_arrays(graph_dir)
        x = None
        if features:
            xp = graph_dir / "x.npy"
            if not xp.is_file():
                raise GraphStoreError(f"{xp} is missing: rerun ingest")
            x = np.load(xp, mmap_mode="r" if mmap else None)
        return cls(meta["name"], indptr, indices, labels, split, list(meta["class_names"]), x, meta, graph_dir)

    @property
    def num_nodes(self) -> int:
        return len(self.indptr) - 1

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def mask(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self.split == split

    def index(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.mask(split))

    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    def neighbors(self, node: int) -> np.ndarray:
        return self.indices[self.indptr[node] : self.indptr[node + 1]]

    def texts(self) -> list[str]:
        """All node texts in node_id order (reads the Parquet shards)."""
        t = read_table(self.graph_dir / "nodes", ["node_id", "text"])
        out = [None] * self.num_nodes
        for i, s in zip(t["node_id"].to_numpy(), t["text"].to_pylist()):
            out[i] = s
        return out


# ----------------------------------------------------------------------------- statistics


def edge_homophily(indptr: np.ndarray, indices: np.ndarray, labels: np.ndarray) -> float | None:
    """Fraction of CSR entries between two labelled nodes whose labels agree (None if no such edge)."""
    src = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    ls, ld = labels[src], labels[indices]
    both = (ls >= 0) & (ld >= 0)
    if not both.any():
        return None
    return float((ls[both] == ld[both]).mean())


def graph_stats(indptr: np.ndarray, indices: np.ndarray, labels: np.ndarray, split: np.ndarray) -> dict:
    deg = np.diff(indptr)
    sizes = {s: int((split == s).sum()) for s in SPLITS}
    h = edge_homophily(indptr, indices, labels)
    return {
        "split_sizes": sizes,
        "num_csr_entries": int(len(indices)),
        "isolated_nodes": int((deg == 0).sum()),
        "mean_degree": float(deg.mean()) if len(deg) else 0.0,
        "max_degree": int(deg.max()) if len(deg) else 0,
        "label_homophily": None if h is None else round(h, 4),
        "labelled_nodes": int((labels >= 0).sum()),
    }


# ----------------------------------------------------------------------------- validation


def validate_store(graph_dir: str | Path, check_features: bool = True) -> dict:
    """Check every file of a store against meta.json; raise GraphStoreError naming the first problem."""
    graph_dir = Path(graph_dir)
    meta = read_meta(graph_dir)
    n, c = int(meta["num_nodes"]), len(meta["class_names"])
    nodes = read_table(graph_dir / "nodes")
    for col in NODE_SCHEMA:
        if col.name not in nodes.column_names:
            raise GraphStoreError(f"{graph_dir / 'nodes'}: column {col.name!r} is missing")
        if nodes.schema.field(col.name).type != col.type:
            raise GraphStoreError(
                f"{graph_dir / 'nodes'}: column {col.name!r} is {nodes.schema.field(col.name).type}, "
                f"expected {col.type}"
            )
    ids = nodes["node_id"].to_numpy()
    if len(ids) != n or (n and (ids.min() < 0 or ids.max() >= n)) or np.bincount(ids, minlength=n).max(
        initial=1
    ) != 1:
        raise GraphStoreError(f"{graph_dir / 'nodes'}: node_id is not exactly 0..{n - 1} once each")
    labels = nodes["label"].to_numpy()
    if len(labels) and (labels.min() < -1 or labels.max() >= c):
        raise GraphStoreError(f"{graph_dir / 'nodes'}: label outside -1..{c - 1}")
    ok = pc.fill_null(pc.is_in(nodes["split"], value_set=pa.array(SPLITS)), False).to_numpy(zero_copy_only=False)
    if not ok.all():
        raise GraphStoreError(f"{graph_dir / 'nodes'}: split {nodes['split'][int(np.argmin(ok))].as_py()!r} not in {SPLITS}")
    assigned = pc.is_in(nodes["split"], value_set=pa.array(["train", "val", "test", HOLDOUT])).to_numpy(
        zero_copy_only=False)
    if ((labels < 0) & assigned).any():
        row = int(np.argmax((labels < 0) & assigned))
        raise GraphStoreError(f"{graph_dir / 'nodes'}: node_id {ids[row]} has split {nodes['split'][row].as_py()!r} "
                              "and label -1 (train/val/test/holdout nodes need a label)")
    edges = read_table(graph_dir / "edges")
    if edges.schema != EDGE_SCHEMA:
        raise GraphStoreError(f"{graph_dir / 'edges'}: schema {edges.schema} != {EDGE_SCHEMA}")
    if edges.num_rows != int(meta["num_edges"]):
        raise GraphStoreError(f"{graph_dir / 'edges'}: {edges.num_rows} rows, meta.json says {meta['num_edges']}")
    for col in ("src", "dst"):
        v = edges[col].to_numpy()
        if len(v) and (v.min() < 0 or v.max() >= n):
            raise GraphStoreError(f"{graph_dir / 'edges'}: {col} outside 0..{n - 1}")
    indptr, indices = load_csr(graph_dir / "csr.npz")
    if len(indptr) != n + 1 or indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any():
        raise GraphStoreError(f"{graph_dir / 'csr.npz'}: indptr is not a valid CSR row pointer for {n} nodes")
    if len(indices) and (indices.min() < 0 or indices.max() >= n):
        raise GraphStoreError(f"{graph_dir / 'csr.npz'}: indices outside 0..{n - 1}")
    held = np.zeros(n, dtype=bool)
    held[read_holdout(graph_dir).nodes] = True
    if (np.diff(indptr)[held] > 0).any() or held[indices].any():
        raise GraphStoreError(f"{graph_dir / 'csr.npz'}: an entry touches a held-out node (split 'holdout'): rerun ingest")
    if check_features:
        x = np.load(graph_dir / "x.npy", mmap_mode="r")
        if x.shape != (n, int(meta["encoder"]["dim"])):
            raise GraphStoreError(f"{graph_dir / 'x.npy'}: shape {x.shape}, expected ({n}, {meta['encoder']['dim']})")
        for a in range(0, n, 262_144):
            if not np.isfinite(x[a : a + 262_144]).all():
                raise GraphStoreError(f"{graph_dir / 'x.npy'}: non-finite values in rows {a}..")
    part = graph_dir / "partition.npy"
    if meta.get("partition") and not part.is_file():
        raise GraphStoreError(f"{part} is missing but meta.json records a partition")
    return meta
