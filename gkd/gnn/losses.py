"""Distillation losses (Ray-free, pure torch): vanilla CE, classic KD, LinguGKD, Pan et al.

Callers pass only the rows that matter (the seed nodes of a mini-batch). Every loss returns a
0-dim tensor; when its mask or selection is empty it is exactly 0.0 and still connected to the
autograd graph, so backward and DDP's gradient hooks work on a batch without covered nodes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_EPS = 1e-8  # clamp for teacher probabilities before log


def _zero(*tensors: torch.Tensor) -> torch.Tensor:
    """() exact 0.0 connected to every input that requires grad (sum of an empty slice: no NaN leaks)."""
    out = tensors[0].reshape(-1)[:0].sum()
    for t in tensors[1:]:
        if t.requires_grad:
            out = out + t.reshape(-1)[:0].sum().to(out.dtype)
    return out


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """logits (n, C), y (n,) long, mask (n,) bool -> () mean CE over masked rows (vanilla GNN)."""
    if not bool(mask.any()):
        return _zero(logits)
    return F.cross_entropy(logits[mask], y[mask].long())


def kd_kl(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float, mask: torch.Tensor,
          weight: torch.Tensor | None = None) -> torch.Tensor:
    """(n, C) logits, (n, C) teacher probs, mask (n,) -> () T^2 * batchmean KL(p_T || p_S) at temperature T.

    p_T = softmax(log(clamp(teacher_probs)) / T), p_S = softmax(student / T). All-zero teacher rows are invalid: mask them out.
    weight (n,): each masked row's KL is scaled by it (the teacher's calibrated precision there); the mean is
    still over the masked rows, so an unreliable teacher teaches less, not louder.
    """
    if not bool(mask.any()):
        return _zero(student_logits)
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits[mask] / t, dim=-1)
    teacher = teacher_probs[mask].to(log_p_s.dtype)
    log_p_t = F.log_softmax(teacher.clamp_min(_EPS).log() / t, dim=-1)
    rows = F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(1)
    if weight is not None:
        rows = rows * weight[mask].to(rows.dtype)
    return rows.sum() / log_p_s.shape[0] * (t * t)


def weighted_kl(student_logits: torch.Tensor, target_probs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(n, C) logits, (n, C) target probs, (n,) weights >= 0 -> () sum_i w_i KL(p_i || softmax(s_i)) / sum_i w_i."""
    keep = weight > 0
    if not bool(keep.any()):
        return _zero(student_logits)
    log_p_s = F.log_softmax(student_logits[keep], dim=-1)
    target = target_probs[keep].to(log_p_s.dtype)
    kl = (target * (target.clamp_min(_EPS).log() - log_p_s)).sum(1)
    w = weight[keep].to(kl.dtype)
    return (w * kl).sum() / w.sum()


