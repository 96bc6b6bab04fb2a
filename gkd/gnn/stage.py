"""The student stage's record: neighbour-sampled GNN distillation -> <workdir>/student."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gkd.stages import Stage


def _run(cfg) -> dict:
    from gkd.gnn import distill

    return distill.run(cfg)


def format_student(m: dict) -> str:
    t, tn, teacher = m["test"], m["teacher_nodes"], m.get("teacher") or {}
    line = (f"student {m['gnn']}/{m['method']}: test acc {t['acc']} (macro-F1 {t['macro_f1']}) on {t['nodes']:,} "
            f"nodes, val acc {m['val']['acc']}")
    if teacher:
        line += (f"; on the teacher's {tn['nodes']} test nodes: student {tn['acc']} vs tuned teacher "
                 f"{teacher.get('acc')}")
    return line


def student_checkpoint(cfg) -> Path:
    """The student's checkpoint folder (model.safetensors + student.json)."""
    return cfg.stage_dir(DISTILL) / "checkpoint"


def _report(cfg, m: dict) -> str:
    return f"{format_student(m)}\n  checkpoint       {student_checkpoint(cfg)}"


def _artifacts(cfg, summary: dict, tmp: Path) -> list:
    """metrics.json, the training curve and the student's confusion matrix on the test split."""
    from gkd.data.store import TAG
    from gkd.plots import confusion_png, curve_png

    sdir = cfg.stage_dir(DISTILL)
    out = [sdir / "metrics.json"]
    history = summary.get("history")
    if history is None and (sdir / "metrics.json").is_file():  # a reused stage: its marker has no curve
        history = json.loads((sdir / "metrics.json").read_text()).get("history")
    out.append(curve_png(history or [], ["loss", "val_acc", "ce", "mix_ce"], tmp / "student_curve.png",
                         title=f"student {summary.get('gnn')}/{summary.get('method')}"))
    logits_path = sdir / "logits.npy"
    if logits_path.is_file():
        tag = TAG.load(cfg.graph_dir, features=False)
        test = np.flatnonzero((tag.split == "test") & (tag.labels >= 0))
        pred = np.load(logits_path, mmap_mode="r")[test].argmax(1)
        out.append(confusion_png(tag.labels[test], pred, tag.class_names, tmp / "student_confusion.png",
                                 title="student, test split"))
    return out


DISTILL = Stage(
    name="distill", dir="student", sections=("distill",), inputs=("ingest", "rationale", "teacher"), run=_run,
    artifacts=_artifacts, report=_report,
    line=lambda s: f"student {s.get('gnn')}/{s.get('method')} test acc {(s.get('test') or {}).get('acc')}",
    help="distill the teacher into a GNN (Ray Train, sampled, DDP)")
