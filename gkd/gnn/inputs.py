"""Everything the distillation workers read: a `StudentInputs` of numpy arrays (put once in the object store).

The teacher covers a budget of nodes, not the graph, so its outputs are stored compactly:
`TeacherTargets.pos` (N,) int32 maps a node to its row in `soft` (M, C) / `feats` (K+1, M, d), -1 when
the teacher never saw it; losses are masked by `pos >= 0`, uncovered rows are never filled with noise.
Pan's rationale inputs are compact the same way (`kw_pos` -> `kw_emb`). Every field is a numpy array
(or an int); `gkd.gnn.train.tensors` gives the same objects with torch tensors viewing those arrays.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gkd.config import EncoderConfig, PanConfig
from gkd.data.store import TAG
from gkd.errors import DataError

log = logging.getLogger(__name__)

SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "unlabeled": 3, "holdout": 4}
TRAIN, VAL, TEST, UNLABELED, HOLDOUT = 0, 1, 2, 3, 4  # HOLDOUT: out of the graph (no edges), for inductive eval


@dataclass
class GraphArrays:
    """The graph: x (N, d) float32, y (N,) int64 (-1 unlabelled), split (N,) int8 codes, CSR indptr (N+1,) /
    indices (E,) int64 (in-neighbours of each node), num_classes C."""

    x: np.ndarray
    y: np.ndarray
    split: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    num_classes: int
    # the SIGN student's precomputed [x, Āx, .., Ā^K x] (N, (K+1) d) float32; None for message-passing students
    hop_x: np.ndarray | None = None

    @property
    def num_nodes(self) -> int:
        return len(self.indptr) - 1

    def features(self, sign: bool) -> np.ndarray:
        """The rows a student reads: hop_x for SIGN, x otherwise."""
        if sign and self.hop_x is None:
            raise DataError("the SIGN student needs GraphArrays.hop_x (gkd.gnn.propagate.hop_features)")
        return self.hop_x if sign else self.x


@dataclass
class TeacherTargets:
    """The tuned teacher on the nodes it covered: pos (N,) int32 -> row of soft (M, C) float32 and
    feats (K+1, M, d) float16 (per-hop features), -1 for a node the teacher never saw."""

    pos: np.ndarray
    soft: np.ndarray
    feats: np.ndarray
    # calibrated weighting (distill.teacher_weighting): (M,) float32 KD / pseudo-label weight, the teacher's
    # precision at the row's confidence (0 below the floor), and (M,) bool rows whose class may serve as a
    # LinguGKD negative; None: every row weighs 1 and its argmax is its class
    weight: np.ndarray | None = None
    confident: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.feats.shape[2])

    @property
    def hops(self) -> int:
        return int(self.feats.shape[0] - 1)


@dataclass
class RationaleTargets:
    """Pan's rationale-augmented inputs: pos (N,) -> soft (R, C) the rationale LLM's soft labels; kw_pos (N,)
    -> kw_emb (R', d) keyword embeddings; key_codes (E',) sorted dst * N + src of key-neighbour edges;
    sem_score / struct_score (N,) float32, NaN where a node has no rationale (see `rationale_arrays`)."""

    pos: np.ndarray
    soft: np.ndarray
    kw_pos: np.ndarray
    kw_emb: np.ndarray
    key_codes: np.ndarray
    sem_score: np.ndarray
    struct_score: np.ndarray


@dataclass
class SoftLabels:
    """The LLM's soft labels for the soft / pseudo-label losses: pos (N,) int32 -> row of soft (M, C), -1 for none;
    weight (M,) float32 per row (the teacher's calibrated precision; None: 1)."""

    pos: np.ndarray
    soft: np.ndarray
    weight: np.ndarray | None = None


@dataclass
class InterpreterTargets:
    """Pan's frozen interpreter on every node, logits (N, C) / hidden (N, h) float32, and the (N,) float32
    weights (1 on the chosen nodes) of the semantic and structural alignment sets."""

    logits: np.ndarray
    hidden: np.ndarray
    sem_w: np.ndarray
    struct_w: np.ndarray


@dataclass
class RefinedTargets:
    """GLNN's targets: the refined whole-graph class probabilities probs (N, C) float32 and a per-node weight
    (N,) float32 (class-balanced; 0 where a node must not be fitted: val and held-out nodes)."""

    probs: np.ndarray
    weight: np.ndarray


@dataclass
class StudentInputs:
    """What one distillation run reads; a part is None when its method does not use it (or it is not made yet)."""

    graph: GraphArrays
    teacher: TeacherTargets | None = None
    rationale: RationaleTargets | None = None
    llm_soft: SoftLabels | None = None
    interpreter: InterpreterTargets | None = None
    refined: RefinedTargets | None = None


def split_codes(split: np.ndarray) -> np.ndarray:
    """(N,) split names -> (N,) int8 codes (TRAIN, VAL, TEST, UNLABELED, HOLDOUT)."""
    out = np.full(len(split), UNLABELED, dtype=np.int8)
    for name, code in SPLIT_CODES.items():
        out[split == name] = code
    return out


def graph_arrays(tag: TAG) -> GraphArrays:
    """CSR, features (N, d) float32, labels (N,) int64, split codes (N,) int8."""
    if tag.x is None:
        raise DataError(f"{tag.graph_dir}/x.npy is not loaded: the student needs node features")
    return GraphArrays(x=np.ascontiguousarray(tag.x, dtype=np.float32), y=tag.labels.astype(np.int64),
                       split=split_codes(tag.split), indptr=np.asarray(tag.indptr, dtype=np.int64),
                       indices=np.asarray(tag.indices, dtype=np.int64), num_classes=tag.num_classes)


def label_rate_split(codes: np.ndarray, labels: np.ndarray, k: int, pool: int | None, seed: int) -> tuple[np.ndarray, dict]:
    """(N,) split codes with k TRAIN nodes per class: the class's train nodes, then its test nodes, in a
    seeded order. The first max(k, pool) of that order leave TEST (the rest of them become UNLABELED), so
    a sweep over k scores every rate on one test set. Returns (codes, counts)."""
    out = codes.copy()
    rng = np.random.default_rng([seed, 47])
    short = 0
    for c in np.unique(labels[labels >= 0]):
        train = np.flatnonzero((codes == TRAIN) & (labels == c))
        test = np.flatnonzero((codes == TEST) & (labels == c))
        order = np.concatenate([train[rng.permutation(len(train))], test[rng.permutation(len(test))]])
        taken = order[: max(k, pool or k)]
        out[train] = UNLABELED
        out[taken] = UNLABELED
        out[taken[:k]] = TRAIN
        short += int(len(order) < k)
    counts = {"labels_per_class": k, "label_pool_per_class": pool or k, "train_nodes": int((out == TRAIN).sum()),
              "test_nodes": int((out == TEST).sum()), "classes_short_of_labels": short}
    return out, counts


def teacher_arrays(teacher_dir: Path, num_nodes: int, num_classes: int, weighting: str = "uniform",
                   floor: float = 0.0, negative_precision: float = 1.0) -> tuple[TeacherTargets, dict]:
    """teacher/{covered,taught,soft,feat_hop*}.npy -> (pos (N,), soft (M, C), feats (K+1, M, d) float16[, weight,
    confident], counts). Rows are the taught nodes only (taught.npy; a teacher dir without it: every covered
    node), so the teacher's eval and val nodes are never targets. weighting="calibrated" reads
    calibration.json: weight = precision at the row's confidence, 0 below `floor` (counted as dropped);
    confident = precision >= negative_precision."""
    teacher_dir = Path(teacher_dir)
    cov_path = teacher_dir / "covered.npy"
    if not cov_path.is_file():
        raise DataError(f"{cov_path} is missing: run `gkd teacher` first (or choose distill.method=vanilla)")
    covered = np.load(cov_path)
    taught_path = teacher_dir / "taught.npy"
    if taught_path.is_file():
        taught = np.load(taught_path)
        if taught.shape != covered.shape or (taught & ~covered).any():
            raise DataError(f"{taught_path} does not fit covered.npy (shape {taught.shape}, or nodes marked taught "
                            "without outputs); rerun `gkd teacher`")
        covered = taught
    soft = np.load(teacher_dir / "soft.npy", mmap_mode="r")
    hops = sorted(teacher_dir.glob("feat_hop*.npy"), key=lambda p: int(p.stem.removeprefix("feat_hop")))
    if covered.shape != (num_nodes,) or soft.shape != (num_nodes, num_classes):
        raise DataError(f"{teacher_dir}: covered {covered.shape} / soft {soft.shape} do not match the graph's "
                        f"{num_nodes} nodes x {num_classes} classes; rerun `gkd teacher` on this graph")
    if not hops:
        raise DataError(f"{teacher_dir} has no feat_hop*.npy files: rerun `gkd teacher`")
    idx = np.flatnonzero(covered)
    if len(idx) == 0:
        raise DataError(f"{cov_path} marks no node as covered: the teacher stage wrote no outputs")
    t_soft = np.asarray(soft[idx], dtype=np.float32)
    bad = ~np.isfinite(t_soft).all(1) | (t_soft.sum(1) <= 0)
    if bad.any():
        raise DataError(f"{teacher_dir}/soft.npy: {int(bad.sum())} covered rows are not distributions "
                        f"(first node {int(idx[bad][0])}); rerun `gkd teacher`")
    feats = np.stack([np.asarray(np.load(p, mmap_mode="r")[idx], dtype=np.float16) for p in hops])
    pos = np.full(num_nodes, -1, dtype=np.int32)
    pos[idx] = np.arange(len(idx), dtype=np.int32)
    counts = {"teacher_taught": int(len(idx))}
    weight = confident = None
    if weighting == "calibrated":
        from gkd.llm.calibration import precision_at

        cal_path = teacher_dir / "calibration.json"
        if not cal_path.is_file():
            raise DataError(f"{cal_path} is missing (a teacher stage from before calibration, or teacher.val_budget "
                            "= 0): rerun `gkd teacher` with val nodes, or set distill.teacher_weighting=uniform")
        prec = precision_at(json.loads(cal_path.read_text()), t_soft)
        weight = np.where(prec >= floor, prec, 0.0).astype(np.float32)
        confident = prec >= negative_precision
        counts.update(teacher_dropped_below_floor=int((weight == 0).sum()),
                      teacher_weight_mean=round(float(weight.mean()), 4),
                      teacher_confident=int(confident.sum()))
    return TeacherTargets(pos=pos, soft=t_soft, feats=feats, weight=weight, confident=confident), counts


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
    return (a * b).sum(-1)


def keyword_embeddings(table, encoder: EncoderConfig, cache: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rationale rows -> (nodes with keywords (R,), their joined keywords embedded by the graph's encoder (R, d))."""
    from gkd.data.encode import make_encoder

    nodes, texts = [], []
    for n, kws in zip(table["node_id"].to_pylist(), table["keywords"].to_pylist()):
        words = [k.strip() for k in kws or [] if k and k.strip()]
        if words:
            nodes.append(n)
            texts.append(", ".join(words))
    nodes = np.asarray(nodes, dtype=np.int64)
    if cache is not None and cache.is_file():
        got = np.load(cache)
        if np.array_equal(got["nodes"], nodes):
            return nodes, got["emb"]
    emb = make_encoder(encoder).encode(texts) if texts else np.zeros((0, 1), np.float32)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, nodes=nodes, emb=emb)
    return nodes, np.asarray(emb, dtype=np.float32)


def rationale_arrays(table, graph: GraphArrays, encoder: EncoderConfig, cfg: PanConfig,
                     cache: Path | None = None) -> tuple[RationaleTargets, dict]:
    """Pan's rationale-augmented inputs -> (targets, counts).

    kw_pos (N,) -> kw_emb (R, d): keyword embeddings; key_codes: sorted dst * N + src of key-neighbour
    edges (up-weighted in the interpreter); pos (N,) -> soft (R', C): the LLM's soft labels;
    sem_score / struct_score (N,): how far the keywords moved a node's input, and the share of its
    neighbourhood weight the key neighbours changed (NaN where there is no rationale).
    """
    indptr, indices, x = graph.indptr, graph.indices, graph.x
    n = len(indptr) - 1
    ids = np.asarray(table["node_id"].to_numpy(), dtype=np.int64)
    if len(ids) and (ids.min() < 0 or ids.max() >= n):
        raise DataError(f"rationale rows name node ids outside 0..{n - 1}: were they made for another graph?")
    counts = {"rationale_nodes": int(len(ids))}

    r_pos = np.full(n, -1, dtype=np.int32)
    r_soft = np.asarray(table["soft"].to_pylist(), dtype=np.float32).reshape(len(ids), -1)
    if r_soft.shape[1] != graph.num_classes and len(ids):
        raise DataError(f"rationale soft labels have {r_soft.shape[1]} classes, the graph {graph.num_classes}")
    r_pos[ids] = np.arange(len(ids), dtype=np.int32)

    kw_nodes, kw_emb = keyword_embeddings(table, encoder, cache)
    if len(kw_nodes) and kw_emb.shape[1] != x.shape[1]:
        raise DataError(f"keyword embeddings are {kw_emb.shape[1]}-d but x.npy is {x.shape[1]}-d: "
                        "ingest.encoder must be the encoder the graph was built with")
    kw_pos = np.full(n, -1, dtype=np.int32)
    kw_pos[kw_nodes] = np.arange(len(kw_nodes), dtype=np.int32)
    counts["keyword_nodes"] = int(len(kw_nodes))

    sem = np.full(n, np.nan, dtype=np.float32)
    if len(kw_nodes):
        sem[kw_nodes] = 1.0 - _cosine(kw_emb, x[kw_nodes])

    # key neighbours: the LLM's own (only real edges count), else the neighbours most similar to the keywords
    codes, llm_nodes, fallback_nodes = [], 0, 0
    struct = np.full(n, np.nan, dtype=np.float32)
    for node, named in zip(ids.tolist(), table["key_neighbors"].to_pylist()):
        nbrs = indices[indptr[node] : indptr[node + 1]]
        keys = np.intersect1d(np.asarray(named or [], dtype=np.int64), nbrs)
        if len(keys):
            llm_nodes += 1
        elif cfg.fallback_key_neighbors and len(nbrs):
            query = kw_emb[kw_pos[node]] if kw_pos[node] >= 0 else x[node]
            sim = _cosine(x[nbrs], query[None, :])
            keys = np.unique(nbrs[np.argsort(-sim, kind="stable")[: cfg.fallback_key_neighbors]])
            fallback_nodes += 1
        keys = keys[keys != node]
        codes.append(node * n + keys)
        extra = len(keys) * (cfg.key_edge_repeat - 1)
        struct[node] = extra / max(len(nbrs) + extra, 1)
    key_codes = np.unique(np.concatenate(codes)) if codes else np.zeros(0, dtype=np.int64)
    counts.update(llm_key_neighbor_nodes=llm_nodes, fallback_key_neighbor_nodes=fallback_nodes,
                  key_edges=int(len(key_codes)))
    if fallback_nodes:
        log.info("pan: %d of %d rationale nodes named no valid key neighbour; used the %d most keyword-similar "
                 "neighbours instead", fallback_nodes, len(ids), cfg.fallback_key_neighbors)
    out = RationaleTargets(pos=r_pos, soft=r_soft, kw_pos=kw_pos, kw_emb=kw_emb.astype(np.float32),
                           key_codes=key_codes.astype(np.int64), sem_score=sem, struct_score=struct)
    return out, counts


def read_teacher_accuracy(teacher_dir: Path) -> dict:
    """The tuned teacher's accuracy/macro-F1 on its eval nodes (teacher/metrics.json), {} if absent."""
    path = Path(teacher_dir) / "metrics.json"
    if not path.is_file():
        return {}
    m = json.loads(path.read_text())
    return {k: m[k] for k in ("zero_shot", "tuned", "test_nodes") if k in m}
