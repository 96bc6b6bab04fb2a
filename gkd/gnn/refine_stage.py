"""The refine stage (`gkd refine`): the distilled student's whole-graph logits -> refined predictions for known
nodes (gkd.gnn.refine, every choice on val), GLNN into a second inductive student on Ray Train, and the
new-node refinement of each candidate; the one val prefers is saved to <refine dir>/checkpoint with
refined.npy, which `gkd register` logs and Serve loads."""

from __future__ import annotations

import logging

import numpy as np

from gkd.gnn.inputs import TEST, TRAIN, UNLABELED, VAL
from gkd.gnn.refine import _EPS, class_prior, fit_new_node_refiner, neighbor_mean, refine

log = logging.getLogger(__name__)


REFINED_FILE = "refined.npy"


def glnn_weights(probs: np.ndarray, prior: np.ndarray, split: np.ndarray, y: np.ndarray) -> np.ndarray:
    """GLNN's per-node weights (N,) float32: 1 / prior of the node's refined class, scaled to mean 1 over the
    nodes fitted (class-balanced: the big classes do not drown the small ones); 0 on val (it judges the
    student) and on held-out nodes (not in the graph)."""
    fitted = (split == TRAIN) | (split == TEST) | (split == UNLABELED)
    cls = np.where((split == TRAIN) & (y >= 0), y, probs.argmax(1))
    w = 1.0 / np.maximum(prior[cls], 1e-3)
    w = np.where(fitted, w, 0.0)
    return (w / max(w[fitted].mean(), _EPS)).astype(np.float32) if fitted.any() else w.astype(np.float32)


def _scores(logits, g, nodes_by: dict) -> dict:
    from gkd.gnn.distill import evaluate_logits

    return {k: evaluate_logits(logits, g.y, v) for k, v in nodes_by.items()}


