"""Teacher stage (LinguGKD): zero-shot eval -> DeepSpeed instruction tuning on Ray Train ->
per-hop features and soft labels for the budget by Ray Data batch inference -> tuned eval.

Writes under <workdir>/teacher/: checkpoint/ (the tuned model, HF format), soft.npy, feat_hop{k}.npy,
covered.npy (every node with outputs), taught.npy (the teaching budget: covered minus the eval and val
nodes), calibration.json (precision vs confidence on val), metrics.json. Each step is skipped when its output exists, so a rerun continues.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from gkd.config import ExperimentConfig, LLMConfig, PromptConfig
from gkd.errors import ConfigError
from gkd.llm.features import OutputWriter, TeacherReadout, evaluate
from gkd.llm.stage import TEACHER
from gkd.llm.stream import stream_nodes

log = logging.getLogger(__name__)

CALIBRATION = "calibration.json"  # the teacher's precision vs confidence on its val nodes (fit_precision)


def eval_nodes(labels: np.ndarray, split: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """Sorted sample of at most `budget` labelled test nodes (seeded)."""
    test = np.flatnonzero((split == "test") & (labels >= 0))
    rng = np.random.default_rng([seed, 41])
    return np.sort(rng.choice(test, size=min(budget, len(test)), replace=False)) if len(test) else test


def val_nodes(labels: np.ndarray, split: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """Sorted sample of at most `budget` labelled val nodes (seeded): the teacher's per-epoch validation."""
    val = np.flatnonzero((split == "val") & (labels >= 0))
    if budget <= 0 or not len(val):
        return val[:0]
    return np.sort(np.random.default_rng([seed, 47]).choice(val, size=min(budget, len(val)), replace=False))


def teacher_split(cfg: ExperimentConfig, labels: np.ndarray, split: np.ndarray) -> np.ndarray:
    """(N,) split names the teacher works with: the graph's, or its label-rate split (teacher.labels_per_class,
    drawn as a student's with the same k / pool / seed), so teacher and students see the same labels."""
    t = cfg.teacher
    if t.labels_per_class is None:
        return split
    from gkd.gnn.inputs import SPLIT_CODES, label_rate_split, split_codes

    codes, _ = label_rate_split(split_codes(split), np.asarray(labels, np.int64), t.labels_per_class,
                                t.label_pool_per_class, t.label_seed)
    names = np.array(list(SPLIT_CODES), dtype=object)
    return names[codes].astype(split.dtype if split.dtype.kind == "U" else object)


