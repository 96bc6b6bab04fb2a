"""The whole job: ingest -> rationale -> teacher -> distill -> register, tracked in MLflow.

Each stage writes `<stage dir>/stage.json` (its config hash, status, summary, MLflow run). A rerun
skips a stage whose marker is `done` with the same hash, so after a failure the pipeline continues
where it stopped; inside a stage, the stage's own resume logic (rationale parts, Ray Train
checkpoints, covered.npy) loses at most the batch in flight. A stage whose config changed is rerun
from scratch (its old outputs are removed), and so is everything downstream: each hash includes the
hashes of the stages it reads from. Hashes leave out knobs that change how fast a stage runs but not
what it writes (actors, workers, devices, batch sizes of inference).

Tracking: one parent MLflow run per invocation (params = the flattened config), a nested run per
stage with its params, metrics, per-epoch curves (logged live by rank 0 of the Ray Train workers)
and artifacts (stage summary, PNG curves, confusion matrices, sample rationales). A skipped stage
still gets its nested run, tagged `gkd.skipped` and pointing at the run that produced its outputs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from gkd.config import ExperimentConfig
from gkd.errors import GkdError

log = logging.getLogger(__name__)

STAGES = ("ingest", "rationale", "teacher", "distill", "register")
STAGE_DIRS = {"ingest": "graph", "rationale": "rationale", "teacher": "teacher", "distill": "student",
              "register": "registry"}
MARKER = "stage.json"
SAMPLE_RATIONALES = 20

# How a stage runs, not what it writes: left out of its hash.
_RUNTIME = {
    "llm": ("device", "torch_threads", "cache_dir"),
    "rationale": ("num_actors", "num_cpus_per_actor", "num_gpus_per_actor", "batch_size"),
    "teacher": ("num_cpus_per_worker", "max_failures", "checkpoint_every", "use_gpu"),
    "distill": ("num_cpus_per_worker", "max_failures", "device", "infer_batch_size", "torch_threads",
                "use_gpu", "checkpoint_every"),
}


def _section(cfg: ExperimentConfig, name: str) -> dict:
    d = getattr(cfg, name).model_dump(mode="json")
    for k in _RUNTIME.get(name, ()):
        d.pop(k, None)
    return d


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_hashes(cfg: ExperimentConfig) -> dict[str, str]:
    """Per stage: a hash of its own config and of the hashes of the stages it reads."""
    from gkd.data.ingest import config_hash

    h = {"ingest": config_hash(cfg.ingest)}
    h["rationale"] = _digest([h["ingest"], _section(cfg, "llm"), _section(cfg, "prompt"), _section(cfg, "rationale")])
    h["teacher"] = _digest([h["rationale"], _section(cfg, "teacher")])
    h["distill"] = _digest([h["teacher"], _section(cfg, "distill")])
    h["register"] = _digest([h["distill"], cfg.name])
    return h


def stage_dir(cfg: ExperimentConfig, stage: str) -> Path:
    return cfg.workdir / STAGE_DIRS[stage]


def read_marker(cfg: ExperimentConfig, stage: str) -> dict | None:
    path = stage_dir(cfg, stage) / MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        log.warning("%s is not valid JSON (a kill while writing it?): the stage reruns", path)
        return None


def write_marker(cfg: ExperimentConfig, stage: str, marker: dict) -> None:
    path = stage_dir(cfg, stage) / MARKER
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(marker, indent=2, default=str))
    tmp.replace(path)  # atomic: a kill leaves the old marker or the new one


# ----------------------------------------------------------------------------- stage bodies


def _ingest(cfg):
    from gkd.data import ingest

    return ingest.run(cfg)


def _rationale(cfg):
    from gkd.llm import rationale

    return rationale.run(cfg)


def _teacher(cfg):
    from gkd.llm import teacher

    return teacher.run(cfg)


def _distill(cfg):
    from gkd.gnn import distill

    return distill.run(cfg)


def _register(cfg):
    from gkd.tracking.registry import register_student

    return register_student(cfg)


BODIES: dict[str, Callable[[ExperimentConfig], dict]] = {
    "ingest": _ingest, "rationale": _rationale, "teacher": _teacher, "distill": _distill, "register": _register,
}


def _still_registered(summary: dict) -> bool:
    """The register stage is only 'done' if the version it made exists in the current registry."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient().get_model_version(summary["name"], summary["version"])
        return summary.get("tracking_uri") == _current_uri()
    except (MlflowException, KeyError):
        return False


