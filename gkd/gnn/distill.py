"""Student stage: (Pan's interpreter ->) neighbour-sampled distillation on Ray Train -> full-graph evaluation.

Writes under <workdir>/student/ (or `out_dir`): checkpoint/ (model.safetensors + student.json: the
GNN spec, class names, feature encoder), logits.npy (N, C) fp16, metrics.json (test/val accuracy
and macro-F1, per-class report, the teacher's accuracy next to the student's on the same nodes,
training curve). A finished run with the same inputs is skipped; a killed one resumes from its
last epoch checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from gkd.config import DistillConfig, ExperimentConfig
from gkd.errors import DataError
from gkd.gnn import losses as L
from gkd.gnn.inputs import (TEST, VAL, graph_arrays, label_rate_split, rationale_arrays, read_teacher_accuracy,
                            teacher_arrays)
from gkd.gnn.models import GNN, build_gnn
from gkd.gnn.train import METHOD_LOSSES, keyword_inputs, repeat_key_edges, tensors, train_distributed
from gkd.tracking.live import live_target

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
SPEC_FILE = "student.json"


def input_key(cfg: ExperimentConfig, mode: str) -> str:
    """What decides a run's result: the distill config, the mode, and the files it reads (by size/mtime)."""
    files = [cfg.graph_dir / "meta.json", cfg.graph_dir / "x.npy"]
    if mode != "vanilla":
        files += [cfg.workdir / "teacher" / "covered.npy", cfg.workdir / "teacher" / "soft.npy"]
    if mode in ("pan", "all", "interpreter"):
        files += sorted((cfg.workdir / "rationale").glob("part-*.parquet"))
    stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.exists()]
    d = cfg.distill.model_dump(mode="json")
    d.update(mode=mode, files=stamp, encoder=cfg.ingest.encoder.name)
    for k in ("labels_per_class", "label_pool_per_class"):
        if d[k] is None:
            d.pop(k)  # unset: the key of runs made before these knobs existed
    if mode == "interpreter":  # the interpreter does not depend on the student's method or loss weights
        for k in ("method", "kd_temperature", "kd_weight", "nce_temperature", "mix"):
            d.pop(k)
        for k in ("output_weight", "semantic_weight", "structural_weight", "top_fraction"):
            d["pan"].pop(k)
    for k in ("num_workers", "num_cpus_per_worker", "max_failures", "device", "infer_batch_size", "torch_threads"):
        d.pop(k)  # how it runs, not what it computes (num_workers changes the run: it is in the run name)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]


def evaluate_logits(logits: np.ndarray, labels: np.ndarray, nodes: np.ndarray, class_names: list[str] | None = None) -> dict:
    """Accuracy and macro-F1 of argmax(logits) on the labelled `nodes`; a per-class report when names are given."""
    from sklearn.metrics import classification_report, f1_score

    nodes = nodes[labels[nodes] >= 0]
    if len(nodes) == 0:
        return {"acc": None, "macro_f1": None, "nodes": 0}
    pred, y = logits[nodes].argmax(1), labels[nodes]
    out = {"acc": round(float((pred == y).mean()), 4),
           "macro_f1": round(float(f1_score(y, pred, average="macro", labels=np.unique(y))), 4),
           "nodes": int(len(nodes))}
    if class_names is not None:
        report = classification_report(y, pred, labels=np.arange(len(class_names)), target_names=class_names,
                                       output_dict=True, zero_division=0)
        out["per_class"] = {c: {k: round(float(v), 4) for k, v in report[c].items()} for c in class_names}
    return out


