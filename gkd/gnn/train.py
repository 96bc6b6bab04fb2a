"""Neighbour-sampled distillation of the student (or Pan's interpreter) on Ray Train, DDP.

Ray-free core: `seed_nodes`, `Distiller` (model + loss mix in one module, so DDP sees every
parameter) and `fit`, which runs epochs over this rank's shard of seeds, validates, early-stops
and hands a checkpoint to `report` each epoch. `train_loop` is the Ray Train worker around it
(it reads a `LoopConfig` and the `StudentInputs` from the object store); `train_distributed` the
driver side. Same seed + one worker = the same run, bit for bit; a run
resumed from a checkpoint repeats the uninterrupted one because every random draw is keyed by
(seed, epoch, rank).
"""

from __future__ import annotations

import copy
import dataclasses
import io
import logging
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gkd.config import DistillConfig
from gkd.errors import GkdError
from gkd.gnn import losses as L
from gkd.gnn.inputs import HOLDOUT, TRAIN, VAL, GraphArrays, RationaleTargets, StudentInputs
from gkd.gnn.models import GNN, build_gnn
from gkd.live import RankZeroLogger

log = logging.getLogger(__name__)

STATE_FILE = "state.pt"
# the losses each method mixes; "interpreter" is Pan's teacher-side GNN on rationale-augmented inputs
METHOD_LOSSES = {
    "vanilla": ("ce",),
    "kd": ("ce", "kd"),
    "lingugkd": ("ce", "nce"),
    "pan": ("ce", "pseudo", "pan"),
    "all": ("ce", "kd", "pseudo", "nce", "pan"),
    "interpreter": ("ce", "soft", "pseudo"),
    # GLNN (arXiv 2110.08727): the refined whole-graph predictions distilled back into the inductive student
    "glnn": ("ce", "glnn"),
}


EpochHook = Callable[[int, int, dict], None]


@dataclass
class LoopConfig:
    """What every Ray Train worker runs: the distill config, mode (a method or "interpreter"), GNN spec.

    mlflow: the driver's `live_target()` (rank 0 logs each epoch there), None for no live logging.
    epoch_hook(rank, epoch, metrics): called on every rank after each epoch (and its checkpoint);
    tests inject faults with it. It must pickle (a module-level function or a functools.partial of one).
    """

    distill: DistillConfig
    mode: str
    spec: dict
    mlflow: dict | None = None
    epoch_hook: EpochHook | None = None
    glnn_weight: float = 0.5  # glnn: share of the KL to the refined predictions (the rest: CE on labels)
    glnn_nodes: int | None = None  # glnn: refined nodes drawn per epoch (None = all with a weight)

    @property
    def sign(self) -> bool:
        return self.spec["kind"] == "sign"