def run(cfg) -> dict:
    """The refine stage: the student's logits -> refined whole-graph predictions (choices on val), then GLNN
    into <refine dir>/checkpoint: the served student (inductive, for new nodes) + refined.npy (known nodes)."""
    import json
    import shutil
    import time
    from pathlib import Path

    from gkd.config import content_hash
    from gkd.data.store import TAG, read_holdout
    from gkd.gnn.distill import evaluate_logits, load_student, save_student, student_spec, train_student, with_hops
    from gkd.gnn.infer import holdout_accuracy, holdout_logits, layer_inputs
    from gkd.gnn.inputs import RefinedTargets, StudentInputs, graph_arrays, label_rate_split
    from gkd.gnn.models import build_gnn
    from gkd.gnn.propagate import mean_adjacency, sym_adjacency
    from gkd.gnn.stage import DISTILL, REFINE
    from gkd.runtime import init_ray, resolve_device

    d, rc = cfg.distill, cfg.refine
    out = cfg.stage_dir(REFINE)
    sdir = cfg.stage_dir(DISTILL)
    if not rc.enabled:
        return {"enabled": False}
    if not (sdir / "logits.npy").is_file() or not (sdir / "checkpoint").is_dir():
        from gkd.errors import DataError

        raise DataError(f"{sdir} has no trained student (logits.npy + checkpoint/): run `gkd distill` first")
    from gkd.pipeline import read_marker

    trained = (read_marker(cfg, DISTILL) or {}).get("config_hash")
    if trained is not None and trained != content_hash(cfg, DISTILL):
        from gkd.errors import DataError

        raise DataError(f"the student in {sdir} was trained with another distill config (content hash {trained}, "
                        f"this config's is {content_hash(cfg, DISTILL)}): run `gkd distill` with this config first")
    t0 = time.time()
    device = resolve_device(d.device, "distill.device")
    tag = TAG.load(cfg.graph_dir)
    g = graph_arrays(tag)
    if d.labels_per_class is not None:  # the student's own split
        g.split, _ = label_rate_split(g.split, g.y, d.labels_per_class, d.label_pool_per_class, d.seed)
    nodes_by = {"test": np.flatnonzero(g.split == TEST), "val": np.flatnonzero(g.split == VAL)}
    logits = np.load(sdir / "logits.npy").astype(np.float32)
    adj = sym_adjacency(g.indptr, g.indices)
    ref = refine(logits, g.y, g.split, adj, rc.prior, rc.correct_alphas, rc.smooth_alphas, rc.iterations)
    holdout = read_holdout(cfg.graph_dir)
    student, info = load_student(sdir / "checkpoint")
    g = with_hops(g, d)
    # the student's layer-wise full-graph pass, once: the held-out score and the new-node refiner both read it
    s_layers = (layer_inputs(student, g.x, g.indptr, g.indices, d.infer_batch_size, device)
                if holdout is not None and len(holdout.nodes) else None)
    metrics = {
        "key": content_hash(cfg, REFINE), "gnn": d.gnn, "method": d.method, "seed": d.seed,
        "choice": ref.choice, "prior": [round(float(v), 5) for v in ref.prior],
        "raw": {**_scores(logits, g, nodes_by), "holdout": holdout_accuracy(student, g, holdout, device,
                                                                           d.infer_batch_size, s_layers)},
        "refined": _scores(np.log(ref.probs + 1e-9), g, nodes_by),
        "refine_wall_s": round(time.time() - t0, 1),
    }
    # the classifiers that could answer new nodes: the student itself, and the GLNN student when asked
    candidates = {"student": (student, logits, s_layers)}
    if rc.glnn:
        init_ray(cfg.ray)
        weight = glnn_weights(ref.probs, ref.prior, g.split, g.y)
        inputs = StudentInputs(g, refined=RefinedTargets(probs=ref.probs, weight=weight))
        spec = student_spec(d, g.x.shape[1], g.num_classes)
        gcfg = cfg.model_copy(update={"distill": d.model_copy(update={"epochs": rc.glnn_epochs or d.epochs})})
        state = train_student(inputs, gcfg, "glnn", spec, out, key=metrics["key"],
                       loop_extra={"glnn_weight": rc.glnn_weight, "glnn_nodes": rc.glnn_nodes})
        glnn = build_gnn(spec)
        glnn.load_state_dict(state["best_model"])
        layers = layer_inputs(glnn, g.x, g.indptr, g.indices, d.infer_batch_size, device)
        metrics["glnn"] = {**_scores(layers[1], g, nodes_by),
                           "holdout": holdout_accuracy(glnn, g, holdout, device, d.infer_batch_size, layers),
                           "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
                           "train_wall_s": state["wall_s"], "history": state["history"]}
        candidates["glnn"] = (glnn, layers[1], layers)
    # each candidate's new-node refinement (temperature, prior, neighbours' refined predictions), chosen on
    # val; the one with the best reweighted val accuracy answers new nodes. Held-out nodes only report.
    val = nodes_by["val"]
    val = val[g.y[val] >= 0]
    nbr_val = np.asarray(mean_adjacency(g.indptr, g.indices)[val] @ ref.probs, dtype=np.float32)
    has_val = np.diff(g.indptr)[val] > 0
    source = class_prior(g.y[(g.split == TRAIN) & (g.y >= 0)], g.num_classes)
    if holdout is not None and len(holdout.nodes):
        nbr_new, has_new = neighbor_mean(ref.probs, holdout.neighbors)
    new_nodes = {}
    for name, (model, all_logits, layers) in candidates.items():
        refiner, acc = fit_new_node_refiner(all_logits[val], g.y[val], nbr_val, has_val, ref, source,
                                            rc.new_node_alphas)
        row = {"refiner": refiner.to_json() | {"ratio": refiner.ratio is not None}, "val_acc_reweighted": acc}
        if holdout is not None and len(holdout.nodes):
            h_logits = holdout_logits(model, g, holdout, device, d.infer_batch_size, layers)
            probs = refiner.apply(h_logits, nbr_new, has_new)
            row["holdout"] = evaluate_logits(np.log(probs + 1e-9), np.asarray(holdout.labels),
                                             np.arange(len(holdout.nodes)))
        new_nodes[name] = (refiner, row)
    served_by = max(new_nodes, key=lambda k: new_nodes[k][1]["val_acc_reweighted"])  # ties: the student
    refiner = new_nodes[served_by][0]
    served = candidates[served_by][0]
    metrics["new_nodes"] = {"served": served_by, **new_nodes[served_by][1],
                            "candidates": {k: r for k, (_, r) in new_nodes.items()}}
    served_key = "glnn" if served_by == "glnn" else "raw"
    ckpt = out / "checkpoint"
    if ckpt.exists():
        shutil.rmtree(ckpt)
    save_student(served, ckpt, {k: v for k, v in info.items() if k != "spec"} | {
        "refined": REFINED_FILE, "new_nodes": served_by, "new_node_refine": refiner.to_json(),
        "val_acc": metrics[served_key]["val"]["acc"], "test_acc": metrics[served_key]["test"]["acc"],
        "refined_test_acc": metrics["refined"]["test"]["acc"], "refine_choice": ref.choice})
    np.save(ckpt / REFINED_FILE, ref.probs.astype(np.float16))
    metrics["wall_s"] = round(time.time() - t0, 1)
    Path(out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info("refine %s/%s: test acc %s raw -> %s refined; new nodes (%s, refined): held-out acc %s", d.gnn,
             d.method, metrics["raw"]["test"]["acc"], metrics["refined"]["test"]["acc"], served_by,
             (metrics["new_nodes"].get("holdout") or {}).get("acc"))
    return metrics
