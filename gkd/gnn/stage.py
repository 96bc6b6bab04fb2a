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


def _run_refine(cfg) -> dict:
    from gkd.gnn import refine_stage

    return refine_stage.run(cfg)


def served_checkpoint(cfg) -> Path:
    """What register logs and Serve loads: the refine stage's checkpoint (the GLNN student + refined.npy for
    known nodes) when refinement is on, else the distill stage's."""
    return cfg.stage_dir(REFINE) / "checkpoint" if cfg.refine.enabled else student_checkpoint(cfg)


def format_refined(m: dict) -> str:
    if not m.get("enabled", True):
        return "refine: off (refine.enabled: false)"
    raw, ref, c = m["raw"], m["refined"], m["choice"]
    line = (f"refined {m['gnn']}/{m['method']}: test acc {raw['test']['acc']} raw -> {ref['test']['acc']} refined "
            f"(T={c['temperature']:.3g}, prior correction {c['prior_correction']}, C&S alphas "
            f"{c['correct_alpha']}/{c['smooth_alpha']}, chosen on prior-reweighted val acc)")
    new = m.get("glnn") or raw
    line += (f"; new nodes ({'GLNN student' if 'glnn' in m else 'student'}): {new['holdout']['acc']} on "
             f"{new['holdout']['nodes']} held-out nodes")
    return line


def _refine_artifacts(cfg, summary: dict, tmp: Path) -> list:
    path = cfg.stage_dir(REFINE) / "metrics.json"
    return [path] if path.is_file() else []


REFINE = Stage(
    name="refine", dir="refined", sections=("refine",), inputs=("ingest", "distill"), run=_run_refine,
    # BBSE solved on the simplex (not lstsq then clip): refinements made before it are not reused
    extra={"bbse": "simplex"},
    artifacts=_refine_artifacts, report=lambda cfg, m: f"{format_refined(m)}\n  checkpoint       "
                                                     f"{served_checkpoint(cfg)}",
    line=lambda s: (f"refined test acc {((s.get('refined') or {}).get('test') or {}).get('acc')}"
                    if s.get("enabled", True) else "off"),
    help="temperature, class prior and Correct & Smooth on val; GLNN back into the inductive student")