def pan_weights(arrays: dict, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(N,) float32 weights of the semantic and structural alignment sets (1 on the chosen nodes)."""
    out = []
    for key in ("sem_score", "struct_score"):
        score = torch.from_numpy(np.nan_to_num(arrays[key], nan=-np.inf))
        valid = torch.from_numpy(~np.isnan(arrays[key]))
        out.append(L.top_fraction_mask(score, valid, fraction).numpy().astype(np.float32))
    return out[0], out[1]


def save_student(gnn: GNN, out: Path, meta: dict) -> None:
    """checkpoint/model.safetensors + checkpoint/student.json (spec, class names, encoder): pickle-free."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in gnn.state_dict().items()}, out / MODEL_FILE)
    (out / SPEC_FILE).write_text(json.dumps({"spec": gnn.spec(), **meta}, indent=2))


def load_student(checkpoint_dir: str | Path) -> tuple[GNN, dict]:
    """A saved student -> (GNN in eval mode, its student.json)."""
    from safetensors.torch import load_file

    checkpoint_dir = Path(checkpoint_dir)
    info = json.loads((checkpoint_dir / SPEC_FILE).read_text())
    gnn = build_gnn(info["spec"])
    gnn.load_state_dict(load_file(checkpoint_dir / MODEL_FILE))
    return gnn.eval(), info


def _train(arrays: dict, cfg: ExperimentConfig, mode: str, spec: dict, out: Path, extra: dict | None = None) -> dict:
    import ray

    d = cfg.distill
    # rank 0 logs each epoch into the active MLflow run (the pipeline's distill stage), if any
    prefix = "interpreter." if mode == "interpreter" else ""
    config = {"distill": d.model_dump(mode="json"), "mode": mode, "spec": spec, "mlflow": live_target(prefix),
              **(extra or {})}
    if "t_feats" in arrays:
        config.update(teacher_dim=int(arrays["t_feats"].shape[2]), hops=int(arrays["t_feats"].shape[0] - 1))
    name = f"{cfg.name}-{mode}-{d.gnn}-w{d.num_workers}-{input_key(cfg, mode)}"
    t = time.time()
    state = train_distributed(ray.put(arrays), config, d, (out / "ray").resolve(), name)
    state["wall_s"] = round(time.time() - t, 1)
    return state


def _llm_soft(arrays: dict) -> dict:
    """Pseudo/soft-label targets l_pos (N,) -> l_soft (M, C): the tuned teacher's where it ran, else the
    rationale LLM's."""
    n = len(arrays["y"])
    sources = [(arrays[p], arrays[s]) for p, s in (("r_pos", "r_soft"), ("t_pos", "t_soft")) if p in arrays]
    has_any = np.zeros(n, dtype=bool)
    for pos, _ in sources:
        has_any |= pos >= 0
    nodes = np.flatnonzero(has_any)
    soft = np.zeros((len(nodes), arrays["num_classes"]), dtype=np.float32)
    for pos, rows in sources:  # the teacher comes last, so it wins where both exist
        at = pos[nodes]
        soft[at >= 0] = rows[at[at >= 0]]
    l_pos = np.full(n, -1, dtype=np.int32)
    l_pos[nodes] = np.arange(len(nodes), dtype=np.int32)
    return {"l_pos": l_pos, "l_soft": soft}


def train_interpreter(arrays: dict, cfg: ExperimentConfig, idir: Path, device: str) -> dict:
    """Pan's interpreter on rationale-augmented inputs -> i_logits (N, C), i_hidden (N, h), cached in idir."""
    d = cfg.distill
    key = input_key(cfg, "interpreter")
    done = idir / "metrics.json"
    if done.is_file() and json.loads(done.read_text()).get("key") == key:
        return {"i_logits": np.load(idir / "logits.npy"), "i_hidden": np.load(idir / "hidden.npy"),
                "metrics": json.loads(done.read_text())}
    spec = {"kind": d.gnn, "in_dim": arrays["x"].shape[1] + arrays["kw_emb"].shape[1], "hidden": d.hidden,
            "num_classes": arrays["num_classes"], "num_layers": d.num_layers, "dropout": d.dropout, "heads": d.heads}
    icfg = cfg.model_copy(update={"distill": d.model_copy(update={"epochs": d.pan.interpreter_epochs or d.epochs})})
    state = _train(arrays, icfg, "interpreter", spec, idir)
    gnn = build_gnn(spec)
    gnn.load_state_dict(state["best_model"])
    A = tensors(arrays)
    logits, hidden = _infer(gnn, A, d, device, "interpreter inference",
                            features=lambda n_id: keyword_inputs(A, n_id, A["x"][n_id]),
                            edge_hook=lambda n_id, ei: repeat_key_edges(A, n_id, ei, d.pan.key_edge_repeat))
    metrics = {"key": key, "best_epoch": state["best_epoch"], "best_val_sampled": state["best_val"],
               "wall_s": state["wall_s"],
               "val": evaluate_logits(logits, arrays["y"], np.flatnonzero(arrays["split"] == VAL)),
               "test": evaluate_logits(logits, arrays["y"], np.flatnonzero(arrays["split"] == TEST))}
    idir.mkdir(parents=True, exist_ok=True)
    np.save(idir / "logits.npy", logits)
    np.save(idir / "hidden.npy", hidden)
    done.write_text(json.dumps(metrics, indent=2))
    log.info("interpreter: val %s test %s", metrics["val"]["acc"], metrics["test"]["acc"])
    return {"i_logits": logits, "i_hidden": hidden, "metrics": metrics}


def _infer(gnn: GNN, A: dict, d: DistillConfig, device: str, what: str, features=None, edge_hook=None):
    from gkd.gnn.infer import layerwise_inference

    features = features or (lambda n_id: A["x"][n_id])
    return layerwise_inference(gnn, features, A["indptr"].numpy(), A["indices"].numpy(), d.infer_batch_size,
                               device, edge_hook=edge_hook, what=what)


def run(cfg: ExperimentConfig, out_dir: Path | None = None, interpreter_dir: Path | None = None) -> dict:
    """The student stage; out_dir defaults to <workdir>/student, interpreter_dir to <out_dir>/interpreter
    (students of different methods can share one interpreter)."""
    from gkd.data.store import TAG
    from gkd.llm.rationale import read_rationales
    from gkd.llm.teacher import eval_nodes
    from gkd.runtime import init_ray, resolve_device

    d = cfg.distill
    mode = d.method
    out = Path(out_dir) if out_dir is not None else cfg.workdir / "student"
    key = input_key(cfg, mode)
    metrics_path = out / "metrics.json"
    if metrics_path.is_file():
        prior = json.loads(metrics_path.read_text())
        if prior.get("key") == key and (out / "checkpoint" / MODEL_FILE).is_file():
            log.info("student %s/%s is up to date in %s; skipped", d.gnn, mode, out)
            return prior
    device = resolve_device(d.device, "distill.device")
    tag = TAG.load(cfg.graph_dir)
    arrays = graph_arrays(tag)
    losses = METHOD_LOSSES[mode]
    counts: dict = {}
    if d.labels_per_class is not None:
        arrays["split"], counts["label_rate"] = label_rate_split(arrays["split"], arrays["y"], d.labels_per_class,
                                                                 d.label_pool_per_class, d.seed)
    tdir = cfg.workdir / "teacher"
    if mode != "vanilla":
        arrays.update(teacher_arrays(tdir, tag.num_nodes, tag.num_classes))
        counts["teacher_covered"] = int((arrays["t_pos"] >= 0).sum())
    init_ray(cfg.ray)  # after the inputs are known to be there, so a missing file fails fast
    interpreter = None
    if "pan" in losses:
        table = read_rationales(cfg.workdir)
        if table.num_rows == 0:
            raise DataError(f"{cfg.workdir}/rationale has no rationales: run `gkd rationale` first "
                            f"(distill.method={mode} needs them)")
        pan, pan_counts = rationale_arrays(table, arrays, cfg.ingest.encoder, d.pan, cache=out / "pan" / "keywords.npz")
        arrays.update(pan)
        counts.update(pan_counts)
        arrays.update(_llm_soft(arrays))
        interpreter = train_interpreter(arrays, cfg, Path(interpreter_dir or out / "interpreter"), device)
        sem_w, struct_w = pan_weights(arrays, d.pan.top_fraction)
        arrays.update(i_logits=interpreter.pop("i_logits"), i_hidden=interpreter.pop("i_hidden"),
                      sem_w=sem_w, struct_w=struct_w)
        counts.update(semantic_nodes=int(sem_w.sum()), structural_nodes=int(struct_w.sum()))
    if "pseudo" in losses and "l_pos" not in arrays:
        arrays.update(_llm_soft(arrays))

    spec = {"kind": d.gnn, "in_dim": arrays["x"].shape[1], "hidden": d.hidden, "num_classes": tag.num_classes,
            "num_layers": d.num_layers, "dropout": d.dropout, "heads": d.heads}
    state = _train(arrays, cfg, mode, spec, out)
    gnn = build_gnn(spec)
    gnn.load_state_dict(state["best_model"])
    t = time.time()
    logits, _ = _infer(gnn, tensors(arrays), d, device, "student inference")
    infer_s = round(time.time() - t, 1)

    labels = arrays["y"]
    teacher_nodes = eval_nodes(tag.labels, tag.split, cfg.teacher.eval_budget, cfg.teacher.seed)
    teacher_nodes = teacher_nodes[arrays["split"][teacher_nodes] == TEST]  # a label-rate pool may take some
    teacher = read_teacher_accuracy(tdir)
    metrics = {
        "key": key, "gnn": d.gnn, "method": mode, "seed": d.seed, "num_workers": d.num_workers,
        "test": evaluate_logits(logits, labels, np.flatnonzero(arrays["split"] == TEST), tag.class_names),
        "val": evaluate_logits(logits, labels, np.flatnonzero(arrays["split"] == VAL)),
        # the teacher was scored on a sample of test nodes: the student on exactly those, for a fair comparison
        "teacher_nodes": evaluate_logits(logits, labels, teacher_nodes),
        "teacher": teacher.get("tuned"), "teacher_zero_shot": teacher.get("zero_shot"),
        "best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "best_val_sampled": state["best_val"],
        "train_wall_s": state["wall_s"], "infer_wall_s": infer_s, "inputs": counts,
        "interpreter": interpreter["metrics"] if interpreter else None,
        "history": state["history"],
    }
    save_student(gnn, out / "checkpoint", {
        "class_names": tag.class_names, "encoder": tag.meta.get("encoder", {}), "graph": tag.name,
        "method": mode, "gnn": d.gnn, "val_acc": metrics["val"]["acc"], "test_acc": metrics["test"]["acc"],
    })
    np.save(out / "logits.npy", logits.astype(np.float16))
    metrics_path.write_text(json.dumps(metrics, indent=2))
    log.info("student %s/%s: test acc %s macro-F1 %s (teacher on its %s nodes: %s, student there: %s)",
             d.gnn, mode, metrics["test"]["acc"], metrics["test"]["macro_f1"], metrics["teacher_nodes"]["nodes"],
             (teacher.get("tuned") or {}).get("acc"), metrics["teacher_nodes"]["acc"])
    return metrics
