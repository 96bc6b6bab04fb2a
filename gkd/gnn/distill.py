"""Student stage: (Pan's interpreter ->) neighbour-sampled distillation on Ray Train -> full-graph evaluation.

Writes under cfg.stage_dir("distill") (<workdir>/student): checkpoint/ (model.safetensors + student.json: the
GNN spec, class names, feature encoder), logits.npy (N, C) fp16, metrics.json (test/val accuracy
and macro-F1, per-class report, the teacher's accuracy next to the student's on the same nodes,
training curve). Whether a finished run is reused is the pipeline's business (stage.json, content
hash); a killed one resumes from its last epoch checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from gkd.config import DistillConfig, ExperimentConfig, content_hash
from gkd.errors import DataError
from gkd.gnn import losses as L
from gkd.gnn.inputs import (TEST, VAL, GraphArrays, InterpreterTargets, RationaleTargets, SoftLabels, StudentInputs,
                            graph_arrays, label_rate_split, rationale_arrays, read_teacher_accuracy, teacher_arrays)
from gkd.gnn.models import GNN, build_gnn
from gkd.gnn.train import (METHOD_LOSSES, EpochHook, LoopConfig, keyword_inputs, repeat_key_edges, tensors,
                           train_distributed)
from gkd.gnn.stage import DISTILL
from gkd.live import live_target
from gkd.llm.stage import RATIONALE, TEACHER

log = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
SPEC_FILE = "student.json"


# what the interpreter does not read: students of other methods and loss weights share one interpreter
_STUDENT_ONLY = ("method", "kd_temperature", "kd_weight", "nce_temperature", "mix")
_STUDENT_ONLY_PAN = ("output_weight", "semantic_weight", "structural_weight", "top_fraction")


def interpreter_key(cfg: ExperimentConfig) -> str:
    """content_hash of the distill stage with the student-only fields at their defaults: equal for every
    student that would train the same interpreter."""
    d, default = cfg.distill, DistillConfig()
    pan = d.pan.model_copy(update={k: getattr(default.pan, k) for k in _STUDENT_ONLY_PAN})
    d = d.model_copy(update={**{k: getattr(default, k) for k in _STUDENT_ONLY}, "pan": pan})
    return content_hash(cfg.model_copy(update={"distill": d}), DISTILL)


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


def pan_weights(r: RationaleTargets, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(N,) float32 weights of the semantic and structural alignment sets (1 on the chosen nodes)."""
    out = []
    for raw in (r.sem_score, r.struct_score):
        score = torch.from_numpy(np.nan_to_num(raw, nan=-np.inf))
        valid = torch.from_numpy(~np.isnan(raw))
        out.append(L.top_fraction_mask(score, valid, fraction).numpy().astype(np.float32))
    return out[0], out[1]


def save_student(gnn: GNN, out: Path, meta: dict) -> None:
    """checkpoint/model.safetensors + checkpoint/student.json (spec, class names, encoder): pickle-free."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in gnn.state_dict().items()}, out / MODEL_FILE)
    (out / SPEC_FILE).write_text(json.dumps({"spec": gnn.spec(), **meta}, indent=2))


def load_refined(checkpoint_dir: str | Path, info: dict) -> np.ndarray | None:
    """The refine stage's whole-graph class probabilities (N, C) float32 saved with a student, if any."""
    if not info.get("refined"):
        return None
    path = Path(checkpoint_dir) / info["refined"]
    if not path.is_file():
        raise DataError(f"{checkpoint_dir}/student.json names refined predictions {info['refined']!r}, but "
                        f"{path} is missing")
    return np.load(path).astype(np.float32)


def load_student(checkpoint_dir: str | Path) -> tuple[GNN, dict]:
    """A saved student -> (GNN in eval mode, its student.json)."""
    from safetensors.torch import load_file

    checkpoint_dir = Path(checkpoint_dir)
    info = json.loads((checkpoint_dir / SPEC_FILE).read_text())
    gnn = build_gnn(info["spec"])
    gnn.load_state_dict(load_file(checkpoint_dir / MODEL_FILE))
    return gnn.eval(), info


