"""Teacher outputs (LinguGKD): soft labels and hierarchical features F_0..F_K for a node budget.

F_k (N, d) is the teacher's last-layer hidden state after the node and hops 0..k: `one_pass` (default) runs
the K-hop prompt once and reads F_k at the last token of hop k's section (causal attention: it sees
nothing later); `three_pass` runs one prompt per k and reads its final token. Files under <workdir>/teacher/: soft.npy (N, C) float32, feat_hop{k}.npy (N, d) float16,
covered.npy (N,) bool — rows outside the budget stay zero and are masked by covered, never filled.
Core: `TeacherReadout.run(nodes)`; Ray layer: `write_outputs` streams batches over actors.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from gkd.llm.score import (classify_prompts, encode_continuations, is_classifier, last_token_hidden, mark_tokens,
                           score_prompts, soft_labels)

log = logging.getLogger(__name__)


def projection(d_in: int, d_out: int, seed: int = 0) -> torch.Tensor:
    """(d_in, d_out) fixed Gaussian projection, for teachers too wide to store (4096-d x 2.4M x 3 hops)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d_in, d_out, generator=g) / d_out**0.5


class TeacherReadout:
    """One model + prompt builder: nodes -> soft (n, C), pred (n,), feats [(n, d)] * (K+1)."""

    def __init__(self, model, tokenizer, builder, hops: int, feature_dim: int | None = None, device="cpu", seed=0,
                 readout: str = "one_pass"):
        if readout not in ("one_pass", "three_pass"):
            raise ValueError(f"readout must be one_pass or three_pass, got {readout!r}")
        self.model, self.tokenizer, self.builder, self.hops, self.device = model, tokenizer, builder, hops, device
        self.readout = readout
        self.head = is_classifier(model)  # logits from its head; else each class name scored after the prompt
        self.cont_ids = None if self.head else encode_continuations(tokenizer, builder.class_continuations())
        d = model.config.hidden_size
        self.proj = projection(d, feature_dim, seed) if feature_dim and feature_dim < d else None

    def score(self, nodes: list[int]) -> dict:
        """Soft labels only, from the K-hop scoring prompt (evaluation; no per-hop features)."""
        prompts = [self.builder.scoring_prefix(n) for n in nodes]
        logp, _ = self._scores(prompts)
        soft = soft_labels(logp)
        return {"node_id": np.asarray(nodes, dtype=np.int64), "soft": soft, "pred": soft.argmax(1).astype(np.int32)}

    def _scores(self, prompts: list[str], marks=None):
        """(class scores (B, C) to softmax, last hidden (B, d)[, hidden at marks]) from the head or the names."""
        if self.head:
            return classify_prompts(self.model, self.tokenizer, prompts, self.device, marks=marks)
        return score_prompts(self.model, self.tokenizer, prompts, self.cont_ids, self.device, marks=marks)

    def run(self, nodes: list[int]) -> dict:
        if self.readout == "one_pass":
            return self._run_one_pass(nodes)
        feats = []
        per_node = [self.builder.hop_prompts(n) for n in nodes]  # neighbours sampled once per node
        for k in range(self.hops + 1):
            prompts = [p[k] for p in per_node]
            if k == self.hops:
                logp, h = self._scores(prompts)
            else:
                h = last_token_hidden(self.model, self.tokenizer, prompts, self.device)
            feats.append((h @ self.proj if self.proj is not None else h).numpy().astype(np.float16))
        soft = soft_labels(logp)
        return {"node_id": np.asarray(nodes, dtype=np.int64), "soft": soft, "pred": soft.argmax(1).astype(np.int32),
                **{f"feat_hop{k}": f for k, f in enumerate(feats)}}

    def _run_one_pass(self, nodes: list[int]) -> dict:
        """One forward pass per node: the K-hop prompt, F_k at the end of hop k's section, classes scored after."""
        prompts, marks = [], []
        for n in nodes:
            prompt, ends = self.builder.sectioned_prompt(n)
            prompts.append(prompt)
            marks.append(mark_tokens(self.tokenizer, prompt, ends))
        logp, _, h = self._scores(prompts, marks)
        if self.proj is not None:
            h = h @ self.proj
        soft = soft_labels(logp)
        return {"node_id": np.asarray(nodes, dtype=np.int64), "soft": soft, "pred": soft.argmax(1).astype(np.int32),
                **{f"feat_hop{k}": h[:, k].numpy().astype(np.float16) for k in range(self.hops + 1)}}


def evaluate(pred: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy and macro-F1 over the given nodes (labels >= 0)."""
    from sklearn.metrics import f1_score

    keep = labels >= 0
    if not keep.any():
        return {"acc": None, "macro_f1": None, "nodes": 0}
    return {"acc": round(float((pred[keep] == labels[keep]).mean()), 4),
            "macro_f1": round(float(f1_score(labels[keep], pred[keep], average="macro")), 4), "nodes": int(keep.sum())}


class OutputWriter:
    """Memory-mapped teacher output files, filled batch by batch (row = node id)."""

    def __init__(self, out_dir: Path, num_nodes: int, num_classes: int, hops: int, dim: int):
        out_dir.mkdir(parents=True, exist_ok=True)
        self.out_dir = out_dir
        mm = lambda name, dtype, shape: np.lib.format.open_memmap(
            out_dir / name, mode="r+" if (out_dir / name).exists() else "w+", dtype=dtype, shape=shape)
        self.soft = mm("soft.npy", np.float32, (num_nodes, num_classes))
        self.feats = [mm(f"feat_hop{k}.npy", np.float16, (num_nodes, dim)) for k in range(hops + 1)]
        self.covered = mm("covered.npy", np.bool_, (num_nodes,))

    def add(self, batch: dict) -> None:
        ids = np.asarray(batch["node_id"])
        self.soft[ids] = np.asarray(batch["soft"])
        for k, f in enumerate(self.feats):
            f[ids] = np.asarray(batch[f"feat_hop{k}"])
        for f in (self.soft, *self.feats):
            f.flush()
        self.covered[ids] = True  # marked last: a kill before this redoes the batch
        self.covered.flush()
