"""Uniform neighbour sampling over the store's CSR, as a PyG `BaseSampler` for `NodeLoader`.

Why gkd ships its own: PyG's `NeighborSampler` needs pyg-lib (not on PyPI) or torch-sparse
(source-only here). `CSRSampler` is pure torch, vectorised (no Python loop over nodes), reads the
CSR zero-copy (also read-only numpy arrays straight out of Ray's object store) and returns exactly
the `SamplerOutput` pyg-lib would; `make_sampler` picks PyG's own when pyg-lib is importable.

The `Data` given to `NodeLoader` needs an `edge_index` key, an empty (2, 0) placeholder will do
(`node_data`): PyG's `filter_data` only writes the sampled `edge_index` into keys that exist.
"""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np
import torch
import torch_geometric.typing
from torch_geometric.data import Data
from torch_geometric.sampler import BaseSampler, NodeSamplerInput, SamplerOutput

from gkd.errors import ConfigError, GraphStoreError

log = logging.getLogger(__name__)


def _as_tensor(a, name: str) -> torch.Tensor:
    """numpy or torch int32/int64 -> torch tensor sharing its memory (read-only arrays included)."""
    if isinstance(a, np.ndarray):
        with warnings.catch_warnings():  # never written to: the read-only warning does not apply
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            a = torch.from_numpy(a)
    if not isinstance(a, torch.Tensor) or a.dtype not in (torch.int32, torch.int64) or a.dim() != 1:
        raise GraphStoreError(
            f"CSR {name} must be a 1-D int32 or int64 numpy array or tensor, got "
            f"{type(a).__name__} {getattr(a, 'dtype', '')} {tuple(getattr(a, 'shape', ()))}"
        )
    return a


