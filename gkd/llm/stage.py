"""The teacher side's stage records: rationales (Pan et al.) and the tuned teacher's outputs (LinguGKD)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gkd.stages import Stage

SAMPLE_RATIONALES = 20  # rationales shown, with their node text, in the stage's MLflow run


def _run_rationale(cfg) -> dict:
    from gkd.llm import rationale

    return rationale.run(cfg)


def _run_teacher(cfg) -> dict:
    from gkd.llm import teacher

    return teacher.run(cfg)


def _rationale_artifacts(cfg, summary: dict, tmp: Path) -> list:
    """summary.json + the first rationales with their node text and class names, for reading."""
    from gkd.data.store import TAG, read_table
    from gkd.llm.rationale import read_rationales

    table = read_rationales(cfg.stage_dir(RATIONALE))
    tag = TAG.load(cfg.graph_dir, features=False)
    nodes = read_table(cfg.graph_dir / "nodes", ["node_id", "key", "text"])
    order = np.argsort(nodes["node_id"].to_numpy())
    keys, texts = nodes["key"].to_pylist(), nodes["text"].to_pylist()
    names = tag.class_names
    name = lambda c: names[c] if 0 <= c < len(names) else None
    rows = []
    for r in table.slice(0, SAMPLE_RATIONALES).to_pylist():
        n = int(r["node_id"])
        row = int(order[n])
        rows.append({
            "node_id": n, "key": keys[row], "text": (texts[row] or "")[:300],
            "label": names[tag.labels[n]] if tag.labels[n] >= 0 else None,
            "pseudo_label": name(r["pred"]), "generated_label": name(r["gen_label"]),
            "keywords": r["keywords"], "key_neighbors": r["key_neighbors"], "reason": r["reason"],
            "json_ok": r["ok"], "problems": r["problems"],
        })
    path = tmp / "rationale_samples.json"
    path.write_text(json.dumps(rows, indent=2))
    return [path, cfg.stage_dir(RATIONALE) / "summary.json"]


def _teacher_artifacts(cfg, summary: dict, tmp: Path) -> list:
    """metrics.json, the tuning loss curve (from this run's live metrics), val accuracy / ECE per epoch and the
    tuned teacher's confusion (the per-epoch reliability PNGs are logged live, under teacher_calibration/)."""
    import mlflow

    from gkd.data.store import TAG
    from gkd.llm.teacher import eval_nodes
    from gkd.plots import confusion_png, curve_png

    tdir = cfg.stage_dir(TEACHER)
    out = [tdir / "metrics.json"]
    run = mlflow.active_run()
    hist = mlflow.MlflowClient().get_metric_history(run.info.run_id, "step.loss") if run else []
    if hist:
        rows = [{"step": m.step, "loss": m.value} for m in sorted(hist, key=lambda m: m.step)]
        out.append(curve_png(rows, ["loss"], tmp / "teacher_tuning_curve.png", step_key="step",
                             title="teacher instruction tuning"))
    epochs = (summary.get("tuning") or {}).get("epochs") or []
    if epochs:
        out.append(curve_png(epochs, ["loss", "val_acc", "val_ece"], tmp / "teacher_val_per_epoch.png",
                             title=f"teacher tuning ({summary['tuning'].get('scoring')} read-out), val after each epoch"))
    soft_path = tdir / "soft.npy"
    if soft_path.is_file():
        tag = TAG.load(cfg.graph_dir, features=False)
        evals = eval_nodes(tag.labels, tag.split, cfg.teacher.eval_budget, cfg.teacher.seed)
        pred = np.load(soft_path, mmap_mode="r")[evals].argmax(1)
        out.append(confusion_png(tag.labels[evals], pred, tag.class_names, tmp / "teacher_confusion.png",
                                 title="tuned teacher, test sample"))
    return out


def tuned_teacher(cfg) -> Path | None:
    """The tuned teacher's Hugging Face model folder (<teacher dir>/checkpoint), None before tuning."""
    path = cfg.stage_dir(TEACHER) / "checkpoint"
    return path.resolve() if (path / "config.json").is_file() else None


def _teacher_line(s: dict) -> str:
    return (f"teacher acc zero-shot {(s.get('zero_shot') or {}).get('acc')} -> tuned "
            f"{(s.get('tuned') or {}).get('acc')} on {s.get('test_nodes')} test nodes")


def _teacher_report(cfg, m: dict) -> str:
    zs, tu = m.get("zero_shot"), m["tuned"]
    zero = f"zero-shot acc {zs['acc']} (macro-F1 {zs['macro_f1']}), " if zs else ""
    return (f"teacher on {m['test_nodes']} test nodes: {zero}tuned acc {tu['acc']} (macro-F1 {tu['macro_f1']}); "
            f"{m['covered_nodes']:,} nodes with outputs, {m.get('taught_nodes', m['covered_nodes']):,} taught on")


# The rationale budget leaves out the teacher's eval and val nodes (measured, never taught): those fields count.
RATIONALE = Stage(
    name="rationale", dir="rationale",
    sections=("llm", "prompt", "rationale", "teacher.eval_budget", "teacher.val_budget", "teacher.seed"),
    inputs=("ingest",),
    run=_run_rationale, artifacts=_rationale_artifacts,
    line=lambda s: f"{s.get('nodes', 0):,} rationales ({s.get('json_ok', 0):,} with valid JSON)",
    report=lambda cfg, s: json.dumps(s, indent=2),
    help="LLM rationales for the node budget (Ray Data, resumable)")

# The teacher reads only the graph, but writes its outputs for the rationale budget (rationale.*): that
# section is part of its content.
TEACHER = Stage(
    name="teacher", dir="teacher", sections=("llm", "prompt", "rationale", "teacher"), inputs=("ingest",),
    run=_run_teacher, artifacts=_teacher_artifacts, line=_teacher_line, report=_teacher_report,
    help="tune the teacher (Ray Train + DeepSpeed), write its outputs")