def tensors(inputs):
    """A dataclass of numpy arrays (possibly read-only, straight from the object store: `StudentInputs`,
    `GraphArrays`, ...) -> the same dataclass holding torch tensors that share the arrays' memory."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return _as_torch(inputs)


def _as_torch(v):
    if isinstance(v, np.ndarray):
        return torch.from_numpy(v)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return dataclasses.replace(v, **{f.name: _as_torch(getattr(v, f.name)) for f in dataclasses.fields(v)})
    return v


def seed_nodes(y: np.ndarray, split: np.ndarray, losses: tuple[str, ...], unlabeled_seeds: int, seed: int,
               teacher_pos: np.ndarray | None = None, llm_pos: np.ndarray | None = None,
               rationale_pos: np.ndarray | None = None) -> np.ndarray:
    """Sorted seed nodes of an epoch: labelled train nodes, plus every node a chosen loss has a target for.

    y (N,), split (N,) codes; the optional (N,) positions are -1 where a node has no teacher output, LLM soft
    label or rationale."""
    keep = (split == TRAIN) & (y >= 0)
    if {"kd", "nce"} & set(losses) and teacher_pos is not None:
        keep |= teacher_pos >= 0
    if {"soft", "pseudo"} & set(losses) and llm_pos is not None:
        keep |= llm_pos >= 0
    if "pan" in losses and rationale_pos is not None:
        keep |= rationale_pos >= 0
    if "pan" in losses and unlabeled_seeds:
        rest = np.flatnonzero(~keep & (split != VAL) & (split != HOLDOUT))  # held-out nodes are not in the graph
        rng = np.random.default_rng([seed, 53])
        keep[rng.choice(rest, size=min(unlabeled_seeds, len(rest)), replace=False)] = True
    return np.flatnonzero(keep)


def glnn_seeds(g: GraphArrays, refined, nodes: int | None, seed: int, epoch: int) -> np.ndarray:
    """GLNN's seeds of an epoch: the labelled train nodes plus `nodes` refined nodes (weight > 0) drawn for
    this epoch (all of them when None), sorted."""
    train = (g.split == TRAIN) & (g.y >= 0)
    pool = np.flatnonzero((refined.weight > 0) & ~train)
    if nodes is not None and nodes < len(pool):
        pool = np.random.default_rng([seed, epoch, 97]).choice(pool, size=nodes, replace=False)
    return np.union1d(np.flatnonzero(train), pool)


def epoch_shard(seeds: np.ndarray, seed: int, epoch: int, rank: int, world: int, batch_size: int) -> np.ndarray:
    """This rank's seeds for the epoch: one seeded shuffle, then equal strided shards (wrapping), so every
    rank runs the same number of batches (DDP needs that)."""
    order = seeds[np.random.default_rng([seed, epoch]).permutation(len(seeds))]
    per_rank = math.ceil(len(order) / world)
    return order[(rank + world * np.arange(per_rank)) % len(order)]


class Distiller(nn.Module):
    """The GNN plus the learnable parts of the loss (LinguGKD projectors and mixes); forward -> (loss, parts)."""

    def __init__(self, gnn: GNN, cfg: DistillConfig, losses: tuple[str, ...], teacher_dim: int | None,
                 hops: int, glnn_weight: float = 0.5):
        super().__init__()
        self.gnn, self.cfg, self.losses, self.glnn_weight = gnn, cfg, losses, glnn_weight
        self.aligned = min(gnn.num_layers, hops) if "nce" in losses else 0
        self.align = None
        if self.aligned:
            self.align = L.LayerAdaptiveAlignment([gnn.hidden] * self.aligned, teacher_dim,
                                                  temperature=cfg.nce_temperature, mix=cfg.mix,
                                                  strict_negatives=cfg.teacher_weighting == "calibrated")

    def forward(self, x, edge_index, nsn, nse, bs: int, t: dict) -> tuple[torch.Tensor, dict]:
        """x (n, d), edge_index (2, e); t: targets of the bs seeds (see `batch_targets`)."""
        cfg, want = self.cfg, self.losses
        logits, reps = self.gnn(x, edge_index, nsn, nse)
        logits, reps = logits[:bs], [r[:bs] for r in reps]
        parts = {"ce": L.cross_entropy(logits, t["y"], t["train"])}
        total = parts["ce"]
        if "nce" in want:
            feats = [t["feats"][k + 1] for k in range(self.aligned)]
            parts["nce"] = self.align(reps[: self.aligned], feats, t["classes"], t["covered"])
            total = self.align.mix(parts["ce"], parts["nce"])
        if "kd" in want:
            parts["kd"] = L.kd_kl(logits, t["soft"], cfg.kd_temperature, t["kd_mask"], t.get("t_weight"))
            total = total + cfg.kd_weight * parts["kd"]
        if "soft" in want:  # the interpreter fits the LLM's soft labels at T = 1
            parts["soft"] = L.kd_kl(logits, t["l_soft"], 1.0, t["l_covered"], t.get("l_weight"))
            total = total + cfg.pan.soft_weight * parts["soft"]
        if "pseudo" in want:
            parts["pseudo"], _ = L.pseudo_label_ce(logits, t["l_soft"], cfg.pseudo_threshold,
                                                   t["l_covered"] & ~t["train"], t.get("l_weight"))
            total = total + cfg.pseudo_weight * parts["pseudo"]
        if "glnn" in want:  # class-balanced KL to the refined predictions, mixed with CE on the labels
            parts["glnn"] = L.weighted_kl(logits, t["r_probs"], t["r_weight"])
            total = (1 - self.glnn_weight) * parts["ce"] + self.glnn_weight * parts["glnn"]
        if "pan" in want:
            p = cfg.pan
            everyone = torch.ones_like(t["train"])
            parts["pan_out"] = L.output_mse(logits, t["i_logits"], everyone)
            # per dimension, so the alignment terms sit on the scale of the cross-entropy whatever the width
            dim = reps[-1].shape[1]
            parts["pan_sem"] = L.feature_alignment(reps[-1], t["i_hidden"], t["sem_w"]) / dim
            parts["pan_struct"] = L.feature_alignment(reps[-1], t["i_hidden"], t["struct_w"]) / dim
            total = total + p.output_weight * parts["pan_out"] + p.semantic_weight * parts["pan_sem"] \
                + p.structural_weight * parts["pan_struct"]
        return total, {k: float(v.detach()) for k, v in parts.items()}


def keyword_inputs(r: RationaleTargets, n_id: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Pan's interpreter input (n, d + d_kw): x joined with the node's keyword embedding (zeros without);
    r holds tensors (see `tensors`)."""
    kw = torch.zeros((len(n_id), r.kw_emb.shape[1]), dtype=x.dtype, device=x.device)
    pos = r.kw_pos[n_id].long()
    has = pos >= 0
    if has.any():
        kw[has] = r.kw_emb[pos[has]].to(x.device, x.dtype)
    return torch.cat([x, kw], dim=1)