def _current_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


def run_stage(cfg: ExperimentConfig, stage: str, hashes: dict | None = None, track: bool = True) -> dict:
    """Run one stage unless its outputs match the config -> {stage, skipped, wall_s, summary, run_id}.

    With track, the stage gets an MLflow run: nested under the active run (the pipeline's), else its own.
    """
    if stage not in BODIES:
        raise GkdError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
    hashes = hashes or stage_hashes(cfg)
    want = hashes[stage]
    marker = read_marker(cfg, stage)
    tracker = None
    if track:
        from gkd.tracking.tracker import Tracker

        tracker = Tracker(cfg.name, cfg.workdir)
    done = marker is not None and marker.get("status") == "done" and marker.get("config_hash") == want
    if done and stage == "register":
        done = _still_registered(marker.get("summary", {}))
    if not done and marker is not None and marker.get("config_hash") != want and stage != "ingest":
        # outputs of another config (finished or killed): they must not leak into this run
        log.warning("%s: config changed (%s -> %s): removing %s and rerunning", stage, marker.get("config_hash"),
                    want, stage_dir(cfg, stage))
        shutil.rmtree(stage_dir(cfg, stage))
    if tracker is None:
        return _execute(cfg, stage, want, marker if done else None, None)
    with tracker.stage(stage, _stage_params(cfg, stage)) as run:
        return _execute(cfg, stage, want, marker if done else None, run)


def _execute(cfg: ExperimentConfig, stage: str, want: str, done_marker: dict | None, run) -> dict:
    import mlflow

    run_id = run.info.run_id if run is not None else None
    if done_marker is not None:
        log.info("%s: up to date (config %s, finished %s): skipped", stage, want, done_marker.get("finished"))
        summary = done_marker.get("summary", {})
        if run is not None:
            mlflow.set_tags({"gkd.skipped": "true", "gkd.config_hash": want,
                             "gkd.produced_by_run": str(done_marker.get("run_id"))})
            _track(cfg, stage, summary)
        return {"stage": stage, "skipped": True, "wall_s": 0.0, "summary": summary, "run_id": run_id,
                "produced_by_run": done_marker.get("run_id")}
    write_marker(cfg, stage, {"stage": stage, "config_hash": want, "status": "running", "started": _now(),
                              "run_id": run_id})
    t0 = time.time()
    summary = BODIES[stage](cfg)
    wall = round(time.time() - t0, 1)
    summary = json.loads(json.dumps(summary, default=str))
    write_marker(cfg, stage, {"stage": stage, "config_hash": want, "status": "done", "finished": _now(),
                              "wall_s": wall, "run_id": run_id, "summary": _compact(summary)})
    if run is not None:
        mlflow.set_tags({"gkd.skipped": "false", "gkd.config_hash": want})
        mlflow.log_metric("stage_wall_s", wall)
        _track(cfg, stage, summary)
    return {"stage": stage, "skipped": False, "wall_s": wall, "summary": summary, "run_id": run_id}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _compact(summary: dict) -> dict:
    """The summary without long per-epoch curves (they live in the stage's own files and in MLflow)."""
    return {k: v for k, v in summary.items() if k not in ("history",)}


def _stage_params(cfg: ExperimentConfig, stage: str) -> dict:
    sections = {"ingest": ["ingest"], "rationale": ["llm", "prompt", "rationale"], "teacher": ["llm", "prompt", "teacher"],
                "distill": ["distill"], "register": []}[stage]
    return {s: getattr(cfg, s).model_dump(mode="json") for s in sections}