def train_student(inputs: StudentInputs, cfg: ExperimentConfig, mode: str, spec: dict, out: Path,
           epoch_hook: EpochHook | None = None, key: str | None = None, loop_extra: dict | None = None) -> dict:
    """Ray Train run of `mode` on `inputs` (put once in the object store) -> the final state (+ wall_s).
    epoch_hook: see LoopConfig (tests only); key: the run's content hash (default: the distill stage's);
    loop_extra: more LoopConfig fields (GLNN's)."""
    import ray

    d = cfg.distill
    # rank 0 logs each epoch into the active MLflow run (the pipeline's distill stage), if any
    prefix = {"interpreter": "interpreter.", "glnn": "glnn."}.get(mode, "")
    loop = LoopConfig(distill=d, mode=mode, spec=spec, mlflow=live_target(prefix), epoch_hook=epoch_hook,
                      **(loop_extra or {}))
    if key is None:
        key = interpreter_key(cfg) if mode == "interpreter" else content_hash(cfg, DISTILL)
    name = f"{cfg.name}-{mode}-{d.gnn}-w{d.num_workers}-{key}"
    t = time.time()
    state = train_distributed(ray.put(inputs), loop, (out / "ray").resolve(), name)
    state["wall_s"] = round(time.time() - t, 1)
    return state


def _llm_soft(inputs: StudentInputs) -> SoftLabels:
    """Pseudo/soft-label targets pos (N,) -> soft (M, C): the tuned teacher's where it ran, else the
    rationale LLM's; with calibrated teacher weights, the teacher's rows carry them (rationale-only rows,
    which nothing calibrates, weigh 1)."""
    n = len(inputs.graph.y)
    sources = [(t.pos, t.soft) for t in (inputs.rationale, inputs.teacher) if t is not None]
    has_any = np.zeros(n, dtype=bool)
    for pos, _ in sources:
        has_any |= pos >= 0
    nodes = np.flatnonzero(has_any)
    soft = np.zeros((len(nodes), inputs.graph.num_classes), dtype=np.float32)
    for pos, rows in sources:  # the teacher comes last, so it wins where both exist
        at = pos[nodes]
        soft[at >= 0] = rows[at[at >= 0]]
    l_pos = np.full(n, -1, dtype=np.int32)
    l_pos[nodes] = np.arange(len(nodes), dtype=np.int32)
    weight = None
    t = inputs.teacher
    if t is not None and t.weight is not None:
        weight = np.ones(len(nodes), dtype=np.float32)
        at = t.pos[nodes]
        weight[at >= 0] = t.weight[at[at >= 0]]
    return SoftLabels(pos=l_pos, soft=soft, weight=weight)