def repeat_key_edges(r: RationaleTargets, n_id: torch.Tensor, edge_index: torch.Tensor, repeat: int) -> torch.Tensor:
    """Edges from a node's key neighbours appear `repeat` times (their messages weigh that much more)."""
    codes = r.key_codes
    if repeat <= 1 or len(codes) == 0 or edge_index.size(1) == 0:
        return edge_index
    n = r.kw_pos.shape[0]  # key_codes are dst * N + src
    ei = edge_index.cpu()
    e = n_id[ei[1]] * n + n_id[ei[0]]
    at = torch.searchsorted(codes, e).clamp(max=len(codes) - 1)
    hit = codes[at] == e
    if not hit.any():
        return edge_index
    return torch.cat([edge_index] + [edge_index[:, hit.to(edge_index.device)]] * (repeat - 1), dim=1)


def batch_targets(A: StudentInputs, n_id: torch.Tensor, bs: int, losses: tuple[str, ...], device) -> dict:
    """Per-seed targets: labels, masks, teacher soft labels / features, interpreter outputs, Pan weights.
    A holds tensors (see `tensors`)."""
    seeds = n_id[:bs]
    y = A.graph.y[seeds]
    train = (A.graph.split[seeds] == TRAIN) & (y >= 0)
    t = {"y": y.clamp(min=0), "train": train}
    if A.teacher is not None and {"kd", "nce"} & set(losses):
        pos = A.teacher.pos[seeds].long()
        covered = pos >= 0
        p = pos.clamp(min=0)
        t["soft"] = A.teacher.soft[p]
        t["covered"] = covered
        t["kd_mask"] = covered
        if A.teacher.weight is not None:  # calibrated: precision-weighted, rows below the floor dropped
            w = A.teacher.weight[p].float() * covered.float()
            t["t_weight"], t["kd_mask"] = w, covered & (w > 0)
        if "nce" in losses:
            t["feats"] = [f[p].float() for f in A.teacher.feats]
            # in-batch negatives are nodes of another class: gold labels on train nodes, the teacher's elsewhere
            # (calibrated: only where its precision reaches distill.negative_precision; else class unknown)
            usable = covered if A.teacher.confident is None else covered & A.teacher.confident[p].bool()
            t["classes"] = torch.where(train, y, torch.where(usable, t["soft"].argmax(1), -1))
    if {"soft", "pseudo"} & set(losses):  # the LLM's soft labels (teacher where it ran, else the rationale's)
        soft = A.llm_soft
        pos = soft.pos[seeds].long()
        t["l_covered"] = pos >= 0
        t["l_soft"] = soft.soft[pos.clamp(min=0)] if len(soft.soft) else torch.zeros((bs, A.graph.num_classes))
        if soft.weight is not None and len(soft.soft):
            lw = soft.weight[pos.clamp(min=0)].float() * t["l_covered"].float()
            t["l_weight"], t["l_covered"] = lw, t["l_covered"] & (lw > 0)
    if "glnn" in losses:
        t["r_probs"] = A.refined.probs[seeds].float()
        t["r_weight"] = A.refined.weight[seeds].float()
    if "pan" in losses:
        i = A.interpreter
        t["i_logits"] = i.logits[seeds].float()
        t["i_hidden"] = i.hidden[seeds].float()
        t["sem_w"] = i.sem_w[seeds].float()
        t["struct_w"] = i.struct_w[seeds].float()
    return {k: ([v.to(device) for v in val] if isinstance(val, list) else val.to(device)) for k, val in t.items()}


