"""Which nodes the LLM teaches on: the rationale / teacher budget, chosen where a first student is unsure.

`rationale.selector: uncertain` (default) spends `rationale.unlabeled_budget` like this:
1. a first vanilla student (the SIGN baseline of gkd.gnn.baselines: logistic regression on [x, Āx, Ā²x],
   trained on the train labels, its epoch and weight decay picked on val; seconds on a CPU) predicts
   every node;
2. the budget is split evenly over the classes that student predicts (class-balanced, so a rare class
   gets as many teacher targets as a common one);
3. within a class, nodes go by the student's margin (top-1 minus top-2 probability), least certain first,
   taken in turn from the graph's regions: each node belongs to the nearest of `rationale.regions` hubs
   (the highest-degree nodes; multi-source BFS), so the budget spreads over the graph instead of piling
   into one neighbourhood.
`selector: random` draws the budget uniformly (the old behaviour).

Never chosen: held-out nodes (unseen until the inductive evaluation), the teacher's own test evaluation
nodes and its validation nodes (so what the teacher is measured on stays apart from what it teaches).
The choice is cached by content under <workdir>/budget/, so the rationale and teacher stages (separate
processes) read the same nodes; a rerun reuses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def hub_regions(indptr: np.ndarray, indices: np.ndarray, regions: int) -> np.ndarray:
    """(N,) region of each node: the index of the nearest of the `regions` highest-degree nodes (undirected
    hops; ties go to the lower-numbered hub), -1 for a node no hub reaches."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    n = len(indptr) - 1
    if n == 0 or regions <= 0:
        return np.full(n, -1, np.int64)
    adj = csr_matrix((np.ones(len(indices), np.float32), np.asarray(indices), np.asarray(indptr)), shape=(n, n))
    deg = np.diff(indptr) + np.bincount(np.asarray(indices), minlength=n)  # in + out
    hubs = np.sort(np.argsort(-deg, kind="stable")[: min(regions, n)])
    _, _, sources = dijkstra(adj, directed=False, indices=hubs, unweighted=True, min_only=True,
                             return_predecessors=True)
    out = np.full(n, -1, np.int64)
    reached = sources >= 0
    out[reached] = np.searchsorted(hubs, sources[reached])
    return out


def choose_uncertain(probs: np.ndarray, candidates: np.ndarray, budget: int, regions: np.ndarray) -> np.ndarray:
    """Sorted ids of `budget` candidates: an even share per predicted class (classes with too few candidates
    pass their leftover on), least certain first (margin top-1 minus top-2), round-robin over regions."""
    candidates = np.asarray(candidates, np.int64)
    if budget >= len(candidates):
        return np.sort(candidates)
    if budget <= 0:
        return candidates[:0]
    p = np.asarray(probs[candidates], np.float64)
    top2 = np.sort(p, axis=1)[:, -2:] if p.shape[1] > 1 else np.concatenate([np.zeros((len(p), 1)), p], 1)
    margin = top2[:, 1] - top2[:, 0]
    pred = p.argmax(1)
    # per class: candidates in round-robin order over regions, each region least certain first
    queues = {}
    for c in np.unique(pred):
        rows = np.flatnonzero(pred == c)
        rows = rows[np.lexsort((rows, margin[rows]))]  # least certain first; ties by position
        reg = regions[candidates[rows]]
        rank = np.zeros(len(rows), np.int64)  # position of each row within its region
        for r in np.unique(reg):
            at = np.flatnonzero(reg == r)
            rank[at] = np.arange(len(at))
        queues[int(c)] = rows[np.lexsort((margin[rows], rank))]  # round r takes each region's r-th node
    chosen: list[np.ndarray] = []
    left = budget
    active = sorted(queues)
    taken = {c: 0 for c in active}
    while left > 0 and active:
        share = max(1, left // len(active))
        for c in list(active):
            if left <= 0:
                break
            q = queues[c]
            k = min(share, len(q) - taken[c], left)
            chosen.append(q[taken[c] : taken[c] + k])
            taken[c] += k
            left -= k
            if taken[c] >= len(q):
                active.remove(c)
    return np.sort(candidates[np.concatenate(chosen)]) if chosen else candidates[:0]


def probe_probs(graph_dir: Path, seed: int, split: np.ndarray) -> tuple[np.ndarray, dict]:
    """A first vanilla student's (N, C) probabilities: the SIGN baseline on the train labels of `split` (the
    split the teacher works with), chosen on val."""
    import dataclasses

    import torch

    from gkd.data.store import TAG
    from gkd.gnn.baselines import baseline_logits
    from gkd.gnn.inputs import graph_arrays, split_codes

    g = graph_arrays(TAG.load(graph_dir, features=True))
    g = dataclasses.replace(g, split=split_codes(np.asarray(split)))
    logits, chosen = baseline_logits("sign", g, seed=seed)
    return torch.softmax(torch.as_tensor(logits, dtype=torch.float32), -1).numpy(), chosen


def _key(cfg, split: np.ndarray, exclude: np.ndarray) -> str:
    stage = Path(cfg.graph_dir) / "stage.json"
    graph = stage.read_text() if stage.is_file() else str(Path(cfg.graph_dir).resolve())
    r = cfg.rationale
    what = {"graph": graph, "splits": sorted(r.splits), "budget": r.unlabeled_budget, "seed": r.seed,
            "selector": r.selector, "regions": r.regions,
            "exclude": hashlib.sha256(np.sort(exclude).astype(np.int64).tobytes()).hexdigest(),
            "split": hashlib.sha256("\n".join(map(str, split)).encode()).hexdigest()}
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def teaching_budget(cfg, labels: np.ndarray, split: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Sorted node ids the LLM teaches on: every node of rationale.splits, plus rationale.unlabeled_budget
    others chosen by rationale.selector, never holdout nodes nor `exclude` (the teacher's eval/val nodes)."""
    from gkd.llm.rationale import budget_pools, select_budget

    r = cfg.rationale
    exclude = np.asarray(exclude if exclude is not None else [], np.int64)
    base, rest = budget_pools(split, r.splits, exclude)
    if r.selector == "random" or r.unlabeled_budget == 0 or r.unlabeled_budget >= len(rest):
        return select_budget(labels, split, r, exclude)
    path = Path(cfg.workdir) / "budget" / f"{_key(cfg, split, exclude)}.npz"
    if path.is_file():
        return np.load(path)["nodes"]
    probs, chosen = probe_probs(cfg.graph_dir, r.seed, split)
    regions = hub_regions(*_csr(cfg), r.regions)
    extra = choose_uncertain(probs, rest, r.unlabeled_budget, regions)
    nodes = np.sort(np.concatenate([base, extra]).astype(np.int64))
    pred = probs[extra].argmax(1)
    info = {"probe": "sign", "probe_val": chosen, "classes_covered": int(len(np.unique(pred))),
            "regions_covered": int(len(np.unique(regions[extra]))), "regions": int(r.regions),
            "mean_margin_chosen": float(np.mean(np.sort(probs[extra], 1)[:, -1] - np.sort(probs[extra], 1)[:, -2]))}
    log.info("teaching budget: %d nodes chosen where the probe student is least certain (%s)", len(extra), info)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
    np.savez(tmp, nodes=nodes, info=json.dumps(info))
    os.replace(tmp, path)
    return nodes


def _csr(cfg) -> tuple[np.ndarray, np.ndarray]:
    from gkd.data.store import TAG

    tag = TAG.load(cfg.graph_dir, features=False)
    return np.asarray(tag.indptr), np.asarray(tag.indices)
