"""Full-neighbourhood, layer-wise inference for every node (no sampling noise in the reported numbers).

Layer l is computed for all N nodes in chunks before layer l+1 starts, each chunk seeing all its
neighbours (fan-out -1), so the cost is L passes over the edges instead of an L-hop explosion.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from gkd.gnn.models import GNN

log = logging.getLogger(__name__)


@torch.no_grad()
def layerwise_inference(gnn: GNN, features, indptr: np.ndarray, indices: np.ndarray, batch_size: int = 4096,
                        device: str | torch.device = "cpu", edge_hook=None,
                        what: str = "inference", progress_every_s: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """features(n_id) -> (n, d) input rows; returns logits (N, C) and the last layer's h_L (N, hidden), float32.

    edge_hook(n_id, edge_index) -> edge_index lets Pan's interpreter up-weight key-neighbour edges.
    Logs each finished layer, and its progress (nodes, rate, eta) every `progress_every_s` within a layer
    (a layer over millions of nodes takes minutes on a CPU).
    """
    from torch_geometric.sampler import NodeSamplerInput

    from gkd.gnn.sampler import CSRSampler

    gnn = gnn.to(device).eval()
    n = len(indptr) - 1
    sampler = CSRSampler(indptr, indices, [-1])
    h = None
    t0 = time.perf_counter()
    for layer in range(gnn.num_layers):
        out = torch.empty((n, gnn.hidden), dtype=torch.float32)
        t_layer = t_log = time.perf_counter()
        for start in range(0, n, batch_size):
            if time.perf_counter() - t_log >= progress_every_s and start:
                t_log = time.perf_counter()
                rate = start / (t_log - t_layer)
                log.info("%s: layer %d/%d, %d/%d nodes (%.0f nodes/s, eta %.0f s for this layer)", what, layer + 1,
                         gnn.num_layers, start, n, rate, (n - start) / rate)
            chunk = torch.arange(start, min(start + batch_size, n))
            sub = sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=chunk))
            x_sub = features(sub.node).float() if layer == 0 else h[sub.node]
            edge_index = torch.stack([sub.row, sub.col])
            if edge_hook is not None:
                edge_index = edge_hook(sub.node, edge_index)
            out[start : start + len(chunk)] = gnn.layer(layer, x_sub.to(device), edge_index.to(device))[
                : len(chunk)
            ].cpu()
        h = out
        log.info("%s: layer %d/%d for %d nodes (%.1f s)", what, layer + 1, gnn.num_layers, n,
                 time.perf_counter() - t0)
    logits = torch.cat([gnn.head(h[s : s + batch_size].to(device)).cpu() for s in range(0, n, batch_size)])
    return logits.numpy(), h.numpy()
