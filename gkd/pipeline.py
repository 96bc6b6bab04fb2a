"""The whole job: ingest -> rationale -> teacher -> distill -> refine -> register, tracked in MLflow.

Each stage writes `<stage dir>/stage.json` (its config hash, status, summary, MLflow run). A rerun
skips a stage whose marker is `done` with the same hash, so after a failure the pipeline continues
where it stopped; inside a stage, the stage's own resume logic (rationale parts, Ray Train
checkpoints, covered.npy) loses at most the batch in flight. A stage whose config changed is rerun
from scratch (its old outputs are removed), and so is everything downstream: each hash includes the
hashes of the stages it reads from (`gkd.config.content_hash`, the one notion of "same work"; runtime
fields marked on the config models are left out). What each stage is lives in its record
(`gkd.stages.Stage`, declared next to the stage's code): this module only iterates over them.

Tracking: one parent MLflow run per invocation (params = the flattened config), a nested run per
stage with its params, metrics, per-epoch curves (logged live by rank 0 of the Ray Train workers)
and artifacts (stage summary, PNG curves, confusion matrices, sample rationales). A skipped stage
still gets its nested run, tagged `gkd.skipped` and pointing at the run that produced its outputs.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from gkd.config import ExperimentConfig, content_hash, section
from gkd.errors import GkdError
from gkd.stages import Stage, pipeline, stage_names, stage_record

log = logging.getLogger(__name__)

MARKER = "stage.json"


def stage_hashes(cfg: ExperimentConfig, stages=None) -> dict[str, str]:
    """Per stage: its content hash (its config sections and the hashes of the stages it reads)."""
    return {rec.name: content_hash(cfg, rec) for rec in (stages or pipeline())}


def read_marker(cfg: ExperimentConfig, stage: str | Stage) -> dict | None:
    path = cfg.stage_dir(stage) / MARKER
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        log.warning("%s is not valid JSON (a kill while writing it?): the stage reruns", path)
        return None


def write_marker(cfg: ExperimentConfig, stage: str | Stage, marker: dict) -> None:
    path = cfg.stage_dir(stage) / MARKER
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(marker, indent=2, default=str))
    tmp.replace(path)  # atomic: a kill leaves the old marker or the new one


def run_stage(cfg: ExperimentConfig, stage: str | Stage, track: bool = True, resume: bool = True) -> dict:
    """Run one stage unless its outputs match the config -> {stage, skipped, wall_s, summary, run_id}.

    `stage` is a name or a Stage record (the bench declares stages of its own and runs them here, so one
    set of reuse rules holds everywhere). With track, the stage gets an MLflow run: nested under the
    active run (the pipeline's), else its own. resume=False starts an unfinished stage from scratch (a
    benchmark measuring it) instead of continuing from what a killed run left.
    """
    rec = stage_record(stage)
    want = content_hash(cfg, rec)
    marker = read_marker(cfg, rec)
    done = marker is not None and marker.get("status") == "done" and marker.get("config_hash") == want
    if done and rec.still_valid is not None:
        done = rec.still_valid(marker.get("summary", {}))
    changed = marker is not None and marker.get("config_hash") != want
    if not done and rec.wipe_on_change and (changed or not resume) and cfg.stage_dir(rec).exists():
        # outputs of another config (finished or killed): they must not leak into this run
        log.warning("%s: %s: removing %s and rerunning", rec.name,
                    f"config changed ({marker.get('config_hash')} -> {want})" if changed else "not resuming",
                    cfg.stage_dir(rec))
        shutil.rmtree(cfg.stage_dir(rec))
    if not track:
        return _execute(cfg, rec, want, marker if done else None, None)
    from gkd.tracking.tracker import Tracker

    params = {s: _dump(section(cfg, s)) for s in rec.sections}
    with Tracker(cfg.name, cfg.workdir).stage(rec.name, params) as run:
        return _execute(cfg, rec, want, marker if done else None, run)


def _dump(value):
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def _execute(cfg: ExperimentConfig, rec: Stage, want: str, done_marker: dict | None, run) -> dict:
    import mlflow

    stage = rec.name
    run_id = run.info.run_id if run is not None else None
    if done_marker is not None:
        log.info("%s: up to date (config %s, finished %s): skipped", stage, want, done_marker.get("finished"))
        summary = done_marker.get("summary", {})
        if run is not None:
            mlflow.set_tags({"gkd.skipped": "true", "gkd.config_hash": want,
                             "gkd.produced_by_run": str(done_marker.get("run_id"))})
            _track(cfg, rec, summary)
        return {"stage": stage, "skipped": True, "wall_s": 0.0, "summary": summary, "run_id": run_id,
                "produced_by_run": done_marker.get("run_id")}
    write_marker(cfg, rec, {"stage": stage, "config_hash": want, "status": "running", "started": _now(),
                            "run_id": run_id})
    t0 = time.time()
    summary = rec.run(cfg)
    wall = round(time.time() - t0, 1)
    summary = json.loads(json.dumps(summary, default=str))
    write_marker(cfg, rec, {"stage": stage, "config_hash": want, "status": "done", "finished": _now(),
                            "wall_s": wall, "run_id": run_id, "summary": _compact(summary)})
    if run is not None:
        mlflow.set_tags({"gkd.skipped": "false", "gkd.config_hash": want})
        mlflow.log_metric("stage_wall_s", wall)
        _track(cfg, rec, summary)
    return {"stage": stage, "skipped": False, "wall_s": wall, "summary": summary, "run_id": run_id}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _compact(summary: dict) -> dict:
    """The summary without long per-epoch curves (they live in the stage's own files and in MLflow)."""
    return {k: v for k, v in summary.items() if k not in ("history",)}


def _track(cfg: ExperimentConfig, rec: Stage, summary: dict) -> None:
    """Metrics + artifacts of a stage into the active (nested) run (curves were logged live by rank 0)."""
    import mlflow

    from gkd.tracking.tracker import log_metrics

    log_metrics({k: v for k, v in summary.items() if k not in ("history", "per_class")}, depth=2)
    with tempfile.TemporaryDirectory(prefix=f"gkd-{rec.name}-") as tmp:
        for f in rec.artifacts(cfg, summary, Path(tmp)):
            if f is not None and Path(f).is_file():
                mlflow.log_artifact(str(f))


# ----------------------------------------------------------------------------- the pipeline


def run_pipeline(cfg: ExperimentConfig, stages: list[str] | None = None, progress=print, track: bool = True) -> dict:
    """Run `stages` (default all) in order under one parent MLflow run -> {run_id, tracking_uri, stages}."""
    stages = list(stages or stage_names())
    unknown = [s for s in stages if s not in stage_names()]
    if unknown:
        raise GkdError(f"unknown stage(s) {unknown}; stages are {', '.join(stage_names())}")
    results: dict[str, dict] = {}
    t0 = time.time()

    def run_all(tracked: bool) -> None:
        for i, stage in enumerate(stages, 1):
            progress(f"[{i}/{len(stages)}] {stage} ...")
            results[stage] = run_stage(cfg, stage, track=tracked)
            progress(_line(results[stage], time.time() - t0))

    if not track:
        run_all(False)
        return {"run_id": None, "tracking_uri": None, "stages": results}
    from gkd.tracking.tracker import Tracker

    tracker = Tracker(cfg.name, cfg.workdir)
    with tracker.parent(f"{cfg.name}-pipeline", cfg.model_dump(mode="json")) as parent:
        import mlflow

        mlflow.set_tags({"gkd.stages": ",".join(stages)})
        progress(f"MLflow run {parent.info.run_id} (experiment {cfg.name!r}) at {tracker.uri}")
        run_all(True)
        mlflow.log_metric("pipeline_wall_s", round(time.time() - t0, 1))
        mlflow.set_tags({"gkd.skipped_stages": ",".join(s for s, r in results.items() if r["skipped"]) or "none"})
    return {"run_id": parent.info.run_id, "tracking_uri": tracker.uri, "stages": results}


def _line(r: dict, elapsed: float) -> str:
    what = stage_record(r["stage"]).line(r["summary"])
    how = "reused" if r["skipped"] else f"{r['wall_s']:.0f} s"
    return f"    {r['stage']}: {what} [{how}; {elapsed / 60:.1f} min so far]"
