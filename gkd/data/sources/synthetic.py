"""Seeded stochastic-block TAG with class-bound vocabulary, up to ogbn-products size.

Ray-free core: every function takes the config and a shard number, so Ray Data can run shards in
parallel (gkd.data.ingest) and `load_synthetic` can build small graphs in one process.

Model (all from `cfg.seed`):
- a permutation `order` of the nodes; node order[k] has class k % C and popularity rank k // C
  within its class (rank k overall), so ids carry no information about classes;
- text: `words_per_node` words, each from the class's own 40-word vocabulary with probability
  `class_word_fraction`, else from a shared background vocabulary; both Zipf-distributed;
- edges: `num_edges` rows; the near end is uniform over the shard's nodes, the far end is a node
  of the same class with probability `homophily`, else any node; far ends follow a power law of
  exponent `degree_skew` over popularity ranks (skewed in-degree).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from gkd.config import SplitConfig, SyntheticSource
from gkd.data.raw import SPLITS, RawGraph, draw_holdout, draw_split

CLASS_WORDS = 40
SPLIT_CODES = SPLITS  # train, val, test, unlabeled, holdout
_ONSETS = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z", "br", "st", "tr", "pl"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]


def shard_bounds(n: int, num_shards: int, shard: int) -> tuple[int, int]:
    """[lo, hi) of rows owned by `shard` when n rows are cut into num_shards nearly equal parts."""
    return n * shard // num_shards, n * (shard + 1) // num_shards


def node_order(cfg: SyntheticSource) -> np.ndarray:
    return np.random.default_rng([cfg.seed, 7]).permutation(cfg.num_nodes)


def labels_of(cfg: SyntheticSource, order: np.ndarray | None = None) -> np.ndarray:
    """(N,) int32 class of every node."""
    order = node_order(cfg) if order is None else order
    labels = np.empty(cfg.num_nodes, dtype=np.int32)
    labels[order] = np.arange(cfg.num_nodes, dtype=np.int64) % cfg.num_classes
    return labels


def class_names(cfg: SyntheticSource) -> list[str]:
    return [f"class_{c:02d}" for c in range(cfg.num_classes)]


def vocabulary(cfg: SyntheticSource) -> tuple[np.ndarray, np.ndarray]:
    """(background words (vocab_size,), class words (C, CLASS_WORDS)) as object arrays of str."""
    rng = np.random.default_rng([cfg.seed, 11])
    need = cfg.vocab_size + cfg.num_classes * CLASS_WORDS
    words: dict[str, None] = {}
    while len(words) < need:
        k = need - len(words)
        syl = rng.integers(2, 4, size=k)
        for s in syl:
            w = "".join(_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))] for _ in range(s))
            words.setdefault(w, None)
    allw = np.array(list(words), dtype=object)
    return allw[: cfg.vocab_size], allw[cfg.vocab_size :].reshape(cfg.num_classes, CLASS_WORDS)


def powerlaw_rank(u: np.ndarray, n: np.ndarray | int, s: float) -> np.ndarray:
    """Inverse-CDF draw of ranks 0..n-1 with P(rank r) ~ (r+1)^-s, from uniforms u in [0, 1)."""
    n = np.asarray(n, dtype=np.float64)
    if s == 0:
        r = u * n
    elif abs(s - 1.0) < 1e-9:
        r = np.power(n + 1, u) - 1
    else:
        a = 1.0 - s
        r = np.power((np.power(n + 1, a) - 1) * u + 1, 1.0 / a) - 1
    return np.minimum(r.astype(np.int64), n.astype(np.int64) - 1)


def generate_nodes(cfg: SyntheticSource, shard: int, split_codes: np.ndarray | None = None) -> pa.Table:
    """Nodes of one shard: node_id, key, text, label, split (split from split_codes (N,) int8, or null)."""
    lo, hi = shard_bounds(cfg.num_nodes, cfg.num_shards, shard)
    n = hi - lo
    labels = labels_of(cfg)[lo:hi]
    background, class_words = vocabulary(cfg)
    rng = np.random.default_rng([cfg.seed, shard, 0])
    own = rng.random((n, cfg.words_per_node)) < cfg.class_word_fraction
    bg = background[powerlaw_rank(rng.random((n, cfg.words_per_node)), len(background), 1.0)]
    cw = class_words[labels[:, None], powerlaw_rank(rng.random((n, cfg.words_per_node)), CLASS_WORDS, 0.5)]
    words = np.where(own, cw, bg)
    text = [" ".join(row) for row in words]
    split = None if split_codes is None else np.asarray(SPLIT_CODES, dtype=object)[split_codes[lo:hi]]
    ids = np.arange(lo, hi, dtype=np.int64)
    return pa.table(
        {
            "node_id": ids,
            "key": pa.array([f"n{i}" for i in ids], type=pa.string()),
            "text": pa.array(text, type=pa.string()),
            "label": pa.array(labels, type=pa.int32()),
            "split": pa.array(split, type=pa.string()) if split is not None else pa.nulls(n, pa.string()),
        }
    )


def generate_edges(cfg: SyntheticSource, shard: int) -> pa.Table:
    """Edge rows of one shard: src in the shard's node range, dst per the block model."""
    lo, hi = shard_bounds(cfg.num_nodes, cfg.num_shards, shard)
    elo, ehi = shard_bounds(cfg.num_edges, cfg.num_shards, shard)
    m = ehi - elo
    order = node_order(cfg)
    labels = labels_of(cfg, order)
    c = cfg.num_classes
    rng = np.random.default_rng([cfg.seed, shard, 1])
    src = rng.integers(lo, hi, size=m, dtype=np.int64)
    same = rng.random(m) < cfg.homophily
    u = rng.random(m)
    dst = np.empty(m, dtype=np.int64)
    # same-class far end: class k's members are order[k], order[k + C], ... (popularity rank order)
    cls = labels[src[same]].astype(np.int64)
    class_size = (cfg.num_nodes - cls + c - 1) // c
    dst[same] = order[powerlaw_rank(u[same], class_size, cfg.degree_skew) * c + cls]
    dst[~same] = order[powerlaw_rank(u[~same], cfg.num_nodes, cfg.degree_skew)]
    return pa.table({"src": src, "dst": dst})


def split_codes(cfg: SyntheticSource, split_cfg: SplitConfig) -> np.ndarray:
    """(N,) int8 index into SPLIT_CODES, drawn once for the whole graph (holdout included)."""
    labels = labels_of(cfg)
    split = draw_holdout(labels, draw_split(labels, None, split_cfg), split_cfg)
    codes = np.zeros(len(split), dtype=np.int8)
    for i, name in enumerate(SPLIT_CODES):
        codes[split == name] = i
    return codes


def load_synthetic(cfg: SyntheticSource) -> RawGraph:
    """The whole graph in one process (small sizes; ingest uses the shard functions on Ray Data)."""
    nodes = pa.concat_tables([generate_nodes(cfg, s) for s in range(cfg.num_shards)])
    edges = pa.concat_tables([generate_edges(cfg, s) for s in range(cfg.num_shards)])
    return RawGraph(nodes.drop_columns(["node_id"]), edges, class_names(cfg), directed=False)