def train_interpreter(inputs: StudentInputs, cfg: ExperimentConfig, idir: Path,
                      device: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """Pan's interpreter on rationale-augmented inputs -> (logits (N, C), hidden (N, h), metrics), cached in idir."""
    d = cfg.distill
    key = interpreter_key(cfg)
    g = inputs.graph
    # the interpreter passes messages over key-neighbour edges: a SIGN student gets a SAGE interpreter. Built
    # like the student (a GIN's sums capped at its training fanouts, as in the student's full-graph inference)
    spec = student_spec(d.model_copy(update={"gnn": "sage"}) if d.gnn == "sign" else d,
                        g.x.shape[1] + inputs.rationale.kw_emb.shape[1], g.num_classes)
    done = idir / "metrics.json"
    if done.is_file():
        cached = json.loads(done.read_text())
        # an interpreter saved without its spec was built with uncapped GIN sums
        if cached.get("key") == key and cached.get("spec", {**spec, "sum_caps": None}) == spec:
            return np.load(idir / "logits.npy"), np.load(idir / "hidden.npy"), cached
    icfg = cfg.model_copy(update={"distill": d.model_copy(update={"epochs": d.pan.interpreter_epochs or d.epochs})})
    state = train_student(inputs, icfg, "interpreter", spec, idir)
    gnn = build_gnn(spec)
    gnn.load_state_dict(state["best_model"])
    A = tensors(inputs)
    logits, hidden = _infer(gnn, g, d, device, "interpreter inference",
                            features=lambda n_id: keyword_inputs(A.rationale, n_id, A.graph.x[n_id]),
                            edge_hook=lambda n_id, ei: repeat_key_edges(A.rationale, n_id, ei, d.pan.key_edge_repeat))
    metrics = {"key": key, "spec": spec, "best_epoch": state["best_epoch"], "best_val_sampled": state["best_val"],
               "wall_s": state["wall_s"],
               "val": evaluate_logits(logits, g.y, np.flatnonzero(g.split == VAL)),
               "test": evaluate_logits(logits, g.y, np.flatnonzero(g.split == TEST))}
    idir.mkdir(parents=True, exist_ok=True)
    np.save(idir / "logits.npy", logits)
    np.save(idir / "hidden.npy", hidden)
    done.write_text(json.dumps(metrics, indent=2))
    log.info("interpreter: val %s test %s", metrics["val"]["acc"], metrics["test"]["acc"])
    return logits, hidden, metrics


def student_spec(d: DistillConfig, in_dim: int, num_classes: int) -> dict:
    """The student's constructor arguments (build_gnn) from the distill config."""
    if d.gnn == "sign":
        return {"kind": "sign", "in_dim": in_dim, "hidden": d.hidden, "num_classes": num_classes,
                "num_layers": d.num_layers, "dropout": d.dropout}
    return {"kind": d.gnn, "in_dim": in_dim, "hidden": d.hidden, "num_classes": num_classes,
            "num_layers": d.num_layers, "dropout": d.dropout, "heads": d.heads, "root_weight": d.root_weight,
            "jk": d.jk, "sum_caps": gin_sum_caps(d)}


def gin_sum_caps(d: DistillConfig) -> list[int] | None:
    """GIN's per-layer neighbour caps from the training fanouts. With PyG-style trimming the last layer sums
    the seeds' sampled neighbours (fanouts[0]) and layer i mostly those of hop L-1-i's nodes
    (fanouts[L-1-i]). None for other kinds, or when any hop takes all neighbours (-1: nothing to match)."""
    if d.gnn != "gin" or any(f < 0 for f in d.fanouts):
        return None
    return [d.fanouts[d.num_layers - 1 - i] for i in range(d.num_layers)]


def with_hops(graph: GraphArrays, d: DistillConfig) -> GraphArrays:
    """The graph with SIGN's precomputed hops when the student is SIGN (computed once per run)."""
    from gkd.gnn.propagate import hop_features

    if d.gnn == "sign" and graph.hop_x is None:
        graph.hop_x = hop_features(graph.x, graph.indptr, graph.indices, d.num_layers)
    return graph


def _infer(gnn: GNN, graph: GraphArrays, d: DistillConfig, device: str, what: str, features=None, edge_hook=None):
    """Full-neighbourhood layer-wise inference over every node -> (logits (N, C), hidden (N, h)); features(n_id)
    defaults to the graph's x rows. SIGN: its rows of precomputed hops, in batches (h: the last hop's branch)."""
    from gkd.gnn.infer import layerwise_inference, sign_inference

    if gnn.kind == "sign":
        return sign_inference(gnn, graph.features(True), d.infer_batch_size, device)
    if features is None:
        x = tensors(graph).x
        features = lambda n_id: x[n_id]  # noqa: E731
    return layerwise_inference(gnn, features, graph.indptr, graph.indices, d.infer_batch_size,
                               device, edge_hook=edge_hook, what=what)


def run(cfg: ExperimentConfig) -> dict:
    """The student stage, into cfg.stage_dir("distill"); Pan's interpreter into distill.interpreter_dir (default
    <stage dir>/interpreter: students of different methods can share one)."""
    from gkd.data.store import TAG, read_holdout
    from gkd.gnn.infer import layer_inputs
    from gkd.gnn.infer import holdout_accuracy
    from gkd.llm.rationale import read_rationales
    from gkd.llm.teacher import measured_nodes
    from gkd.runtime import init_ray, resolve_device

    d = cfg.distill
    mode = d.method
    out = cfg.stage_dir(DISTILL)
    key = content_hash(cfg, DISTILL)
    metrics_path = out / "metrics.json"
    device = resolve_device(d.device, "distill.device")
    tag = TAG.load(cfg.graph_dir)
    graph = graph_arrays(tag)
    losses = METHOD_LOSSES[mode]
    counts: dict = {}
    if d.labels_per_class is not None:
        graph.split, counts["label_rate"] = label_rate_split(
            graph.split, graph.y, d.labels_per_class, d.label_pool_per_class,
            d.seed if d.label_seed is None else d.label_seed)
    inputs = StudentInputs(with_hops(graph, d))
    tdir = cfg.stage_dir(TEACHER)
    if mode != "vanilla":
        inputs.teacher, t_counts = teacher_arrays(tdir, tag.num_nodes, tag.num_classes, d.teacher_weighting,
                                                  d.precision_floor, d.negative_precision)
        counts["teacher_covered"] = int((inputs.teacher.pos >= 0).sum())
        counts.update(t_counts)
    init_ray(cfg.ray)  # after the inputs are known to be there, so a missing file fails fast
    interpreter = None
    if "pan" in losses:
        table = read_rationales(cfg.stage_dir(RATIONALE))
        if table.num_rows == 0:
            raise DataError(f"{cfg.stage_dir(RATIONALE)} has no rationales: run `gkd rationale` first "
                            f"(distill.method={mode} needs them)")
        inputs.rationale, pan_counts = rationale_arrays(table, graph, cfg.ingest.encoder, d.pan,
                                                        cache=out / "pan" / "keywords.npz")
        counts.update(pan_counts)
        inputs.llm_soft = _llm_soft(inputs)
        i_logits, i_hidden, interpreter = train_interpreter(inputs, cfg, Path(d.interpreter_dir or out / "interpreter"),
                                                            device)
        sem_w, struct_w = pan_weights(inputs.rationale, d.pan.top_fraction)
        inputs.interpreter = InterpreterTargets(logits=i_logits, hidden=i_hidden, sem_w=sem_w, struct_w=struct_w)
        counts.update(semantic_nodes=int(sem_w.sum()), structural_nodes=int(struct_w.sum()))
    if "pseudo" in losses and inputs.llm_soft is None:
        inputs.llm_soft = _llm_soft(inputs)

    spec = student_spec(d, graph.x.shape[1], tag.num_classes)
    state = train_student(inputs, cfg, mode, spec, out)
    gnn = build_gnn(spec)
    gnn.load_state_dict(state["best_model"])
    t = time.time()
    # every layer's inputs: the logits of all nodes, and what a new node's inductive pass reads
    layers = layer_inputs(gnn, graph.x, graph.indptr, graph.indices, d.infer_batch_size, device)
    logits = layers[1]
    infer_s = round(time.time() - t, 1)
    holdout = holdout_accuracy(gnn, graph, read_holdout(cfg.graph_dir), device, d.infer_batch_size, layers)

    labels = graph.y
    # the teacher's own test nodes (drawn from its label-rate split when it has one), for a side-by-side
    teacher_nodes = measured_nodes(cfg, tag.labels, tag.split)[0]
    teacher_nodes = teacher_nodes[graph.split[teacher_nodes] == TEST]  # a label-rate pool may take some
    teacher = read_teacher_accuracy(tdir)
    metrics = {
        "key": key, "gnn": d.gnn, "method": mode, "seed": d.seed, "num_workers": d.num_workers,
        "test": evaluate_logits(logits, labels, np.flatnonzero(graph.split == TEST), tag.class_names),
        "val": evaluate_logits(logits, labels, np.flatnonzero(graph.split == VAL)),
        # the teacher was scored on a sample of test nodes: the student on exactly those, for a fair comparison
        "teacher_nodes": evaluate_logits(logits, labels, teacher_nodes),
        # test nodes held out of the graph at ingest, classified as new nodes (features + edges into the graph)
        "holdout": holdout,
        "teacher": teacher.get("tuned"), "teacher_zero_shot": teacher.get("zero_shot"),
        "best_epoch": state["best_epoch"], "epochs_run": state["epoch"], "best_val_sampled": state["best_val"],
        "train_wall_s": state["wall_s"], "infer_wall_s": infer_s, "inputs": counts,
        "interpreter": interpreter,
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
