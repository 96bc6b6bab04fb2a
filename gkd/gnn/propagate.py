"""Parameter-free propagation over the store's CSR: the row-normalised adjacency Ā = D⁻¹A and its powers.

Used by the SIGN student and the plain baselines (precomputed [x, Āx, Ā²x, ...]), label propagation and
Correct & Smooth (gkd.gnn.refine). Row `i` of the CSR holds node i's neighbours, so (Ā h)_i is the mean of
h over i's neighbours; a node without neighbours (isolated, or held out of the graph) gets zeros. Row
normalisation needs only a node's own degree, so one hop of a new node (Serve's inductive path) is the mean
of its neighbours' cached rows: the same number as in the full graph.
"""

from __future__ import annotations

import logging
import time

import numpy as np

log = logging.getLogger(__name__)


def mean_adjacency(indptr: np.ndarray, indices: np.ndarray):
    """Ā = D⁻¹A as a scipy CSR float32 matrix (N, N); rows of isolated nodes are zero."""
    import scipy.sparse as sp

    n = len(indptr) - 1
    deg = np.diff(indptr).astype(np.float32)
    data = np.repeat(np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0), np.diff(indptr))
    return sp.csr_matrix((data, np.asarray(indices), np.asarray(indptr)), shape=(n, n))


def sym_adjacency(indptr: np.ndarray, indices: np.ndarray):
    """D^-1/2 A D^-1/2 (scipy CSR float32), what Correct & Smooth propagates with."""
    import scipy.sparse as sp

    n = len(indptr) - 1
    deg = np.diff(indptr).astype(np.float32)
    inv = np.divide(1.0, np.sqrt(deg), out=np.zeros_like(deg), where=deg > 0)
    rows = np.repeat(np.arange(n), np.diff(indptr))
    data = inv[rows] * inv[np.asarray(indices)]
    return sp.csr_matrix((data.astype(np.float32), np.asarray(indices), np.asarray(indptr)), shape=(n, n))


def hop_features(x: np.ndarray, indptr: np.ndarray, indices: np.ndarray, hops: int,
                 batch_cols: int = 128) -> np.ndarray:
    """[x, Āx, ..., Ā^K x] side by side: (N, d) -> (N, (K+1) d) float32 (SIGN's precomputed inputs).

    Works through the feature columns in blocks, so the peak beyond the output is one (N, batch_cols) block."""
    t = time.perf_counter()
    n, d = x.shape
    adj = mean_adjacency(indptr, indices)
    out = np.empty((n, (hops + 1) * d), dtype=np.float32)
    for c in range(0, d, batch_cols):
        h = np.asarray(x[:, c : c + batch_cols], dtype=np.float32)
        out[:, c : c + h.shape[1]] = h
        for k in range(1, hops + 1):
            h = adj @ h
            out[:, k * d + c : k * d + c + h.shape[1]] = h
    log.info("hop features: %d nodes x %d hops x %d dims (%.1f s)", n, hops, d, time.perf_counter() - t)
    return out


def mean_of_neighbors(rows: np.ndarray, neighbors: list[np.ndarray]) -> np.ndarray:
    """One hop for nodes outside the graph: (N, d) cached rows, neighbour ids per new node -> (m, d) means
    (zeros for a node without neighbours), exactly (Ā h) had the node been in the graph."""
    out = np.zeros((len(neighbors), rows.shape[1]), dtype=np.float32)
    for j, s in enumerate(neighbors):
        if len(s):
            out[j] = np.asarray(rows[np.asarray(s)], dtype=np.float32).mean(0)
    return out
