"""The student zoo: GCN, GraphSAGE, GAT, GIN (PyG layers) and SIGN, with per-layer representations.

GCN uses row normalisation D^-1 (A + I) (see `_gcn`), so layer-wise inference is exact for every kind, and by
default a separate weight for the node's own features (`root_weight`): D^-1 (A + I) alone shrinks a node's
own text to 1/(d+1) of its input, which costs accuracy wherever the text says more than the neighbours.

SIGN (arXiv 2004.11198) is the precomputed-propagation student: its inputs are [x, Āx, ..., Ā^K x]
(gkd.gnn.propagate.hop_features, Ā = D^-1 A), each hop has its own linear branch, and a linear head reads
the branches side by side. It trains on seed rows alone (no neighbour sampling), its hop-k branch is its
"layer k" for LinguGKD's per-hop alignment, and a new node's inputs are means of its neighbours' cached
rows (Serve's inductive path).

Every model is `L` message-passing layers of width `hidden` and a linear head; with `jk` (jumping knowledge)
the head reads [relu(x W_0), h_1, .., h_L] side by side instead of h_L alone. `forward` returns the
logits and the list of layer outputs h_1..h_L, so the distillation losses can reach each layer
(LinguGKD aligns h_l to the teacher's hop-l features; Pan aligns h_L to the interpreter's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv, GCNConv, GINConv, SAGEConv
from torch_geometric.utils import add_self_loops, degree, trim_to_layer

from gkd.errors import ConfigError


def _gcn(d_in: int, hidden: int, heads: int) -> nn.Module:
    # normalised in GNN.layer: D^-1 (A + I) needs only each target's in-degree, so it is the same in a
    # sampled batch, a layer-wise inference chunk and the full graph; PyG's symmetric D^-1/2 A D^-1/2
    # would need every source node's full degree, which a chunk or a sample does not hold
    return GCNConv(d_in, hidden, normalize=False)


def _sage(d_in: int, hidden: int, heads: int) -> nn.Module:
    return SAGEConv(d_in, hidden)


def _gat(d_in: int, hidden: int, heads: int) -> nn.Module:
    if hidden % heads:
        raise ConfigError(f"distill.hidden={hidden} must be a multiple of distill.heads={heads} for GAT")
    return GATConv(d_in, hidden // heads, heads=heads)


class CappedSumGINConv(GINConv):
    """GIN whose neighbour sum is the sum a fanout-`cap` sample would give, in expectation.

    GIN sums its neighbours. Trained on neighbour samples (at most `cap` per node), it is then run over full
    neighbourhoods (layer-wise inference, Serve's new nodes), where a hub's sum is hundreds of times what the
    model ever saw: on Debian it cost 24 points (val 0.71 sampled, 0.47 full). A uniform sample of
    min(d, cap) of d neighbours has expected sum min(d, cap) / d x the full sum, so the full-neighbourhood
    sum is scaled by that: exact (factor 1) whenever d <= cap, i.e. in every sampled batch. cap None: plain GIN.
    """

    def __init__(self, mlp: nn.Module, cap: int | None = None):
        super().__init__(mlp, train_eps=True)
        self.cap = cap

    def aggregate(self, inputs: torch.Tensor, index: torch.Tensor, ptr: torch.Tensor | None = None,
                  dim_size: int | None = None) -> torch.Tensor:
        total = super().aggregate(inputs, index, ptr, dim_size)
        if self.cap is None:
            return total
        deg = torch.bincount(index, minlength=total.size(0)).clamp(min=1).to(total.dtype)
        return total * (deg.clamp(max=self.cap) / deg).unsqueeze(-1)


def _gin(d_in: int, hidden: int, heads: int, cap: int | None = None) -> nn.Module:
    return CappedSumGINConv(nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden)), cap)


CONVS = {"gcn": _gcn, "sage": _sage, "gat": _gat, "gin": _gin}
KINDS = (*CONVS, "sign")


class GNN(nn.Module):
    """(n, d_in) node features + edge_index (2, e) -> logits (n, C), [h_1..h_L] each (n, hidden)."""

    def __init__(self, kind: str, in_dim: int, hidden: int, num_classes: int, num_layers: int,
                 dropout: float = 0.5, heads: int = 4, root_weight: bool = False, jk: bool = False,
                 sum_caps: list[int] | None = None):
        super().__init__()
        if kind not in CONVS:
            raise ConfigError(f"distill.gnn={kind!r} is not one of {sorted(KINDS)}")
        self.kind, self.in_dim, self.hidden, self.num_classes = kind, in_dim, hidden, num_classes
        self.num_layers, self.dropout, self.heads = num_layers, dropout, heads
        self.root_weight = bool(root_weight and kind == "gcn")
        dims = [in_dim] + [hidden] * num_layers
        # GIN's per-layer neighbour cap (see CappedSumGINConv): the training fanouts, layer i <- hop L-i's
        self.sum_caps = [int(c) for c in sum_caps] if sum_caps and kind == "gin" else None
        if self.sum_caps is not None and len(self.sum_caps) != num_layers:
            raise ConfigError(f"sum_caps has {len(self.sum_caps)} entries for {num_layers} layers")
        self.convs = nn.ModuleList(
            _gin(dims[i], hidden, heads, self.sum_caps[i] if self.sum_caps else None) if kind == "gin"
            else CONVS[kind](dims[i], hidden, heads) for i in range(num_layers))
        # GCN's own-feature weight: h_i W_root + sum_j h_j W / (d_i + 1)
        self.roots = (nn.ModuleList(nn.Linear(dims[i], hidden, bias=False) for i in range(num_layers))
                      if self.root_weight else None)
        # jumping knowledge (concatenation): the head reads the node's own projected features and every layer
        self.jk = bool(jk)
        self.lin0 = nn.Linear(in_dim, hidden) if self.jk else None
        self.head = nn.Linear(hidden * (num_layers + 1) if self.jk else hidden, num_classes)

    def spec(self) -> dict:
        """Constructor arguments (what a loader needs to rebuild the model)."""
        return {"kind": self.kind, "in_dim": self.in_dim, "hidden": self.hidden, "num_classes": self.num_classes,
                "num_layers": self.num_layers, "dropout": self.dropout, "heads": self.heads,
                "root_weight": self.root_weight, "jk": self.jk, "sum_caps": self.sum_caps}

    def layer(self, i: int, h: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Layer i (0-based) on (n, d) -> (n, hidden); used by sampled training and layer-wise inference."""
        h = F.dropout(h, p=self.dropout, training=self.training)
        if self.kind == "gcn":
            edge_index, _ = add_self_loops(edge_index, num_nodes=h.size(0))
            weight = 1.0 / degree(edge_index[1], h.size(0), dtype=h.dtype)[edge_index[1]]
            out = self.convs[i](h, edge_index, weight)
            if self.roots is not None:  # rows 0..n_dst-1 of h are the targets (sampled and layer-wise batches)
                out = out + self.roots[i](h)
            return F.relu(out)
        return F.relu(self.convs[i](h, edge_index))

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, num_sampled_nodes: list[int] | None = None,
                num_sampled_edges: list[int] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """With the per-hop counts of a sampled batch, layer i drops the outermost hops it cannot use
        (PyG's trim_to_layer); rows 0..batch_size-1 are the seeds either way."""
        h, reps = x, []
        for i in range(self.num_layers):
            if num_sampled_nodes is not None:
                h, edge_index, _ = trim_to_layer(i, num_sampled_nodes, num_sampled_edges, h, edge_index)
            h = self.layer(i, h, edge_index)
            reps.append(h)
        if self.jk:  # trimming keeps a prefix of the rows: the last layer's rows are the first rows of each
            m = h.size(0)
            h = torch.cat([self.input_layer(x[:m])] + [r[:m] for r in reps], dim=1)
        return self.head(F.dropout(h, p=self.dropout, training=self.training)), reps

    def input_layer(self, x: torch.Tensor) -> torch.Tensor:
        """JK's hop-0 term: the node's own features projected to `hidden`."""
        return F.relu(self.lin0(F.dropout(x, p=self.dropout, training=self.training)))

    def readout(self, layers: list[torch.Tensor]) -> torch.Tensor:
        """Logits from [x, h_1, .., h_L] of the same rows (layer-wise inference and new nodes)."""
        if self.jk:
            return self.head(torch.cat([self.input_layer(layers[0])] + list(layers[1:]), dim=1))
        return self.head(layers[-1])


class SIGN(nn.Module):
    """[P_0 .. P_K] (n, (K+1) d_in), P_k = Ā^k x -> logits (n, C), [h_1..h_K] each (n, hidden).

    h_k = relu(W_k P_k) per hop; logits = head([h_0 .. h_K]). `num_layers` is K, so LinguGKD aligns the
    hop-k branch to the teacher's hop-k features as it aligns a message-passing student's layer k."""

    kind = "sign"

    def __init__(self, in_dim: int, hidden: int, num_classes: int, num_layers: int, dropout: float = 0.5):
        super().__init__()
        self.in_dim, self.hidden, self.num_classes, self.num_layers = in_dim, hidden, num_classes, num_layers
        self.dropout = dropout
        self.branches = nn.ModuleList(nn.Linear(in_dim, hidden) for _ in range(num_layers + 1))
        self.head = nn.Linear((num_layers + 1) * hidden, num_classes)

    def spec(self) -> dict:
        return {"kind": "sign", "in_dim": self.in_dim, "hidden": self.hidden, "num_classes": self.num_classes,
                "num_layers": self.num_layers, "dropout": self.dropout}

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor | None = None, num_sampled_nodes=None,
                num_sampled_edges=None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x holds the precomputed hops of each row; edges are not read (the propagation is in x)."""
        hops = x.split(self.in_dim, dim=1)
        if len(hops) != self.num_layers + 1:
            raise ValueError(f"SIGN with {self.num_layers} hops needs {(self.num_layers + 1) * self.in_dim} input "
                             f"columns, got {x.shape[1]}")
        hs = [F.relu(b(F.dropout(p, p=self.dropout, training=self.training))) for b, p in zip(self.branches, hops)]
        z = F.dropout(torch.cat(hs, dim=1), p=self.dropout, training=self.training)
        return self.head(z), hs[1:]


def build_gnn(spec: dict) -> nn.Module:
    """A student from its spec (a GNN or SIGN); specs saved before root_weight / jk / sum_caps load without them."""
    if spec["kind"] == "sign":
        return SIGN(spec["in_dim"], spec["hidden"], spec["num_classes"], spec["num_layers"], spec.get("dropout", 0.5))
    return GNN(spec["kind"], spec["in_dim"], spec["hidden"], spec["num_classes"], spec["num_layers"],
               spec.get("dropout", 0.5), spec.get("heads", 4), spec.get("root_weight", False), spec.get("jk", False),
               spec.get("sum_caps"))