def _loader(g: GraphArrays, nodes: np.ndarray, fanouts: list[int], batch_size: int, seed: int, sign: bool = False):
    """Batches of `nodes` with their sampled neighbourhoods; SIGN reads its seeds' precomputed rows alone."""
    from torch_geometric.loader import NodeLoader

    from gkd.gnn.sampler import make_sampler, node_data

    x = g.features(sign)
    fanouts = [] if sign else fanouts
    data = node_data(x, g.y, x.shape[0])
    sampler = make_sampler(g.indptr, g.indices, fanouts, seed=seed)
    return NodeLoader(data, node_sampler=sampler, input_nodes=torch.from_numpy(np.asarray(nodes, dtype=np.int64)),
                      batch_size=batch_size, shuffle=False)


def _step_seed(seed: int, *keys: int) -> int:
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def _inputs(A: StudentInputs, batch, mode: str, repeat: int, device):
    x, ei = batch.x, batch.edge_index
    nsn, nse = batch.num_sampled_nodes, batch.num_sampled_edges
    if mode == "interpreter":
        x = keyword_inputs(A.rationale, batch.n_id, x)
        ei = repeat_key_edges(A.rationale, batch.n_id, ei, repeat)
        nsn = nse = None  # repeated edges break the per-hop edge counts trim_to_layer relies on
    return x.to(device), ei.to(device), nsn, nse


@torch.no_grad()
def evaluate_sampled(gnn: GNN, A: StudentInputs, nodes: np.ndarray, cfg: DistillConfig, mode: str,
                     device) -> tuple[int, int]:
    """(correct, total) on labelled `nodes`, one sampled neighbourhood each (a fixed sampler seed); A holds tensors."""
    gnn.eval()
    correct = total = 0
    for batch in _loader(A.graph, nodes, cfg.fanouts, cfg.infer_batch_size, seed=_step_seed(cfg.seed, 10**6),
                         sign=gnn.kind == "sign"):
        x, ei, nsn, nse = _inputs(A, batch, mode, cfg.pan.key_edge_repeat, device)
        logits, _ = gnn(x, ei, nsn, nse)
        y = batch.y[: batch.batch_size].to(device)
        pred = logits[: batch.batch_size].argmax(1)
        correct += int((pred == y).sum())
        total += int(batch.batch_size)
    return correct, total