def pseudo_label_ce(
    logits: torch.Tensor, teacher_probs: torch.Tensor, threshold: float, mask: torch.Tensor,
    weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """(n, C) logits, (n, C) teacher probs, mask (n,) -> (() mean CE to argmax teacher, rows used).

    Uses masked rows whose max teacher probability is >= threshold; weight (n,) scales each row's CE (the
    teacher's calibrated precision), the mean staying over the rows used.
    """
    conf, pseudo = teacher_probs.max(dim=-1)
    used = mask & (conf >= threshold)
    n_used = int(used.sum())
    if n_used == 0:
        return _zero(logits), 0
    ce = F.cross_entropy(logits[used], pseudo[used], reduction="none")
    if weight is not None:
        ce = ce * weight[used].to(ce.dtype)
    return ce.mean(), n_used


def info_nce(z: torch.Tensor, f: torch.Tensor, classes: torch.Tensor, temperature: float = 0.07,
             strict: bool = False) -> torch.Tensor:
    """z (n, d) student, f (n, d) teacher (already projected), classes (n,) long -> () LinguGKD InfoNCE.

    sim = norm(z) @ norm(f).T / tau; positive: the diagonal; negatives: nodes of another class; other
    same-class nodes are masked out. Class -1 (unknown): with strict=False it is a negative for every node
    but itself; with strict=True a pair is a negative only when both classes are known (gold labels or
    calibrated-confident teacher targets) and differ, so no unknown node is pushed away as a false negative.
    A row with no negatives contributes 0 (its softmax has only the positive).
    """
    n = z.shape[0]
    if n == 0:
        return _zero(z, f)
    zn = F.normalize(z, dim=-1)
    fn = F.normalize(f.to(z.dtype), dim=-1)
    sim = zn @ fn.T / float(temperature)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    same_class = (classes[:, None] == classes[None, :]) & (classes[:, None] >= 0)
    if strict:
        known = classes >= 0
        same_class = same_class | ~(known[:, None] & known[None, :])
    sim = sim.masked_fill(same_class & ~eye, float("-inf"))
    return -torch.diagonal(F.log_softmax(sim, dim=-1)).mean()


MIXES = ("softmax", "uncertainty", "fixed")


class LayerAdaptiveAlignment(nn.Module):
    """LinguGKD layer-adaptive alignment: projector P_l per layer, softmax layer weights, CE/distill mix.

    mix="softmax" is the LinguGKD reference: softmax(m)[0] * ce + softmax(m)[1] * distill with m
    learnable. Its gradient always moves weight to the smaller loss, so it can switch CE off (seen on
    Debian: the CE weight fell to 0.013). mix="uncertainty" learns log-variances s instead (Kendall
    et al., CVPR 2018): exp(-s0) * ce + exp(-s1) * distill + s0 + s1, which balances the two and
    cannot drive either to zero. mix="fixed" is 0.5/0.5.
    """

    def __init__(self, student_dims: list[int], teacher_dim: int, temperature: float = 0.07, mix: str = "softmax",
                 strict_negatives: bool = False):
        super().__init__()
        if mix not in MIXES:
            raise ValueError(f"mix must be one of {MIXES}, got {mix!r}")
        self.temperature = float(temperature)
        self.strict_negatives = strict_negatives
        self.mix_kind = mix
        self.projectors = nn.ModuleList(nn.Linear(d, teacher_dim) for d in student_dims)
        self.layer_logits = nn.Parameter(torch.zeros(len(student_dims)))
        if mix == "fixed":
            self.register_buffer("mix_logits", torch.zeros(2))
        else:
            self.mix_logits = nn.Parameter(torch.zeros(2))

    def forward(
        self, layer_reps: list[torch.Tensor], teacher_feats: list[torch.Tensor], classes: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """L x (n, d_l) student reps, L x (n, d_T) teacher features, classes (n,), mask (n,) -> () distill loss.

        sum_l softmax(w)_l * info_nce(P_l(z_l[mask]), f_l[mask], classes[mask]).
        """
        if not (len(layer_reps) == len(teacher_feats) == len(self.projectors)):
            raise ValueError(
                f"LayerAdaptiveAlignment has {len(self.projectors)} projectors but got {len(layer_reps)} "
                f"student layers and {len(teacher_feats)} teacher feature sets; pass one of each per aligned layer"
            )
        w = torch.softmax(self.layer_logits, dim=0)
        cls = classes[mask]
        losses = [
            info_nce(proj(z[mask]), f[mask], cls, self.temperature, self.strict_negatives)
            for proj, z, f in zip(self.projectors, layer_reps, teacher_feats)
        ]
        return (w * torch.stack(losses)).sum()

    def mix(self, ce: torch.Tensor, distill: torch.Tensor) -> torch.Tensor:
        """() CE, () distill -> () the mixed total (see the class docstring for the three forms)."""
        if self.mix_kind == "uncertainty":
            s = self.mix_logits
            return torch.exp(-s[0]) * ce + torch.exp(-s[1]) * distill + s.sum()
        m = torch.softmax(self.mix_logits, dim=0)
        return m[0] * ce + m[1] * distill

    def layer_weights(self) -> torch.Tensor:
        """(L,) detached softmax of the layer weights, for logging."""
        return torch.softmax(self.layer_logits.detach(), dim=0)

    def mix_weights(self) -> torch.Tensor:
        """(2,) detached [CE, distill] weights, for logging (exp(-s) for "uncertainty")."""
        if self.mix_kind == "uncertainty":
            return torch.exp(-self.mix_logits.detach())
        return torch.softmax(self.mix_logits.detach(), dim=0)


def output_mse(student_logits: torch.Tensor, interp_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(n, C), (n, C), mask (n,) -> () sum_c (softmax(s) - softmax(i))^2, mean over masked rows (Pan et al.).

    interp_logits is not detached: run the frozen interpreter under no_grad.
    """
    if not bool(mask.any()):
        return _zero(student_logits, interp_logits)
    p_s = torch.softmax(student_logits[mask], dim=-1)
    p_i = torch.softmax(interp_logits[mask].to(p_s.dtype), dim=-1)
    return (p_s - p_i).pow(2).sum(dim=-1).mean()


def feature_alignment(z_student: torch.Tensor, z_interp: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(n, d), (n, d), weight (n,) >= 0 -> () sum(w * ||a - b||^2) / max(sum(w), eps) (Pan et al.)."""
    used = weight > 0
    if not bool(used.any()):
        return _zero(z_student, z_interp)
    w = weight[used].to(z_student.dtype)
    dist = (z_student[used] - z_interp[used].to(z_student.dtype)).pow(2).sum(dim=-1)
    return (w * dist).sum() / w.sum().clamp_min(_EPS)


def top_fraction_mask(scores: torch.Tensor, valid: torch.Tensor, fraction: float) -> torch.Tensor:
    """scores (N,) float, valid (N,) bool -> (N,) bool: the ceil(fraction * n_valid) valid nodes with top scores.

    Ties go to the lower index.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    idx = valid.nonzero().squeeze(1)
    # round first: 0.3 * 10 == 3.0000000000000004 must pick 3, not 4
    k = math.ceil(round(fraction * idx.numel(), 9))
    out = torch.zeros_like(valid, dtype=torch.bool)
    if k == 0:
        return out
    order = torch.sort(scores[idx], descending=True, stable=True).indices[:k]
    out[idx[order]] = True
    return out