def measured_nodes(cfg: ExperimentConfig, labels: np.ndarray, split: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(eval nodes, val nodes) of the teacher: scored to measure and calibrate it, never taught on."""
    t = cfg.teacher
    split = teacher_split(cfg, labels, split)
    return eval_nodes(labels, split, t.eval_budget, t.seed), val_nodes(labels, split, t.val_budget, t.seed)


def train_nodes(labels: np.ndarray, split: np.ndarray, budget: int | None, seed: int) -> np.ndarray:
    train = np.flatnonzero((split == "train") & (labels >= 0))
    if budget is None or budget >= len(train):
        return train
    return np.sort(np.random.default_rng([seed, 43]).choice(train, size=budget, replace=False))


class TeacherActor:
    """Ray Data callable class: one (tuned or base) teacher per actor; nodes -> soft, pred[, feats]."""

    def __init__(self, graph_dir: str, llm: dict, prompt: dict, hops: int, feature_dim: int | None, features: bool,
                 readout: str = "one_pass"):
        from gkd.data.store import TAG
        from gkd.llm.models import load_teacher
        from gkd.llm.prompts import NodePromptBuilder

        from gkd.llm.score import is_classifier

        tag = TAG.load(graph_dir, features=False)
        model, tok = load_teacher(LLMConfig.model_validate(llm))
        builder = NodePromptBuilder(tag, tag.texts(), tag.class_names, tok, PromptConfig.model_validate(prompt),
                                    class_list=not is_classifier(model))
        self.features = features
        self.readout = TeacherReadout(model, tok, builder, hops, feature_dim, model.device, readout=readout)

    def __call__(self, batch: dict) -> dict:
        nodes = [int(n) for n in batch["node_id"]]
        if self.features:
            return self.readout.run(nodes)
        # scoring only: the K-hop prompt, no per-hop features
        return self.readout.score(nodes)


def _actor_kwargs(cfg: ExperimentConfig, model_path: str, features: bool) -> dict:
    llm = cfg.llm.model_copy(update={"model": model_path}).model_dump(mode="json")
    return {"graph_dir": str(cfg.graph_dir.resolve()), "llm": llm, "prompt": cfg.prompt.model_dump(mode="json"),
            "hops": cfg.prompt.hops, "feature_dim": cfg.teacher.feature_dim, "features": features,
            "readout": cfg.teacher.readout}


def score_nodes(cfg: ExperimentConfig, model_path: str, nodes: np.ndarray, what: str) -> np.ndarray:
    """(n,) predicted classes of `nodes` by the teacher at model_path, via the actor pool."""
    r = cfg.rationale
    pred = np.full(len(nodes), -1, dtype=np.int64)
    pos = {int(n): i for i, n in enumerate(nodes)}
    for batch in stream_nodes(nodes, TeacherActor, _actor_kwargs(cfg, model_path, features=False),
                              batch_size=r.batch_size, num_actors=r.num_actors, num_cpus=r.num_cpus_per_actor,
                              num_gpus=r.num_gpus_per_actor, what=what, batch_format="numpy"):
        for n, p in zip(batch["node_id"], batch["pred"]):
            pred[pos[int(n)]] = p
    return pred


def export_tuned(adapter_dir: str, base_path: str, out_dir: Path, dtype: str) -> None:
    """Merge the adapter (or copy full weights) into a plain HF model dir with its tokenizer."""
    import torch
    from transformers import AutoTokenizer

    from gkd.llm.tune import load_tuned

    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model = load_tuned(adapter_dir, base_path, dtype=getattr(torch, dtype))
    tok = AutoTokenizer.from_pretrained(base_path)
    if model.config.pad_token_id is None:  # a classifier pools the last non-pad token of each row
        model.config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.replace(out_dir)


def tuning_examples(builder, nodes: np.ndarray, labels: np.ndarray, scoring: str) -> list[dict]:
    """names: {prompt, response = class name}; head: {prompt without the class list, label}."""
    if scoring == "names":
        return [builder.instruction_example(int(n), int(labels[n])) for n in nodes]
    return [{"prompt": builder.classification_prompt(int(n)), "label": int(labels[n])} for n in nodes]


def epoch_rows(history: list[dict]) -> list[dict]:
    """The epoch-end checkpoints of a tuning run (those with val metrics): what the bench and MLflow plot."""
    keys = ("epoch", "step", "loss", "val_acc", "val_ece", "val_nll", "train_s", "val_s")
    return [{k: h[k] for k in keys if k in h} for h in history if h.get("val_acc") is not None]


def tune(cfg: ExperimentConfig, tag, base: str, scoring: str) -> dict:
    """Tune the teacher with one read-out on every (budgeted) train label -> tune_teacher's summary + wall_s,
    examples, epochs (val accuracy / ECE per epoch)."""
    from gkd.llm.models import load_teacher
    from gkd.llm.prompts import NodePromptBuilder
    from gkd.llm.tune import tune_teacher

    tcfg = cfg.teacher.model_copy(update={"scoring": scoring})
    _, tok = load_teacher(cfg.llm.model_copy(update={"model": base}))
    builder = NodePromptBuilder(tag, tag.texts(), tag.class_names, tok, cfg.prompt, class_list=scoring == "names")
    split = teacher_split(cfg, tag.labels, tag.split)
    nodes = train_nodes(tag.labels, split, tcfg.train_budget, tcfg.seed)
    vals = val_nodes(tag.labels, split, tcfg.val_budget, tcfg.seed)
    examples = tuning_examples(builder, nodes, tag.labels, scoring)
    val = tuning_examples(builder, vals, tag.labels, "head")  # {prompt, label}: the scoring prompt either way
    t = time.time()
    res = tune_teacher(examples, base, tcfg, cfg.llm, storage_path=(cfg.stage_dir(TEACHER) / "ray").resolve(),
                       name=f"{cfg.name}-teacher-{scoring}", max_len=cfg.prompt.max_tokens + 16, val_examples=val,
                       continuations=builder.class_continuations(), num_classes=tag.num_classes)
    return {**res, "wall_s": round(time.time() - t, 1), "examples": len(examples), "val_nodes": int(len(vals)),
            "epochs": epoch_rows(res["history"])}


def write_outputs(cfg: ExperimentConfig, model_path: str, nodes: np.ndarray, num_nodes: int, num_classes: int) -> dict:
    """Soft labels + per-hop features of `nodes` by the teacher at model_path into <workdir>/teacher/ (nodes
    already in covered.npy are skipped) -> {nodes, written, wall_s, nodes_per_s, first_batch_s (actor start-up
    plus one batch)}."""
    hidden = json.loads((Path(model_path) / "config.json").read_text())["hidden_size"]
    writer = OutputWriter(cfg.stage_dir(TEACHER), num_nodes, num_classes, cfg.prompt.hops,
                          cfg.teacher.feature_dim or hidden)
    todo = nodes[~writer.covered[nodes]]
    t, first = time.time(), None
    r = cfg.rationale
    for batch in stream_nodes(todo, TeacherActor, _actor_kwargs(cfg, model_path, features=True),
                              batch_size=r.batch_size, num_actors=r.num_actors, num_cpus=r.num_cpus_per_actor,
                              num_gpus=r.num_gpus_per_actor, what="teacher outputs", batch_format="numpy"):
        writer.add(batch)
        if first is None:
            first = round(time.time() - t, 1)
    wall = time.time() - t
    return {"nodes": int(len(nodes)), "written": int(len(todo)), "wall_s": round(wall, 1),
            "nodes_per_s": round(len(todo) / wall, 3) if len(todo) else None, "first_batch_s": first}


def run(cfg: ExperimentConfig) -> dict:
    from gkd.data.store import TAG
    from gkd.llm.budget import teaching_budget
    from gkd.llm.calibration import fit_precision
    from gkd.llm.models import resolve_model
    from gkd.runtime import init_ray

    tcfg = cfg.teacher
    tdir = cfg.stage_dir(TEACHER)
    tdir.mkdir(parents=True, exist_ok=True)
    metrics_path = tdir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    save = lambda: metrics_path.write_text(json.dumps(metrics, indent=2))
    init_ray(cfg.ray)
    tag = TAG.load(cfg.graph_dir, features=False)
    base = str(resolve_model(cfg.llm.model, cfg.llm.cache_dir))
    split = teacher_split(cfg, tag.labels, tag.split)
    evals, vals = measured_nodes(cfg, tag.labels, tag.split)

    zero_shot_file = tdir / "zero_shot.npz"  # (nodes, pred): per-node answers, for grouped statistics
    if tcfg.zero_shot and ("zero_shot" not in metrics or not zero_shot_file.is_file()):
        t = time.time()
        pred = score_nodes(cfg, base, evals, "zero-shot eval")
        np.savez(zero_shot_file, nodes=evals, pred=pred)
        metrics["zero_shot"] = {**evaluate(pred, tag.labels[evals]), "wall_s": round(time.time() - t, 1)}
        save()
        log.info("zero-shot teacher: %s", metrics["zero_shot"])

    ckpt = tdir / "checkpoint"
    if not ckpt.is_dir():
        if tcfg.scoring == "auto" and tcfg.val_budget == 0:
            raise ConfigError("teacher.scoring=auto keeps the read-out that scores better on val: set "
                              "teacher.val_budget > 0, or choose scoring names or head")
        runs = {s: tune(cfg, tag, base, s) for s in (("names", "head") if tcfg.scoring == "auto" else
                                                     (tcfg.scoring,))}
        # the read-out kept: the better on val (auto), else the one asked for
        scoring = max(runs, key=lambda s: runs[s]["chosen"].get("val_acc") or -1.0)
        res = runs[scoring]
        export_tuned(res["adapter_dir"], base, ckpt, cfg.llm.dtype)
        metrics["tuning"] = {
            "scoring": scoring, "examples": res["examples"], "val_nodes": res["val_nodes"],
            "wall_s": round(sum(r["wall_s"] for r in runs.values()), 1),
            **{k: v for k, v in res["metrics"].items() if isinstance(v, (int, float))},
            "chosen_epoch": res["chosen"].get("epoch"), "val_acc": res["chosen"].get("val_acc"),
            "val_ece": res["chosen"].get("val_ece"), "epochs": res["epochs"],
            "candidates": {s: {"val_acc": r["chosen"].get("val_acc"), "wall_s": r["wall_s"],
                               "chosen_epoch": r["chosen"].get("epoch"), "epochs": r["epochs"]}
                           for s, r in runs.items()},
        }
        save()

    # per-hop features + soft labels for the teaching budget, the eval (test) nodes and the val nodes
    # (resumable via covered.npy); only the budget is taught on (taught.npy), val calibrates the targets
    taught = teaching_budget(cfg, tag.labels, split, exclude=np.concatenate([evals, vals]))
    out = write_outputs(cfg, str(ckpt.resolve()), np.union1d(np.union1d(taught, evals), vals), tag.num_nodes,
                        tag.num_classes)
    if out["written"]:
        metrics["outputs"] = {k: out[k] for k in ("nodes", "wall_s", "nodes_per_s")}
    mask = np.zeros(tag.num_nodes, bool)
    mask[taught] = True
    np.save(tdir / "taught.npy", mask)
    soft = np.load(tdir / "soft.npy", mmap_mode="r")
    tuned_pred = np.asarray(soft[evals]).argmax(1)
    metrics["tuned"] = evaluate(tuned_pred, tag.labels[evals])
    metrics["test_nodes"] = int(len(evals))
    metrics["covered_nodes"] = int(np.load(tdir / "covered.npy").sum())
    metrics["taught_nodes"] = int(len(taught))
    if len(vals):
        cal = fit_precision(np.asarray(soft[vals]), tag.labels[vals])
        (tdir / CALIBRATION).write_text(json.dumps(cal, indent=1))
        metrics["val"] = {"acc": cal["acc"], "ece": cal["ece"], "nodes": cal["nodes"]}
    save()
    log.info("teacher: zero-shot %s, tuned %s", metrics.get("zero_shot"), metrics["tuned"])
    return metrics
