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
    outs = []
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
        outs.append(out)
        log.info("%s: layer %d/%d for %d nodes (%.1f s)", what, layer + 1, gnn.num_layers, n,
                 time.perf_counter() - t0)
    if getattr(gnn, "jk", False):  # the head reads the input and every layer
        logits = torch.cat([gnn.readout([features(torch.arange(s, min(s + batch_size, n))).float().to(device)]
                                        + [o[s : s + batch_size].to(device) for o in outs]).cpu()
                            for s in range(0, n, batch_size)])
    else:
        logits = torch.cat([gnn.head(h[s : s + batch_size].to(device)).cpu() for s in range(0, n, batch_size)])
    return logits.numpy(), h.numpy()


@torch.no_grad()
def sign_inference(model, hop_x: np.ndarray, batch_size: int = 4096,
                   device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """SIGN over its precomputed rows (N, (K+1) d) -> logits (N, C) and its last hop's branch h_K (N, hidden)."""
    model = model.to(device).eval()
    logits, hidden = [], []
    for s in range(0, len(hop_x), batch_size):
        out, reps = model(torch.from_numpy(np.asarray(hop_x[s : s + batch_size], dtype=np.float32)).to(device))
        logits.append(out.cpu())
        hidden.append(reps[-1].cpu())
    return torch.cat(logits).numpy(), torch.cat(hidden).numpy()


# ----------------------------------------------------------------------------- every layer, and new nodes


class _OneLayer(torch.nn.Module):
    """Layer `i` of a GNN as a one-layer model, so `layerwise_inference` hands back every layer's output."""

    num_layers = 1

    def __init__(self, gnn, i: int):
        super().__init__()
        self.gnn, self.i, self.hidden = gnn, i, gnn.hidden
        self.head = torch.nn.Identity()

    def layer(self, _: int, h: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.gnn.layer(self.i, h, edge_index)


def layer_inputs(gnn, x, indptr: np.ndarray, indices: np.ndarray, batch_size: int = 4096,
                 device: str = "cpu") -> tuple[list, np.ndarray]:
    """Full-neighbourhood inference keeping every layer: ([H_0 = x, H_1 .. H_{L-1}], logits (N, C)) float32.

    SIGN: [P_0 = x, P_1 = Āx, .., P_{K-1}] (what a new node's hops are means of) and its logits."""
    if gnn.kind == "sign":
        from gkd.gnn.propagate import hop_features

        hop_x = hop_features(np.asarray(x, dtype=np.float32), indptr, indices, gnn.num_layers)
        logits, _ = sign_inference(gnn, hop_x, batch_size, device)
        d = gnn.in_dim
        return [hop_x[:, k * d : (k + 1) * d] for k in range(gnn.num_layers)], logits
    gnn = gnn.to(device).eval()
    hidden, h = [x], x
    for i in range(gnn.num_layers):
        rows = (lambda n_id, h=h: torch.from_numpy(np.asarray(h[n_id.numpy()], dtype=np.float32)))
        h, _ = layerwise_inference(_OneLayer(gnn, i), rows, indptr, indices, batch_size, device,
                                   what=f"layer inputs, layer {i + 1}")
        hidden.append(h)
    with torch.no_grad():
        logits = torch.cat([gnn.readout([torch.from_numpy(np.asarray(H[s : s + batch_size], dtype=np.float32))
                                         .to(device) for H in hidden]).cpu()
                            for s in range(0, len(h), batch_size)])
    return hidden[:-1], logits.numpy()


@torch.no_grad()
def inductive_logits(gnn, hidden: list, x_new: np.ndarray, neighbors: list[np.ndarray],
                     device: str = "cpu") -> np.ndarray:
    """New nodes x_new (m, d_in) with neighbour ids S_j into the graph -> logits (m, C).

    hidden[l] (N, d_l) is the graph's input to layer l (hidden[0] = x). Row j of layer l's batch is
    new node j, then the distinct neighbours' cached rows; edges run neighbour -> new node only.
    SIGN: hop k of a new node is the mean of its neighbours' hop k-1 rows (exact: Ā is row-normalised).
    """
    nbrs = [np.unique(np.asarray(s, dtype=np.int64)) for s in neighbors]
    if gnn.kind == "sign":
        from gkd.gnn.propagate import mean_of_neighbors

        hops = [np.asarray(x_new, dtype=np.float32)] + [mean_of_neighbors(hidden[k], nbrs)
                                                        for k in range(gnn.num_layers)]
        logits, _ = sign_inference(gnn, np.concatenate(hops, axis=1), len(x_new) or 1, device)
        return logits
    m = len(x_new)
    flat = np.concatenate(nbrs) if nbrs else np.zeros(0, dtype=np.int64)
    uniq, pos = np.unique(flat, return_inverse=True)
    src = torch.from_numpy(m + pos.reshape(-1))
    dst = torch.from_numpy(np.repeat(np.arange(m), [len(s) for s in nbrs]))
    edge_index = torch.stack([src, dst]).long().to(device)
    gnn = gnn.to(device).eval()
    h = torch.as_tensor(np.asarray(x_new, dtype=np.float32)).to(device)
    layers = [h]
    for i in range(gnn.num_layers):
        rows = torch.from_numpy(np.asarray(hidden[i][uniq], dtype=np.float32))  # (|S|, d_i), also for S empty
        h = gnn.layer(i, torch.cat([h, rows.to(device)]), edge_index)[:m]
        layers.append(h)
    return gnn.readout(layers).cpu().numpy()


def holdout_logits(model, graph, holdout, device: str = "cpu", batch_size: int = 4096, layers=None) -> np.ndarray:
    """The model's logits (m, C) for the nodes held out of the graph at ingest, classified as new nodes
    (their features + their edges into the graph: Serve's inductive path). layers: the model's
    `layer_inputs` on the graph when already computed."""
    hidden = (layers or layer_inputs(model, graph.x, graph.indptr, graph.indices, batch_size, device))[0]
    return inductive_logits(model, hidden, np.asarray(graph.x[holdout.nodes]), holdout.neighbors, device)


def holdout_accuracy(model, graph, holdout, device: str = "cpu", batch_size: int = 4096, layers=None) -> dict:
    """`holdout_logits` scored against the held-out labels -> {acc, macro_f1, nodes} (None without any)."""
    from gkd.gnn.distill import evaluate_logits

    if holdout is None or len(holdout.nodes) == 0:
        return {"acc": None, "macro_f1": None, "nodes": 0}
    logits = holdout_logits(model, graph, holdout, device, batch_size, layers)
    return evaluate_logits(logits, np.asarray(holdout.labels), np.arange(len(holdout.nodes)))
