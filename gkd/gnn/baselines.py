"""Plain baselines every gkd student is measured against: no LLM, no distillation, a few lines each.

- `label_propagation`: train labels spread over the graph (gkd.gnn.refine.label_propagation);
- `mlp`: a two-layer MLP on the node features x (the graph is not used);
- `sgc`: logistic regression on Ā^K x (Wu et al. 2019, with gkd's row-normalised Ā);
- `sign`: logistic regression on [x, Āx, .., Ā^K x] (Frasca et al. 2020, the linear form).

Full-batch training on the train nodes; weight decay picked from a small grid and the epoch by val
accuracy; the seed changes the initialisation (and dropout) only, as for the students. The inputs are the
students' own (same features, labels, splits), so a gap between a student and these is the student's.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import nn

from gkd.gnn.inputs import TRAIN, VAL, GraphArrays
from gkd.gnn.propagate import hop_features, sym_adjacency
from gkd.gnn.refine import label_propagation

log = logging.getLogger(__name__)

BASELINES = ("label_propagation", "mlp", "sgc", "sign")
WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 1e-3)


def _fit_full_batch(x: torch.Tensor, y: torch.Tensor, train: np.ndarray, val: np.ndarray, hidden: int | None,
                    weight_decay: float, seed: int, epochs: int = 300, lr: float = 0.01,
                    dropout: float = 0.5) -> tuple[nn.Module, float, int]:
    """Logistic regression (hidden None) or a 2-layer MLP; returns (the best-val model, its val acc, epoch)."""
    torch.manual_seed(seed)
    c = int(y.max()) + 1
    if hidden is None:
        model = nn.Sequential(nn.Dropout(dropout), nn.Linear(x.shape[1], c))
    else:
        model = nn.Sequential(nn.Dropout(dropout), nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Dropout(dropout),
                              nn.Linear(hidden, c))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    tr, va = torch.from_numpy(train), torch.from_numpy(val)
    best = (-1.0, 0, None)
    for epoch in range(epochs):
        model.train()
        loss = nn.functional.cross_entropy(model(x[tr]), y[tr])
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            acc = float((model(x[va]).argmax(1) == y[va]).float().mean()) if len(val) else 0.0
        if acc > best[0]:
            best = (acc, epoch + 1, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    return model.eval(), best[0], best[1]


def _classifier(x: np.ndarray, g: GraphArrays, hidden: int | None, seed: int) -> tuple[np.ndarray, dict]:
    y = torch.from_numpy(np.asarray(g.y)).long()
    train = np.flatnonzero((g.split == TRAIN) & (g.y >= 0))
    val = np.flatnonzero((g.split == VAL) & (g.y >= 0))
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    best = None
    for wd in WEIGHT_DECAYS:
        model, acc, epoch = _fit_full_batch(xt, y.clamp(min=0), train, val, hidden, wd, seed)
        if best is None or acc > best[1]:
            best = (model, acc, epoch, wd)
    model, acc, epoch, wd = best
    with torch.no_grad():
        logits = torch.cat([model(xt[s : s + 65536]) for s in range(0, len(xt), 65536)]).numpy()
    return logits, {"weight_decay": wd, "best_epoch": epoch, "val_acc": round(acc, 4)}


def baseline_logits(name: str, g: GraphArrays, seed: int = 0, hops: int = 2, hidden: int = 256,
                    hop_x: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Whole-graph logits (N, C) of baseline `name` and what val chose; hop_x: precomputed [x, Āx, ..]
    (hop_features(x, .., hops)) to share between baselines."""
    t = time.perf_counter()
    if name == "label_propagation":
        logits, chosen = label_propagation(g.y, g.split, sym_adjacency(g.indptr, g.indices))
    elif name == "mlp":
        logits, chosen = _classifier(g.x, g, hidden, seed)
    elif name in ("sgc", "sign"):
        if hop_x is None:
            hop_x = hop_features(g.x, g.indptr, g.indices, hops)
        d = g.x.shape[1]
        feats = hop_x[:, hops * d : (hops + 1) * d] if name == "sgc" else hop_x
        logits, chosen = _classifier(feats, g, None, seed)
    else:
        raise ValueError(f"unknown baseline {name!r}; baselines are {BASELINES}")
    chosen["wall_s"] = round(time.perf_counter() - t, 2)
    return logits, chosen