# ----------------------------------------------------------------------------- what each stage logs


def _track(cfg: ExperimentConfig, stage: str, summary: dict) -> None:
    """Metrics + artifacts of a stage into the active (nested) run (curves were logged live by rank 0)."""
    import mlflow

    from gkd.tracking.tracker import log_metrics

    log_metrics({k: v for k, v in summary.items() if k not in ("history", "per_class")}, depth=2)
    with tempfile.TemporaryDirectory(prefix=f"gkd-{stage}-") as tmp:
        tmp = Path(tmp)
        files = ARTIFACTS[stage](cfg, summary, tmp)
        for f in files:
            if f is not None and Path(f).is_file():
                mlflow.log_artifact(str(f))


def _ingest_artifacts(cfg, summary, tmp: Path) -> list:
    return [cfg.graph_dir / "meta.json"]


def _rationale_artifacts(cfg, summary, tmp: Path) -> list:
    """summary.json + the first rationales with their node text and class names, for reading."""
    from gkd.data.store import TAG
    from gkd.llm.rationale import read_rationales

    from gkd.data.store import read_table

    table = read_rationales(cfg.workdir)
    tag = TAG.load(cfg.graph_dir, features=False)
    nodes = read_table(cfg.graph_dir / "nodes", ["node_id", "key", "text"])
    order = np.argsort(nodes["node_id"].to_numpy())
    keys, texts = nodes["key"].to_pylist(), nodes["text"].to_pylist()
    names = tag.class_names
    rows = []
    for r in table.slice(0, SAMPLE_RATIONALES).to_pylist():
        n = int(r["node_id"])
        row = int(order[n])
        rows.append({
            "node_id": n, "key": keys[row], "text": (texts[row] or "")[:300], "label": names[tag.labels[n]] if tag.labels[n] >= 0 else None,
            "pseudo_label": names[r["pred"]] if 0 <= r["pred"] < len(names) else None,
            "generated_label": names[r["gen_label"]] if 0 <= r["gen_label"] < len(names) else None,
            "keywords": r["keywords"], "key_neighbors": r["key_neighbors"], "reason": r["reason"],
            "json_ok": r["ok"], "problems": r["problems"],
        })
    path = tmp / "rationale_samples.json"
    path.write_text(json.dumps(rows, indent=2))
    return [path, cfg.workdir / "rationale" / "summary.json"]


def _teacher_artifacts(cfg, summary, tmp: Path) -> list:
    """metrics.json, the tuning loss curve (from this run's live metrics) and the tuned teacher's confusion."""
    import mlflow

    from gkd.data.store import TAG
    from gkd.llm.teacher import eval_nodes
    from gkd.tracking.plots import confusion_png, curve_png

    tdir = cfg.workdir / "teacher"
    out = [tdir / "metrics.json"]
    run = mlflow.active_run()
    hist = mlflow.MlflowClient().get_metric_history(run.info.run_id, "step.loss") if run else []
    if hist:
        rows = [{"step": m.step, "loss": m.value} for m in sorted(hist, key=lambda m: m.step)]
        out.append(curve_png(rows, ["loss"], tmp / "teacher_tuning_curve.png", step_key="step",
                             title="teacher instruction tuning"))
    soft_path = tdir / "soft.npy"
    if soft_path.is_file():
        tag = TAG.load(cfg.graph_dir, features=False)
        evals = eval_nodes(tag.labels, tag.split, cfg.teacher.eval_budget, cfg.teacher.seed)
        pred = np.load(soft_path, mmap_mode="r")[evals].argmax(1)
        out.append(confusion_png(tag.labels[evals], pred, tag.class_names, tmp / "teacher_confusion.png",
                                 title="tuned teacher, test sample"))
    return out