def _state_bytes(state: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def fit(inputs: StudentInputs, loop: LoopConfig, rank: int = 0, world: int = 1, prior: dict | None = None,
        report=None, device: str = "cpu", wrap=None, on_epoch=None, on_epoch_end: EpochHook | None = None) -> dict:
    """Train one model on this rank's seed shard -> final state {epoch, best_val, best_epoch, best_model, history}.

    The teacher's feature width and hop count (LinguGKD's alignment) come from inputs.teacher.
    report(metrics, state) is called once per epoch (the Ray layer turns it into a checkpoint);
    wrap(module) -> module adds DDP. `prior` is the state of a checkpoint to resume from.
    on_epoch(metrics, step) sees every epoch's metrics (live MLflow logging); on_epoch_end(rank, epoch,
    metrics) runs last in each epoch, after its checkpoint was reported (tests inject faults there).
    """
    import torch.distributed as dist

    cfg, mode = loop.distill, loop.mode
    losses = METHOD_LOSSES[mode]
    A = tensors(inputs)
    torch.manual_seed(cfg.seed)
    gnn = build_gnn(loop.spec)
    teacher = inputs.teacher
    module = Distiller(gnn, cfg, losses, teacher.dim if teacher is not None else None,
                       teacher.hops if teacher is not None else 0, loop.glnn_weight).to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = {"epoch": 0, "best_val": -1.0, "best_epoch": 0, "bad_epochs": 0, "history": [], "best_model": None}
    if prior is not None:
        module.load_state_dict(prior["module"])
        optimizer.load_state_dict(prior["optimizer"])
        state = {k: prior[k] for k in state}
        log.info("rank %d resumes after epoch %d (best val %.4f)", rank, state["epoch"], state["best_val"])
    trained = wrap(module) if wrap is not None else module
    g = inputs.graph
    seeds = seed_nodes(g.y, g.split, losses, cfg.unlabeled_seeds, cfg.seed,
                       teacher_pos=teacher.pos if teacher is not None else None,
                       llm_pos=inputs.llm_soft.pos if inputs.llm_soft is not None else None,
                       rationale_pos=inputs.rationale.pos if inputs.rationale is not None else None)
    val_nodes = np.flatnonzero((g.split == VAL) & (g.y >= 0))
    val_shard = val_nodes[rank::world]
    if len(seeds) == 0:
        raise GkdError(f"distill ({mode}): no seed node has a label or a teacher target")
    if rank == 0:
        from gkd.gnn.sampler import sampler_name

        log.info("%s: %d seed nodes, %d val nodes, %d workers, losses %s, sampler %s", mode, len(seeds),
                 len(val_nodes), world, "+".join(losses), sampler_name())
    t0 = time.perf_counter()
    for epoch in range(state["epoch"], cfg.epochs):
        if state["bad_epochs"] >= cfg.patience:
            break
        epoch_seeds = seeds if mode != "glnn" else glnn_seeds(g, inputs.refined, loop.glnn_nodes, cfg.seed, epoch)
        shard = epoch_shard(epoch_seeds, cfg.seed, epoch, rank, world, cfg.batch_size)
        torch.manual_seed(_step_seed(cfg.seed, epoch, rank))  # dropout draws
        trained.train()
        sums, steps = {}, 0
        for batch in _loader(A.graph, shard, cfg.fanouts, cfg.batch_size, seed=_step_seed(cfg.seed, epoch, rank, 1),
                             sign=loop.sign):
            bs = int(batch.batch_size)
            x, ei, nsn, nse = _inputs(A, batch, mode, cfg.pan.key_edge_repeat, device)
            t = batch_targets(A, batch.n_id, bs, losses, device)
            loss, parts = trained(x, ei, nsn, nse, bs, t)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            for k, v in {"loss": float(loss.detach()), **parts}.items():
                sums[k] = sums.get(k, 0.0) + v
        correct, total = evaluate_sampled(gnn, A, val_shard, cfg, mode, device)
        counts = torch.tensor([correct, total], dtype=torch.float64)
        if world > 1 and dist.is_initialized():
            dist.all_reduce(counts)
        val_acc = float(counts[0] / counts[1]) if counts[1] else 0.0
        improved = val_acc > state["best_val"]
        state["epoch"] = epoch + 1
        if improved:
            state.update(best_val=val_acc, best_epoch=epoch + 1, bad_epochs=0,
                         best_model=copy.deepcopy({k: v.cpu() for k, v in gnn.state_dict().items()}))
        else:
            state["bad_epochs"] += 1
        metrics = {"epoch": epoch + 1, "val_acc": val_acc, "best_val_acc": state["best_val"],
                   "train_s": round(time.perf_counter() - t0, 2),
                   **{k: v / max(steps, 1) for k, v in sums.items()}}
        if module.align is not None:
            metrics["mix_ce"] = float(module.align.mix_weights()[0])
            for k, w in enumerate(module.align.layer_weights().tolist()):
                metrics[f"layer_w{k + 1}"] = w
        state["history"].append(metrics)
        if on_epoch is not None:
            on_epoch(metrics, epoch + 1)
        if rank == 0:
            log.info("%s epoch %d: loss %.4f val %.4f (best %.4f @ %d)", mode, epoch + 1, metrics.get("loss", 0.0),
                     val_acc, state["best_val"], state["best_epoch"])
        last = state["epoch"] == cfg.epochs or state["bad_epochs"] >= cfg.patience
        if report is not None and (last or state["epoch"] % cfg.checkpoint_every == 0):
            report(metrics, {**state, "module": module.state_dict(), "optimizer": optimizer.state_dict()})
        if on_epoch_end is not None:
            on_epoch_end(rank, epoch + 1, metrics)
    return state


# ----------------------------------------------------------------------------- Ray Train layer


def train_loop(config: dict) -> None:
    """Ray Train worker: fit() on this rank's seed shard; a checkpoint per epoch from rank 0.

    config: {"loop": LoopConfig, "inputs": object ref of the StudentInputs} (Ray Train wants a dict)."""
    import ray
    import ray.train
    import ray.train.torch

    loop: LoopConfig = config["loop"]
    if loop.distill.torch_threads:
        torch.set_num_threads(loop.distill.torch_threads)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    inputs = ray.get(config["inputs"])  # zero-copy: the arrays stay in the object store, read-only
    from gkd.runtime import resume_state

    _, prior, source = resume_state(ray.train.get_checkpoint(), config.get("run_dir"),
                                    lambda d: torch.load(Path(d) / STATE_FILE, weights_only=False),
                                    lambda state: state["epoch"])
    if prior is not None and rank == 0 and not source.startswith("Ray Train"):
        log.info("resuming from %s", source)  # fit() logs the epoch

    def report(metrics: dict, state: dict) -> None:
        if rank != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        with tempfile.TemporaryDirectory(prefix="gkd-distill-") as tmp:
            (Path(tmp) / STATE_FILE).write_bytes(_state_bytes(state))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    def wrap(module):
        if world == 1:
            return module
        return ray.train.torch.prepare_model(module, parallel_strategy_kwargs={"find_unused_parameters": True})

    device = ray.train.torch.get_device() if loop.distill.use_gpu else torch.device("cpu")
    live = RankZeroLogger(loop.mlflow, rank)
    fit(inputs, loop, rank, world, prior, report, device=device, wrap=wrap, on_epoch=live.log,
        on_epoch_end=loop.epoch_hook)


def train_distributed(inputs_ref, loop: LoopConfig, storage_path: Path, name: str) -> dict:
    """Run train_loop on loop.distill.num_workers Ray Train workers -> the final checkpoint's state.

    inputs_ref: `ray.put` of the StudentInputs. A rerun with the same storage_path/name resumes from the
    latest checkpoint; killed workers are restarted up to max_failures times, each time from the latest one.
    """
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from gkd.runtime import local_run_dir, previous_result

    cfg = loop.distill
    previous = previous_result(Path(storage_path) / name)
    if previous is not None:
        with previous.checkpoint.as_directory() as d:
            state = torch.load(Path(d) / STATE_FILE, weights_only=False)
        if state["epoch"] >= cfg.epochs or state["bad_epochs"] >= cfg.patience:
            log.info("%s already finished (epoch %d); reusing its checkpoint", name, state["epoch"])
            return state
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"loop": loop, "inputs": inputs_ref, "run_dir": local_run_dir(storage_path, name)},
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu,
                                     resources_per_worker={"CPU": cfg.num_cpus_per_worker}),
        run_config=RunConfig(storage_path=str(storage_path), name=name,
                             failure_config=FailureConfig(max_failures=cfg.max_failures)),
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise GkdError(f"distillation run {name} finished without a checkpoint under {storage_path}")
    with result.checkpoint.as_directory() as d:
        return torch.load(Path(d) / STATE_FILE, weights_only=False)