def _floyd(deg: torch.Tensor, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """k distinct offsets in [0, deg) per row, uniform, by Floyd's algorithm: (m,) -> (m, k) int64."""
    chosen = torch.empty((deg.numel(), k), dtype=torch.int64)
    for i in range(k):
        j = deg - k + i  # (m,) upper bound (inclusive) of this draw
        t = (torch.rand(deg.numel(), dtype=torch.float64, generator=generator) * (j + 1)).long()
        t = torch.minimum(t, j)
        if i:
            t = torch.where((chosen[:, :i] == t[:, None]).any(1), j, t)
        chosen[:, i] = t
    return chosen


def sample_neighbors(
    indptr: torch.Tensor,
    indices: torch.Tensor,
    nodes: torch.Tensor,
    fanout: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """min(deg, fanout) distinct uniform neighbours per node (all if fanout == -1).

    indptr (N+1,), indices (E,), nodes (n,) int64 -> nbr (m,) global ids, dst_pos (m,) index into
    `nodes`, edge_pos (m,) CSR edge ids; grouped by node in `nodes` order. O(m * fanout).
    """
    start = indptr[nodes].long()
    deg = indptr[nodes + 1].long() - start
    k = deg if fanout < 0 else deg.clamp(max=fanout)
    ptr = torch.zeros(len(nodes) + 1, dtype=torch.int64)
    torch.cumsum(k, 0, out=ptr[1:])
    total = int(ptr[-1])
    dst_pos = torch.repeat_interleave(torch.arange(len(nodes)), k, output_size=total)
    offset = torch.arange(total) - ptr[dst_pos]  # 0..k-1 per node: the full row when deg <= fanout
    if fanout >= 0:
        part = (deg > fanout).nonzero().squeeze(1)
        if len(part):
            slots = (ptr[part][:, None] + torch.arange(fanout)).flatten()
            offset[slots] = _floyd(deg[part], fanout, generator).flatten()
    edge_pos = start[dst_pos] + offset
    return indices[edge_pos].long(), dst_pos, edge_pos


class CSRSampler(BaseSampler):
    """Multi-hop uniform sampler over a CSR (row = node, indices = its neighbours), pyg-lib's output."""

    def __init__(self, indptr, indices, num_neighbors: list[int], seed: int = 0):
        self.indptr = _as_tensor(indptr, "indptr")
        self.indices = _as_tensor(indices, "indices")
        if len(self.indptr) < 1 or int(self.indptr[-1]) != len(self.indices):
            raise GraphStoreError(
                f"CSR indptr[-1]={int(self.indptr[-1]) if len(self.indptr) else None} does not match "
                f"len(indices)={len(self.indices)}: the csr.npz is inconsistent; rerun ingest"
            )
        if not all(isinstance(f, int) and f >= -1 for f in num_neighbors):
            raise ConfigError(f"num_neighbors must be ints >= -1 (-1 = all neighbours), got {num_neighbors}")
        self.num_nodes = len(self.indptr) - 1
        self.num_neighbors = list(num_neighbors)
        self.generator = torch.Generator()
        self._local = torch.full((self.num_nodes,), -1, dtype=torch.int64)  # global -> local, -1 = absent
        self.reset(seed)

    def reset(self, seed: int) -> None:
        """Re-seed the draws (callers do this each epoch for reproducible batches)."""
        self.seed = seed
        self.generator.manual_seed(seed)
        self._pid = os.getpid()

    def _check_process(self) -> None:
        """A forked DataLoader worker gets its own stream (seed, worker id), not a copy of the parent's."""
        if os.getpid() != self._pid:
            info = torch.utils.data.get_worker_info()
            self.generator.manual_seed(self.seed * 1_000_003 + 1 + (info.id if info else os.getpid()))
            self._pid = os.getpid()

    def sample_from_nodes(self, inputs: NodeSamplerInput) -> SamplerOutput:
        """Seeds inputs.node (B,) -> SamplerOutput(node, row, col, edge, num_sampled_nodes/edges)."""
        if inputs.input_type is not None or inputs.time is not None:
            raise NotImplementedError("CSRSampler samples homogeneous graphs without time; use PyG's NeighborSampler")
        self._check_process()
        seeds = inputs.node.long()
        if len(seeds) and (int(seeds.min()) < 0 or int(seeds.max()) >= self.num_nodes):
            raise GraphStoreError(
                f"seed node ids span [{int(seeds.min())}, {int(seeds.max())}] but the graph has "
                f"{self.num_nodes} nodes: input_nodes do not belong to this CSR"
            )
        local = self._local
        chunks, rows, cols, edges = [seeds], [], [], []
        # Seeds keep their order (duplicates too, as pyg-lib); a repeated seed maps to its first copy.
        local.scatter_reduce_(0, seeds, torch.arange(len(seeds)), "amin", include_self=False)
        begin, end = 0, len(seeds)
        try:
            for fanout in self.num_neighbors:
                nbr, dst_pos, edge_pos = sample_neighbors(self.indptr, self.indices, chunks[-1], fanout, self.generator)
                cand = nbr[local[nbr] < 0]
                pos = torch.arange(len(cand))
                local.scatter_reduce_(0, cand, pos, "amin", include_self=False)
                new = cand[local[cand] == pos]  # first occurrences, in order
                local[new] = torch.arange(end, end + len(new))
                rows.append(local[nbr])
                cols.append(dst_pos + begin)
                edges.append(edge_pos)
                chunks.append(new)
                begin, end = end, end + len(new)
        finally:
            for c in chunks:  # O(sampled) reset, never O(N)
                local[c] = -1
        empty = torch.empty(0, dtype=torch.int64)
        out = SamplerOutput(
            node=torch.cat(chunks),
            row=torch.cat(rows) if rows else empty,
            col=torch.cat(cols) if cols else empty,
            edge=torch.cat(edges) if edges else empty,
            batch=None,
            num_sampled_nodes=[len(c) for c in chunks],
            num_sampled_edges=[len(e) for e in edges],
        )
        out.metadata = (inputs.input_id, inputs.time)  # as PyG's node_sample
        return out

    def sample_from_edges(self, inputs, neg_sampling=None):
        raise NotImplementedError(
            "CSRSampler samples from seed nodes only (NodeLoader); for link prediction use "
            "PyG's NeighborSampler with pyg-lib installed (LinkNeighborLoader)"
        )

    @property
    def edge_permutation(self):
        return None


def node_data(x: torch.Tensor | None = None, y: torch.Tensor | None = None, num_nodes: int | None = None) -> Data:
    """Node-only Data for NodeLoader: x (N, d), y (N,), plus the empty (2, 0) edge_index placeholder."""
    n = num_nodes if num_nodes is not None else len(x if x is not None else y)
    return Data(x=x, y=y, edge_index=torch.empty((2, 0), dtype=torch.int64), num_nodes=n)


def sampler_name() -> str:
    """Which sampler make_sampler returns here."""
    return "PyG NeighborSampler (pyg-lib)" if torch_geometric.typing.WITH_PYG_LIB else "gkd CSRSampler"


def make_sampler(indptr, indices, num_neighbors: list[int], seed: int = 0) -> BaseSampler:
    """PyG's NeighborSampler when pyg-lib is importable, else CSRSampler; same SamplerOutput."""
    if torch_geometric.typing.WITH_PYG_LIB:
        from torch_geometric.sampler import NeighborSampler

        indptr, indices = _as_tensor(indptr, "indptr").long(), _as_tensor(indices, "indices").long()
        n = len(indptr) - 1
        row = torch.repeat_interleave(torch.arange(n), indptr.diff())
        # PyG samples incoming edges (source -> target): source = neighbour, target = CSR row
        data = Data(edge_index=torch.stack([indices, row]), num_nodes=n)
        log.debug("neighbour sampler: PyG NeighborSampler (pyg-lib), fan-outs %s", num_neighbors)
        return NeighborSampler(data, list(num_neighbors), subgraph_type="directional", is_sorted=True)
    log.debug("neighbour sampler: gkd CSRSampler (pyg-lib not importable), fan-outs %s, seed %d", num_neighbors, seed)
    return CSRSampler(indptr, indices, num_neighbors, seed=seed)