def _distill_artifacts(cfg, summary, tmp: Path) -> list:
    from gkd.data.store import TAG
    from gkd.tracking.plots import confusion_png, curve_png

    sdir = cfg.workdir / "student"
    out = [sdir / "metrics.json"]
    history = summary.get("history")
    if history is None and (sdir / "metrics.json").is_file():  # a reused stage: its marker has no curve
        history = json.loads((sdir / "metrics.json").read_text()).get("history")
    history = history or []
    out.append(curve_png(history, ["loss", "val_acc", "ce", "mix_ce"], tmp / "student_curve.png",
                         title=f"student {summary.get('gnn')}/{summary.get('method')}"))
    logits_path = sdir / "logits.npy"
    if logits_path.is_file():
        tag = TAG.load(cfg.graph_dir, features=False)
        test = np.flatnonzero((tag.split == "test") & (tag.labels >= 0))
        pred = np.load(logits_path, mmap_mode="r")[test].argmax(1)
        out.append(confusion_png(tag.labels[test], pred, tag.class_names, tmp / "student_confusion.png",
                                 title="student, test split"))
    return out


def _register_artifacts(cfg, summary, tmp: Path) -> list:
    return []


ARTIFACTS = {"ingest": _ingest_artifacts, "rationale": _rationale_artifacts, "teacher": _teacher_artifacts,
             "distill": _distill_artifacts, "register": _register_artifacts}


# ----------------------------------------------------------------------------- the pipeline


def run_pipeline(cfg: ExperimentConfig, stages: list[str] | None = None, progress=print, track: bool = True) -> dict:
    """Run `stages` (default all) in order under one parent MLflow run -> {run_id, tracking_uri, stages}."""
    stages = list(stages or STAGES)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise GkdError(f"unknown stage(s) {unknown}; stages are {', '.join(STAGES)}")
    hashes = stage_hashes(cfg)
    results: dict[str, dict] = {}
    t0 = time.time()
    if not track:
        for i, stage in enumerate(stages, 1):
            progress(f"[{i}/{len(stages)}] {stage} ...")
            results[stage] = run_stage(cfg, stage, hashes, track=False)
            progress(_line(results[stage], time.time() - t0))
        return {"run_id": None, "tracking_uri": None, "stages": results}
    from gkd.tracking.tracker import Tracker

    tracker = Tracker(cfg.name, cfg.workdir)
    with tracker.parent(f"{cfg.name}-pipeline", cfg.model_dump(mode="json")) as parent:
        import mlflow

        mlflow.set_tags({"gkd.stages": ",".join(stages)})
        progress(f"MLflow run {parent.info.run_id} (experiment {cfg.name!r}) at {tracker.uri}")
        for i, stage in enumerate(stages, 1):
            progress(f"[{i}/{len(stages)}] {stage} ...")
            results[stage] = run_stage(cfg, stage, hashes, track=True)
            progress(_line(results[stage], time.time() - t0))
        mlflow.log_metric("pipeline_wall_s", round(time.time() - t0, 1))
        mlflow.set_tags({"gkd.skipped_stages": ",".join(s for s, r in results.items() if r["skipped"]) or "none"})
    return {"run_id": parent.info.run_id, "tracking_uri": tracker.uri, "stages": results}


def _line(r: dict, elapsed: float) -> str:
    s = r["summary"]
    what = {
        "ingest": lambda: f"{s.get('num_nodes', 0):,} nodes, {s.get('num_edges', 0):,} edges, {s.get('num_classes')} classes",
        "rationale": lambda: f"{s.get('nodes', 0):,} rationales ({s.get('json_ok', 0):,} with valid JSON)",
        "teacher": lambda: (f"teacher acc zero-shot {(s.get('zero_shot') or {}).get('acc')} -> tuned "
                            f"{(s.get('tuned') or {}).get('acc')} on {s.get('test_nodes')} test nodes"),
        "distill": lambda: (f"student {s.get('gnn')}/{s.get('method')} test acc {(s.get('test') or {}).get('acc')}"),
        "register": lambda: f"{s.get('name')} version {s.get('version')} (alias {s.get('alias')})",
    }[r["stage"]]()
    how = "reused" if r["skipped"] else f"{r['wall_s']:.0f} s"
    return f"    {r['stage']}: {what} [{how}; {elapsed / 60:.1f} min so far]"
