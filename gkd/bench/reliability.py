"""Reliability suite: faults injected into real gkd processes, every outcome counted from what happened.

  python -m gkd.bench.reliability --profile full --out bench/results/reliability.json \\
      --workdir bench/work/reliability
  gkd bench --suite reliability [--profile quick]

Each fault runs the real command lines (`gkd run`, `gkd ingest`, `gkd serve`) as child processes on one small
experiment (a synthetic graph and a tiny random Llama in the quick profile; MiniLM on a synthetic graph of a few
thousand nodes in the full one), kills them with SIGKILL (the process and everything it started: its local Ray
cluster included) and reruns them:

  stream   the rationale stage killed at 3 random points (parts written so far), rerun after each; then one LLM
           actor killed mid-stream -> every budget node exactly once: nodes_lost, nodes_duplicated (rows written
           twice, before read_rationales drops them)
  train    one of the 2 Ray Train workers of the distill stage killed mid-run -> the epoch it resumed after, the
           epochs redone (<= checkpoint_every), final metrics vs an uninterrupted run
  driver   `gkd run` killed once inside each stage in turn, then rerun -> stages redone after they had finished,
           final student metrics vs an uninterrupted run, registered versions
  ingest   `gkd ingest` killed mid-encode (MiniLM, a feature cache of its own), rerun -> texts re-encoded vs the
           texts missing from the cache
  mlflow   a live `mlflow server` on PostgreSQL (started here: initdb + pg_ctl, as infra/ would run it), stopped
           inside the distill stage, then started again and the job rerun -> mlflow_outage_duplicates
  serve    wrk on `gkd serve` with num_replicas 1 and 2, one replica killed -> failed requests, seconds to recovery
  fuzz     schemathesis against the live service's /openapi.json, and its listening sockets (psutil)
  disk     the work dir on a small tmpfs that fills up -> a clear error, `gkd validate`, a rerun once space is freed
  inputs   the bad-input corpora (gkd.bench.bad_inputs) -> tried, clear errors

A fault that cannot run on this machine (no wrk, no PostgreSQL, no mount rights) records why, and its keys
are null: never a number it did not measure.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from gkd.bench.report import suite_parser, write_result

log = logging.getLogger("gkd.bench.reliability")

FAULTS = ("inputs", "stream", "ingest", "train", "tune", "driver", "serve", "fuzz", "disk", "mlflow")
# nodes: the synthetic graph; rationale: budget and batch of the stream fault; epochs: the train fault's;
# tune_steps: optimizer steps of the tune fault's teacher (checkpoint every 4);
# serve_s: wrk seconds per replica count; fuzz: generated cases per operation and mode
STAGES = ("ingest", "rationale", "teacher", "distill", "refine", "register")
# kills: driver kills of the stream fault; driver_stages: the stages `gkd run` is killed inside (CI's quick
# profile kills it in three of them, each kill being a Ray start-up on 2 cores)
PROFILES = {
    "quick": {"nodes": 600, "encode_nodes": 1500, "budget": 40, "batch": 4, "epochs": 24, "tune_steps": 12, "serve_s": 12,
              "fuzz": 30, "kills": 2, "driver_stages": ("rationale", "distill", "register")},
    "full": {"nodes": 3000, "encode_nodes": 6000, "budget": 120, "batch": 4, "epochs": 60, "tune_steps": 24, "serve_s": 30,
             "fuzz": 300, "kills": 3, "driver_stages": STAGES},
}
KEYS = ("nodes_lost", "nodes_duplicated", "fuzz_cases", "fuzz_server_errors", "fuzz_undocumented_statuses",
        "non_loopback_listeners", "bad_inputs_tried", "bad_inputs_clear_errors", "failed_requests_one_replica",
        "failed_requests_two_replicas", "mlflow_outage_duplicates")


# ----------------------------------------------------------------------------- the experiment


def experiment(root: Path, p: dict, name: str = "rel", small_budget: bool = False) -> dict:
    """The config (as a dict) every fault runs: the quality suite's quick experiment on a larger synthetic graph,
    with a rationale budget, a 2-worker student and epochs long enough to be killed inside. small_budget: 8
    rationale nodes, for the faults that need the whole pipeline but not a long stream."""
    from gkd.bench.quality import quick_config

    cfg = quick_config(root)
    cfg["name"] = name
    cfg["llm"] = {"model": str(p["llama"])}
    cfg["ingest"]["source"].update(num_nodes=p["nodes"], num_edges=4 * p["nodes"])
    cfg["ingest"]["split"] = {"train_per_class": 20, "val_per_class": 20}
    cfg["rationale"].update(unlabeled_budget=p["budget"], batch_size=p["batch"], num_actors=2)
    if small_budget:
        cfg["rationale"].update(splits=[], unlabeled_budget=8)
    cfg["distill"].update(epochs=p["epochs"], patience=p["epochs"], checkpoint_every=4, method="kd")
    return cfg


def write_config(path: Path, cfg: dict) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def tiny_llama(root: Path, p: dict) -> Path:
    """The tiny random Llama all faults share (its words come from a synthetic graph like theirs)."""
    from gkd.config import build_config
    from gkd.llm.models import make_tiny_llama
    from gkd.pipeline import run_stage

    out = Path(p["llama"])
    if not (out / "config.json").is_file():
        from gkd.data.store import TAG

        cfg = build_config(experiment(root / "vocab", p), "(reliability vocabulary)", [])
        run_stage(cfg, "ingest", track=False)
        make_tiny_llama(out, texts=TAG.load(cfg.graph_dir, features=False).texts())
    return out


# ----------------------------------------------------------------------------- processes


def gkd(args: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
    """`gkd <args>` in its own session (so that a kill reaches everything it starts), output to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    out = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed with it
    return subprocess.Popen([sys.executable, "-m", "gkd.cli", *args], stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def kill_tree(proc: subprocess.Popen) -> int:
    """SIGKILL a process, its session and every descendant (Ray's GCS, raylet and workers): like a machine losing
    the job. Returns how many processes were killed."""
    import psutil

    try:
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=30)
    proc.wait(timeout=30)
    return len(family)


def wait_until(cond, proc: subprocess.Popen | None, timeout_s: float, what: str, poll_s: float = 0.1) -> bool:
    """Poll cond() until true -> True; False if proc exited first; TimeoutError after timeout_s."""
    t = time.time()
    while time.time() - t < timeout_s:
        if cond():
            return True
        if proc is not None and proc.poll() is not None:
            return bool(cond())
        time.sleep(poll_s)
    raise TimeoutError(f"{what}: not reached after {timeout_s:.0f} s")


def finish(proc: subprocess.Popen, timeout_s: float, what: str) -> int:
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        raise TimeoutError(f"{what}: still running after {timeout_s:.0f} s") from None


def descendants(pid: int, match: str) -> list:
    """Descendant processes of pid whose name or command line contains `match`."""
    import psutil

    out = []
    for p in psutil.Process(pid).children(recursive=True):
        try:
            if match in p.name() or match in " ".join(p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@functools.lru_cache(maxsize=64)
def _stage_dir(conf: str, stage: str) -> Path:
    from gkd.config import load_config

    return load_config(conf).stage_dir(stage)


def marker(conf: Path, stage: str) -> dict:
    """The stage's marker (stage.json) in the experiment of config file `conf`, {} while there is none."""
    from gkd.pipeline import MARKER

    path = _stage_dir(str(conf), stage) / MARKER
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def run_to_end(args: list[str], log_path: Path, timeout_s: float, env: dict | None = None) -> int:
    return finish(gkd(args, log_path, env), timeout_s, " ".join(args[:1]))


# ----------------------------------------------------------------------------- faults


def fault_inputs(root: Path, p: dict, rng: random.Random) -> dict:
    from gkd.bench.bad_inputs import tally

    shutil.rmtree(root, ignore_errors=True)
    t = tally(root)
    return {"tried": t["tried"], "clear_errors": t["clear_errors"], "byo_folders": t["byo"], "configs": t["configs"],
            "unclear": t["unclear"]}


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob("part-*.parquet"))


def _rationale_counts(out_dir: Path, budget: np.ndarray) -> dict:
    """Rows per node over every part written (before read_rationales drops duplicates)."""
    import pyarrow.parquet as pq

    ids = [pq.read_table(f, columns=["node_id"])["node_id"].to_numpy() for f in _parts(out_dir)]
    ids = np.concatenate(ids) if ids else np.array([], dtype=np.int64)
    uniq, counts = np.unique(ids, return_counts=True)
    return {"rows": int(len(ids)), "nodes": int(len(uniq)),
            "lost": int(len(np.setdiff1d(budget, uniq))), "duplicated": int((counts - 1).sum()),
            "outside_budget": int(len(np.setdiff1d(uniq, budget)))}


def fault_stream(root: Path, p: dict, rng: random.Random) -> dict:
    """SIGKILL the rationale driver at p["kills"] random points, rerun after each; then kill one actor."""
    from gkd.config import load_config
    from gkd.llm.stage import RATIONALE

    shutil.rmtree(root, ignore_errors=True)
    conf = write_config(root / "experiment.yaml", experiment(root, p))
    args = ["run", "--config", str(conf), "--no-track"]
    assert run_to_end([*args, "--stages", "ingest"], root / "logs" / "ingest.log", 900) == 0, "ingest failed"
    cfg = load_config(conf)
    out_dir = cfg.stage_dir(RATIONALE)
    budget = _budget(cfg)  # the unlabelled budget and the training nodes (rationale.splits)
    batches = -(-len(budget) // p["batch"])
    kills = []
    for i in range(p["kills"]):
        before = len(_parts(out_dir))
        if before >= batches - 1:
            break
        target = rng.randint(before + 1, max(before + 1, min(batches - 1, before + batches // (p["kills"] + 1))))
        proc = gkd([*args, "--stages", "rationale"], root / "logs" / f"kill-{i}.log")
        reached = wait_until(lambda: len(_parts(out_dir)) >= target, proc, 900, f"rationale part {target}")
        killed = kill_tree(proc) if proc.poll() is None else 0
        kills.append({"after_parts": len(_parts(out_dir)), "target": target, "reached": reached,
                      "processes_killed": killed})
    # one LLM actor killed mid-stream: Ray restarts it (or the task), the driver goes on
    proc = gkd([*args, "--stages", "rationale"], root / "logs" / "actor-kill.log")
    now = len(_parts(out_dir))
    actor = {"killed": False}
    if now < batches - 1:
        wait_until(lambda: len(_parts(out_dir)) >= now + 1, proc, 900, "a part after the rerun")
        victims = descendants(proc.pid, "RationaleActor")
        if victims and proc.poll() is None:
            victim = victims[rng.randrange(len(victims))]
            victim.kill()
            actor = {"killed": True, "pid": victim.pid, "after_parts": len(_parts(out_dir))}
    rc = finish(proc, 1800, "rationale after the actor kill")
    actor["run_rc"] = rc
    if rc != 0:  # the stage failed with its actor: a rerun must complete it
        actor["rerun_rc"] = run_to_end([*args, "--stages", "rationale"], root / "logs" / "final.log", 1800)
    m = marker(conf, "rationale")
    budget_n = m.get("summary", {}).get("budget")
    counts = _rationale_counts(out_dir, budget)
    return {"budget": int(len(budget)), "batches": batches, "kills": kills, "actor_kill": actor,
            "stage_done": m.get("status") == "done", "summary_budget": budget_n, **counts}


def _budget(cfg) -> np.ndarray:
    """The rationale stage's budget, recomputed as the stage does (gkd.llm.rationale.run)."""
    from gkd.data.store import node_arrays
    from gkd.llm.budget import teaching_budget
    from gkd.llm.teacher import measured_nodes, teacher_split

    labels, split = node_arrays(cfg.graph_dir)
    return teaching_budget(cfg, labels, teacher_split(cfg, labels, split),
                           exclude=np.concatenate(measured_nodes(cfg, labels, split)))


def fault_ingest(root: Path, p: dict, rng: random.Random) -> dict:
    """SIGKILL `gkd ingest` mid-encode (MiniLM into a cache of its own), rerun: only the missing texts re-encoded."""
    from gkd.config import load_config
    from gkd.data.encode import FeatureCache, encoder_id

    shutil.rmtree(root, ignore_errors=True)
    exp = experiment(root, p)
    exp["ingest"]["source"].update(num_nodes=p["encode_nodes"], num_edges=4 * p["encode_nodes"], words_per_node=24)
    exp["ingest"]["encoder"] = {"name": "minilm", "batch_size": 64, "num_actors": 1, "max_seq_length": 64,
                                "cache_dir": str(root / "cache")}
    conf = write_config(root / "experiment.yaml", exp)
    cfg = load_config(conf)
    cache = FeatureCache(root / "cache", encoder_id(cfg.ingest.encoder))
    proc = gkd(["ingest", "--config", str(conf), "--no-track"], root / "logs" / "kill.log")
    total = p["encode_nodes"]
    target = rng.randint(2, max(2, total // 64 // 2))
    wait_until(lambda: len(list(cache.dir.glob("part-*.parquet"))) >= target, proc, 1800, f"cache part {target}")
    killed = proc.poll() is None
    if killed:
        kill_tree(proc)
    cached = int(len(FeatureCache(root / "cache", encoder_id(cfg.ingest.encoder)).known_hashes()))
    rc = run_to_end(["ingest", "--config", str(conf), "--no-track"], root / "logs" / "rerun.log", 1800)
    m = marker(conf, "ingest")
    enc = (m.get("summary") or {}).get("encoder") or {}
    encoded, from_cache = enc.get("encoded"), enc.get("from_cache")
    return {"texts": total, "killed_mid_encode": killed, "cached_at_kill": cached, "missing_at_kill": total - cached,
            "rerun_rc": rc, "rerun_encoded": encoded, "rerun_from_cache": from_cache,
            "reencoded_beyond_missing": None if encoded is None else int(encoded - (total - cached))}


def _kill_a_train_worker(root: Path, exp: dict, stage: str, unit: str, every: int, numbers, rng: random.Random,
                         done_re: str, resume_re: str) -> dict:
    """Run `stage` of the experiment `exp` and SIGKILL one of its 2 Ray Train workers once the log shows a `unit`
    (epoch, step) inside the second checkpoint interval (done_re: the log line of a finished unit, resume_re: a
    rank's resume line); then the same stage uninterrupted, beside it (stage_dirs). numbers(metrics.json path):
    what the final results are compared on."""
    from gkd.config import load_config

    shutil.rmtree(root, ignore_errors=True)
    conf = write_config(root / "killed.yaml", {**exp, "stage_dirs": {stage: str(root / "work" / "killed")}})
    clean_conf = write_config(root / "clean.yaml", {**exp, "stage_dirs": {stage: str(root / "work" / "clean")}})
    assert run_to_end(["run", "--config", str(conf), "--no-track", "--stages", "ingest"], root / "logs" / "ingest.log",
                      900) == 0, "ingest failed"
    log_path = root / "logs" / "killed.log"
    proc = gkd(["run", "--config", str(conf), "--no-track", "--stages", stage], log_path)
    kill_at = rng.randint(every + 1, 2 * every - 1)  # inside the second checkpoint interval

    def done() -> int:
        got = re.findall(done_re, log_path.read_text(errors="replace")) if log_path.is_file() else []
        return max(map(int, got), default=0)

    wait_until(lambda: done() >= kill_at, proc, 1800, f"{stage} {unit} {kill_at}")
    workers = descendants(proc.pid, "RayTrainWorker")
    at, victim = done(), None
    if workers and proc.poll() is None:
        victim = workers[rng.randrange(len(workers))]
        victim.kill()
    rc = finish(proc, 1800, f"{stage} after the worker kill")
    text = log_path.read_text(errors="replace")
    resumed = [int(x) for x in re.findall(resume_re, text)]
    before_resume = text[:re.search(resume_re, text).start()] if resumed else text
    reached = max(map(int, re.findall(done_re, before_resume)), default=0)
    clean_rc = run_to_end(["run", "--config", str(clean_conf), "--no-track", "--stages", stage],
                          root / "logs" / "clean.log", 1800)
    killed_m = numbers(load_config(conf).stage_dir(stage) / "metrics.json") if rc == 0 else None
    clean_m = numbers(load_config(clean_conf).stage_dir(stage) / "metrics.json") if clean_rc == 0 else None
    return {"workers": len(workers), "killed_pid": victim.pid if victim else None, f"killed_after_{unit}": at,
            "checkpoint_every": every, f"resumed_after_{unit}": min(resumed) if resumed else None,
            f"reached_{unit}": reached, f"{unit}s_redone": (reached - min(resumed)) if resumed else None, "rc": rc,
            "clean_rc": clean_rc, "killed_run": killed_m, "uninterrupted_run": clean_m,
            "same_final_metrics": None if not (killed_m and clean_m) else killed_m == clean_m}


def _student_metrics(path: Path) -> dict:
    m = json.loads(path.read_text())
    return {"test_acc": m["test"]["acc"], "val_acc": m["val"]["acc"], "epochs_run": len(m.get("history", []))}


def fault_train(root: Path, p: dict, rng: random.Random) -> dict:
    """SIGKILL one of the 2 Ray Train workers of the distill stage mid-run; compare with an uninterrupted run."""
    exp = experiment(root / "work", p)
    exp["distill"].update(method="vanilla")
    return _kill_a_train_worker(root, exp, "distill", "epoch", exp["distill"]["checkpoint_every"], _student_metrics,
                                rng, r"vanilla epoch (\d+):", r"resumes after epoch (\d+)")


def _teacher_numbers(path: Path) -> dict:
    """What a tuned teacher is judged by: its tuning's steps, last loss and val accuracy, its test accuracy."""
    m = json.loads(path.read_text())
    t = m.get("tuning", {})
    return {"steps": t.get("step"), "last_loss": t.get("last_loss"), "val_acc": t.get("val_acc"),
            "test_acc": (m.get("tuned") or {}).get("acc")}


def fault_tune(root: Path, p: dict, rng: random.Random) -> dict:
    """SIGKILL one of the 2 Ray Train workers of the teacher's DeepSpeed tuning mid-run; compare with an
    uninterrupted run."""
    exp = experiment(root / "work", p)
    every = 4
    exp["teacher"].update(max_steps=p["tune_steps"], checkpoint_every=every, train_budget=None, val_budget=20,
                          eval_budget=20, scoring="head", zero_shot=False)
    return _kill_a_train_worker(root, exp, "teacher", "step", every, _teacher_numbers, rng,
                                r"step (\d+)/\d+ loss", r"resumes after step (\d+)")


def _registry_versions(workdir: Path, name: str, uri: str | None = None) -> int:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri or f"sqlite:///{(workdir / 'mlflow.db').resolve()}")
    try:
        return len(client.search_model_versions(f"name='{name}-student'"))
    except Exception:  # noqa: BLE001 - no registered model yet
        return 0


def _student_numbers(cfg) -> dict:
    out = {}
    for stage in ("distill", "refine"):
        path = cfg.stage_dir(stage) / "metrics.json"
        if path.is_file():
            m = json.loads(path.read_text())
            test = m["test"] if "test" in m else m["refined"]["test"]
            out[stage] = round(float(test["acc"]), 6)
    return out


def fault_driver(root: Path, p: dict, rng: random.Random) -> dict:
    """SIGKILL `gkd run` once inside each stage in turn, then rerun; compare with an uninterrupted run."""
    from gkd.config import load_config

    shutil.rmtree(root, ignore_errors=True)
    conf = write_config(root / "killed.yaml", experiment(root / "killed", p, "rel-driver", small_budget=True))
    clean = write_config(root / "clean.yaml", experiment(root / "clean", p, "rel-driver", small_budget=True))
    kills, redone = [], []
    for stage in p["driver_stages"]:
        log_path = root / "logs" / f"kill-{stage}.log"
        finished = tuple(s for s in STAGES if marker(conf, s).get("status") == "done")
        proc = gkd(["run", "--config", str(conf)], log_path)
        started = wait_until(lambda: marker(conf, stage).get("status") == "running", proc, 1800,
                             f"stage {stage} running")
        time.sleep(rng.uniform(0.0, 0.5))
        # inside: the stage was still running (its marker) and the driver alive right before the kill
        inside = started and proc.poll() is None and marker(conf, stage).get("status") == "running"
        if proc.poll() is None:
            kill_tree(proc)
        kills.append({"stage": stage, "inside": inside, "status_after": marker(conf, stage).get("status")})
        redone += _redone(log_path.read_text(errors="replace"), finished)
    final_log = root / "logs" / "final.log"
    finished = tuple(s for s in STAGES if marker(conf, s).get("status") == "done")
    rc = run_to_end(["run", "--config", str(conf)], final_log, 3600)
    redone += _redone(final_log.read_text(errors="replace"), finished)
    clean_rc = run_to_end(["run", "--config", str(clean)], root / "logs" / "clean.log", 3600)
    cfg, ccfg = load_config(conf), load_config(clean)
    killed_n, clean_n = _student_numbers(cfg), _student_numbers(ccfg)
    versions = _registry_versions(root / "killed", "rel-driver")
    return {"kills": kills, "rc": rc, "clean_rc": clean_rc, "stages_redone_after_done": redone,
            "killed_run": killed_n, "uninterrupted_run": clean_n,
            "same_final_metrics": bool(killed_n) and killed_n == clean_n, "registry_versions": versions,
            "duplicate_versions": max(0, versions - 1)}


def _redone(text: str, finished: tuple[str, ...]) -> list[str]:
    """Stages a run executed again although their markers said `done` before it started (its progress line
    shows the stage, with no 'up to date' line for it)."""
    ran = re.findall(r"\[\d+/\d+\] (\w+) \.\.\.", text)
    skipped = set(re.findall(r"(\w+): up to date", text))
    return [s for s in ran if s in finished and s not in skipped]


# ----------------------------------------------------------------------------- serve, fuzz, listeners


def _serve(conf: Path, checkpoint: Path, replicas: int, log_path: Path) -> tuple[subprocess.Popen, str]:
    from gkd.bench.serve import wait_healthy
    from gkd.runtime import free_port

    port = free_port()
    proc = gkd(["serve", "--config", str(conf), "--checkpoint", str(checkpoint), "--port", str(port),
                "--set", f"serve.num_replicas={replicas}"], log_path)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, timeout_s=600, proc=proc)
    return proc, base


def _served_world(root: Path, p: dict) -> tuple[Path, Path, Path]:
    """A finished pipeline to serve: the driver fault's uninterrupted run when there, else its own."""
    from gkd.config import load_config
    from gkd.gnn.stage import served_checkpoint

    conf = root.parent / "driver" / "clean.yaml"
    if not conf.is_file():
        conf = write_config(root / "world.yaml", experiment(root / "world", p, "rel-serve", small_budget=True))
        assert run_to_end(["run", "--config", str(conf), "--no-track"], root / "logs" / "world.log", 3600) == 0
    cfg = load_config(conf)
    return conf, served_checkpoint(cfg), cfg.graph_dir


def _probe(base: str, body: bytes, stop: threading.Event, record: list) -> None:
    """One request every 50 ms: (time, ok) pairs, to time the recovery."""
    while not stop.is_set():
        t = time.time()
        try:
            req = urllib.request.Request(f"{base}/v1/predict", data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                ok = r.status == 200
        except (OSError, urllib.error.HTTPError):
            ok = False
        record.append((t, ok))
        time.sleep(0.05)


def fault_serve(root: Path, p: dict, rng: random.Random) -> dict:
    from gkd.bench.serve import lua_script, payloads, wrk

    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (make wrk)"}
    shutil.rmtree(root / "logs", ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    conf, ckpt, graph = _served_world(root, p)
    bodies = payloads(graph, seed=0, count=64)["ids1"]
    script = lua_script(root / "ids1.lua", "/v1/predict", bodies)
    out = {}
    for replicas in (1, 2):
        proc, base = _serve(conf, ckpt, replicas, root / "logs" / f"serve-{replicas}.log")
        try:
            pids = [r.pid for r in descendants(proc.pid, "ServeReplica")]
            result, record, stop = {}, [], threading.Event()
            prober = threading.Thread(target=_probe, args=(base, bodies[0].encode(), stop, record), daemon=True)
            load = threading.Thread(target=lambda: result.update(wrk(f"{base}/v1/predict", script, 16,
                                                                     p["serve_s"], 10)), daemon=True)
            load.start()
            prober.start()
            time.sleep(p["serve_s"] / 3)
            victims = descendants(proc.pid, "ServeReplica")
            killed_at = time.time()
            if victims:
                victims[rng.randrange(len(victims))].kill()
            load.join(p["serve_s"] + 120)
            # the probe goes on after the load until a request succeeds after the last failure (60 s at most)
            deadline = time.time() + 60
            while time.time() < deadline and not (record and record[-1][1]):
                time.sleep(0.1)
            stop.set()
            prober.join(30)
            after = [ok for t, ok in record if t >= killed_at]
            fails = [t for t, ok in record if t >= killed_at and not ok]
            recovered = next((t for t, ok in record if t > (max(fails) if fails else killed_at) and ok), None)
            back = wait_until(lambda: len(descendants(proc.pid, "ServeReplica")) >= replicas, proc, 120,
                              f"{replicas} replica(s) back")
            out[str(replicas)] = {
                "replicas_before": len(pids), "killed": bool(victims), "wrk": result,
                "failed_requests": int(result.get("non_2xx", 0) + result.get("socket_errors", 0)) if result else None,
                "probe_requests_after_kill": len(after), "probe_failures": len(fails),
                # from the kill to the first probe answered after its last failed one (0: none failed)
                "seconds_to_recovery": (round(recovered - killed_at, 2) if recovered else None) if fails else 0.0,
                "replicas_back": back}
        finally:
            kill_tree(proc)
    return out


def fault_fuzz(root: Path, p: dict, rng: random.Random) -> dict:
    """schemathesis against a live `gkd serve` (every default check), then its listening sockets."""
    conf, ckpt, _ = _served_world(root, p)
    proc, base = _serve(conf, ckpt, 1, root / "logs" / "fuzz-serve.log")
    try:
        fuzz = live_fuzz(base, p["fuzz"])
        fuzz["listeners"] = listeners(proc.pid)
    finally:
        kill_tree(proc)
    return fuzz


# schemathesis's checks as gkd's API is fuzzed here and in tests/serve/test_fuzz.py. 413 is added to both
# defaults: a schema-valid request may still exceed the total node limit (node_ids + keys + nodes), which JSON
# Schema cannot state, and the limits in the schema (maxItems, maxLength) are refused with 413 (too large), not
# 400/422. Nothing else is added.
FUZZ_CHECKS = {"checks": {
    "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "404", "413"]},
    "negative_data_rejection": {"expected-statuses": ["400", "401", "404", "413", "422"]}}}


def live_fuzz(base: str, examples: int) -> dict:
    """Every operation's schema-valid cases, and schema-invalid ones for POST /v1/predict, sent to `base`:
    cases, 5xx answers, statuses the schema does not list, and the other check failures (by check)."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode
    from schemathesis.config import SchemathesisConfig

    config = SchemathesisConfig.from_dict(FUZZ_CHECKS)
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json", config=config)
    counts = {"cases": 0, "server_errors": 0, "undocumented_statuses": 0, "check_failures": {}, "statuses": {}}
    examples_of = []
    for op in (o.ok() for o in schema.get_all_operations()):
        documented = {str(s) for s in op.definition.raw.get("responses", {})}
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if op.method.upper() == "POST" else [])
        for mode in modes:
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
            def send(case):
                response = case.call(base_url=base)
                code = response.status_code
                counts["cases"] += 1
                counts["statuses"][str(code)] = counts["statuses"].get(str(code), 0) + 1
                if code >= 500:
                    counts["server_errors"] += 1
                    examples_of.append({"op": op.label, "status": code, "body": str(case.body)[:200]})
                if str(code) not in documented and f"{str(code)[0]}XX" not in documented:
                    counts["undocumented_statuses"] += 1
                    examples_of.append({"op": op.label, "status": code, "undocumented": True})
                try:
                    case.validate_response(response)
                except Exception as err:  # noqa: BLE001 - each failed check is counted, not raised
                    name = type(err).__name__
                    counts["check_failures"][name] = counts["check_failures"].get(name, 0) + 1

            send()
    return {**counts, "examples": examples_of[:10]}


def listening_sockets(pid: int) -> list[dict]:
    """Every listening socket of pid and its descendants: {ip, port, pid, process (its name)}."""
    import psutil

    own = {p.pid: p for p in psutil.Process(pid).children(recursive=True)} | {pid: psutil.Process(pid)}
    return [{"ip": c.laddr.ip, "port": c.laddr.port, "pid": c.pid, "process": own[c.pid].name()}
            for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in own]


def listeners(pid: int) -> dict:
    """The listening sockets of pid and its descendants: how many, in how many processes, those not on loopback."""
    from gkd.serve.app import is_loopback

    socks = listening_sockets(pid)
    exposed = [{"ip": s["ip"], "port": s["port"], "process": s["process"]} for s in socks if not is_loopback(s["ip"])]
    return {"listening": len(socks), "processes": len({s["pid"] for s in socks}), "non_loopback": exposed}


# ----------------------------------------------------------------------------- full disk


def fault_disk(root: Path, p: dict, rng: random.Random) -> dict:
    """The work dir on a 64 MiB tmpfs, filled but for 256 KiB: ingest must stop with a clear error; once the
    filler is gone, a rerun completes and `gkd validate` passes."""
    if os.geteuid() != 0:
        return {"skipped": "mounting a tmpfs needs root"}
    shutil.rmtree(root, ignore_errors=True)
    mnt = root / "mnt"
    mnt.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        return {"skipped": f"mount -t tmpfs failed: {r.stderr.strip()[:200]}"}
    try:
        exp = experiment(mnt / "work", p)
        exp["ingest"]["source"].update(num_nodes=20000, num_edges=80000, words_per_node=16)
        exp["ingest"]["encoder"] = {"name": "hashing", "dim": 256}
        conf = write_config(root / "experiment.yaml", exp)
        filler = mnt / "filler"
        free = shutil.disk_usage(mnt).free
        with open(filler, "wb") as f:
            f.truncate(0)
            f.write(b"\0" * max(0, free - 256 * 1024))
        args = ["ingest", "--config", str(conf), "--no-track"]
        rc = run_to_end(args, root / "logs" / "full.log", 900)
        text = (root / "logs" / "full.log").read_text(errors="replace")
        errors = [ln for ln in text.splitlines() if ln.startswith("gkd ingest: error:")]
        v = subprocess.run([sys.executable, "-m", "gkd.cli", "validate", str(mnt / "work" / "graph")],
                           capture_output=True, text=True)
        filler.unlink()
        rerun = run_to_end(args, root / "logs" / "rerun.log", 900)
        v2 = subprocess.run([sys.executable, "-m", "gkd.cli", "validate", str(mnt / "work" / "graph")],
                            capture_output=True, text=True)
        # Ray Data logs its tasks' stack traces itself; what counts is that gkd's own process ends with one
        # clear line and exit 2 (an uncaught exception would end with a traceback and exit 1)
        return {"rc_when_full": rc, "clear_error": len(errors) == 1 and "no space left" in errors[0].lower(),
                "message": errors[0][:300] if errors else text[-300:], "traceback": rc not in (0, 2),
                "ray_logged_tracebacks": text.count("Traceback (most recent call last)"),
                "validate_when_full": {"rc": v.returncode, "says": (v.stdout + v.stderr).strip()[-300:]},
                "rerun_rc": rerun, "validate_after_rerun": {"rc": v2.returncode, "says": v2.stdout.strip()[-200:]}}
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# ----------------------------------------------------------------------------- MLflow on PostgreSQL


def _pg_bin() -> Path | None:
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / "initdb").is_file():
            return d
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def fault_mlflow(root: Path, p: dict, rng: random.Random) -> dict:
    """mlflow server on PostgreSQL, stopped inside the distill stage of `gkd run`, started again, job rerun."""
    from gkd.runtime import free_port

    pg = _pg_bin()
    if pg is None:
        return {"skipped": "no PostgreSQL server binaries (Debian package postgresql)"}
    import importlib.util

    if importlib.util.find_spec("psycopg2") is None:  # MLflow's PostgreSQL driver
        return {"skipped": "psycopg2 is not installed (pip install psycopg2-binary)"}
    shutil.rmtree(root, ignore_errors=True)
    data = Path(f"/tmp/gkd-pg-{os.getpid()}")
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_pg:
        shutil.chown(data, "postgres")
    pg_port, port = free_port(), free_port()
    run = lambda *cmd: subprocess.run([*as_pg, *cmd], capture_output=True, text=True, timeout=120)  # noqa: E731
    r = run(str(pg / "initdb"), "-D", str(data / "db"), "-U", "postgres", "--auth=trust")
    if r.returncode != 0:
        return {"skipped": f"initdb failed: {r.stderr.strip()[:300]}"}
    r = run(str(pg / "pg_ctl"), "-D", str(data / "db"), "-l", str(data / "pg.log"), "-w", "-o",
            f"-p {pg_port} -k {data} -c listen_addresses=127.0.0.1", "start")
    if r.returncode != 0:
        return {"skipped": f"pg_ctl start failed: {r.stderr.strip()[:300]}"}
    server = None
    try:
        run(str(pg / "createdb"), "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres", "mlflow")
        backend = f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/mlflow"  # the driver pyproject installs
        uri = f"http://127.0.0.1:{port}"

        def start_server() -> subprocess.Popen:
            s = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend,
                                  "--artifacts-destination", (root / "artifacts").resolve().as_uri(),
                                  "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                 stdout=open(root / "mlflow-server.log", "ab"), stderr=subprocess.STDOUT,
                                 start_new_session=True)
            if not wait_until(lambda: _http_ok(f"{uri}/health"), s, 300, "mlflow server health"):
                tail = (root / "mlflow-server.log").read_text(errors="replace")[-600:]
                raise RuntimeError(f"mlflow server exited with {s.returncode} before it was healthy: {tail}")
            return s

        (root / "logs").mkdir(parents=True, exist_ok=True)
        server = start_server()
        conf = write_config(root / "experiment.yaml", experiment(root / "work", p, "rel-mlflow", small_budget=True))
        env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
               "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
        log_path = root / "logs" / "outage.log"
        proc = gkd(["run", "--config", str(conf)], log_path, env)
        wait_until(lambda: marker(conf, "distill").get("status") == "running", proc, 1800,
                   "distill running")
        kill_tree(server)
        stopped_at = time.time()
        rc = finish(proc, 1800, "gkd run during the outage")
        text = log_path.read_text(errors="replace")
        errors = [ln for ln in text.splitlines() if ln.startswith("gkd run: error:")]
        server = start_server()
        rerun = run_to_end(["run", "--config", str(conf)], root / "logs" / "rerun.log", 3600, env)
        counts = _tracking_counts(uri, "rel-mlflow")
        return {"backend": "postgresql", "rc_during_outage": rc, "seconds_after_stop": round(time.time() - stopped_at, 1),
                "error_names_uri": bool(errors) and uri in errors[0], "message": errors[0][:300] if errors else None,
                "traceback": rc not in (0, 2), "rerun_rc": rerun, **counts}
    finally:
        if server is not None and server.poll() is None:
            kill_tree(server)
        run(str(pg / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop")
        shutil.rmtree(data, ignore_errors=True)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _tracking_counts(uri: str, name: str) -> dict:
    """Per stage, the finished runs that did the stage's work (not tagged skipped) beyond one; registered
    versions beyond one; stages without any finished run, skipped or not (lost: their metrics are nowhere)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    worked: dict[str, int] = {}
    finished: set[str] = set()  # a skipped stage's run carries its metrics and artifacts too
    for r in runs:
        stage = r.data.tags.get("mlflow.runName", r.info.run_name)
        if stage in STAGES and r.info.status == "FINISHED":
            finished.add(stage)
            if r.data.tags.get("gkd.skipped") == "false":
                worked[stage] = worked.get(stage, 0) + 1
    versions = len(client.search_model_versions(f"name='{name}-student'"))
    duplicate_runs = sum(max(0, n - 1) for n in worked.values())
    return {"runs": len(runs), "stage_runs_that_worked": worked, "registry_versions": versions,
            "duplicate_stage_runs": duplicate_runs, "duplicate_versions": max(0, versions - 1),
            "stages_without_a_working_run": [s for s in STAGES if worked.get(s, 0) == 0],
            "lost_stage_runs": sum(1 for s in STAGES if s not in finished),
            "duplicates": duplicate_runs + max(0, versions - 1)}


# ----------------------------------------------------------------------------- the suite


RUNNERS = {"inputs": fault_inputs, "stream": fault_stream, "ingest": fault_ingest, "train": fault_train,
           "tune": fault_tune, "driver": fault_driver, "serve": fault_serve, "fuzz": fault_fuzz, "disk": fault_disk,
           "mlflow": fault_mlflow}


def keys(faults: dict) -> dict:
    """The result keys, each from its fault's counts (None when the fault did not run)."""
    def get(fault: str, *path):
        v = faults.get(fault) or {}
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        return v

    listen = get("fuzz", "listeners", "non_loopback")
    return {"nodes_lost": get("stream", "lost"), "nodes_duplicated": get("stream", "duplicated"),
            "fuzz_cases": get("fuzz", "cases"), "fuzz_server_errors": get("fuzz", "server_errors"),
            "fuzz_undocumented_statuses": get("fuzz", "undocumented_statuses"),
            "non_loopback_listeners": None if listen is None else len(listen),
            "bad_inputs_tried": get("inputs", "tried"), "bad_inputs_clear_errors": get("inputs", "clear_errors"),
            "failed_requests_one_replica": get("serve", "1", "failed_requests"),
            "failed_requests_two_replicas": get("serve", "2", "failed_requests"),
            "mlflow_outage_duplicates": get("mlflow", "duplicates")}


def run(profile: str, out: Path, workdir: Path, faults: list[str] | None = None, seed: int = 0,
        argv: list[str] | None = None) -> dict:
    workdir = Path(workdir).resolve()
    p = {**PROFILES[profile], "llama": str(workdir / "tiny-llama")}
    workdir.mkdir(parents=True, exist_ok=True)
    prev = json.loads(out.read_text()) if out.is_file() else {}
    results = dict(prev.get("faults", {})) if prev.get("profile") == profile else {}
    t0 = time.time()
    tiny_llama(workdir, p)
    for name in faults or FAULTS:
        rng = random.Random(f"{seed}-{name}")
        log.info("fault %s (%s profile)", name, profile)
        t = time.time()
        try:
            results[name] = RUNNERS[name](workdir / name, p, rng)
        except Exception as err:  # noqa: BLE001 - one fault's failure is recorded; the others still run
            log.exception("fault %s failed", name)
            results[name] = {"error": f"{type(err).__name__}: {err}"[:500]}
        results[name]["wall_s"] = round(time.time() - t, 1)
        log.info("fault %s: %s", name, json.dumps(results[name], default=str)[:600])
        write_result(out, {"profile": profile, "faults": results, **keys(results)}, "gkd.bench.reliability", argv)
    return write_result(out, {"profile": profile, "faults": results, **keys(results),
                              "wall_s": round(time.time() - t0, 1)}, "gkd.bench.reliability", argv)


def main(argv: list[str] | None = None) -> int:
    from gkd.runtime import setup_logging

    parser = suite_parser(__doc__, "reliability", PROFILES, "bench/work/reliability")
    parser.add_argument("--faults", type=lambda v: [x.strip() for x in v.split(",") if x.strip()],
                        help=f"a comma-separated subset of {','.join(FAULTS)} (default: all); results of the "
                             "others already in --out are kept")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill points")
    args = parser.parse_args(argv)
    setup_logging()
    unknown = sorted(set(args.faults or []) - set(FAULTS))
    if unknown:
        parser.error(f"--faults: unknown {', '.join(unknown)}; choose from {', '.join(FAULTS)}")
    run(args.profile, Path(args.out), Path(args.workdir), args.faults, args.seed, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())


# ---------------------------------------------------------------- BENCHMARKS.md section (gkd.bench.markdown)


MARKDOWN_TITLE = "Reliability: faults injected, outcomes counted"


def verdicts(r: dict) -> dict[str, tuple[bool | None, str, str]]:
    """Per fault: (goal met; None when it did not run, what was counted, the goal)."""
    f = r.get("faults", {})
    out = {}

    def put(name, ok, counted, goal):
        v = f.get(name)
        if v is None:
            return
        if "skipped" in v:
            out[name] = (None, f"skipped: {v['skipped']}", goal)
        elif "error" in v:
            out[name] = (False, f"the fault itself failed: {v['error']}", goal)
        else:
            out[name] = (bool(ok(v)), counted(v), goal)

    put("inputs", lambda v: v["clear_errors"] == v["tried"],
        lambda v: f"{v['clear_errors']} clear errors of {v['tried']} inputs ({v['byo_folders']} BYO folders, "
                  f"{v['configs']} configs)", "every input a clear error")
    put("stream", lambda v: v["lost"] == 0 and v["duplicated"] == 0 and v["stage_done"],
        lambda v: f"{len(v['kills'])} driver kills + {'1 actor kill' if v['actor_kill'].get('killed') else 'no actor'}"
                  f" over {v['batches']} batches: {v['budget']} budget nodes, {v['lost']} lost, {v['duplicated']} "
                  f"written twice", "0 lost, 0 duplicated")
    put("ingest", lambda v: v["rerun_rc"] == 0 and v["reencoded_beyond_missing"] == 0,
        lambda v: f"killed with {v['cached_at_kill']:,} of {v['texts']:,} texts cached; the rerun encoded "
                  f"{v['rerun_encoded']:,} ({v['reencoded_beyond_missing']:+,} beyond the missing ones)",
        "only the missing texts re-encoded")
    def worker_kill(name: str, unit: str, workers: str, what: str) -> None:  # the train and tune faults
        put(name, lambda v: v["rc"] == 0 and v["same_final_metrics"] and v[f"{unit}s_redone"] is not None
            and v[f"{unit}s_redone"] <= v["checkpoint_every"],
            lambda v: f"1 of {v['workers']} {workers} killed after {unit} {v[f'killed_after_{unit}']} (the run "
                      f"reached {v[f'reached_{unit}']}); resumed after {unit} "
                      f"{v[f'resumed_after_{unit}']} ({v[f'{unit}s_redone']} redone, checkpoint every "
                      f"{v['checkpoint_every']}); final {what} {'equal to' if v['same_final_metrics'] else 'unlike'}"
                      " an uninterrupted run", f"{unit}s redone <= checkpoint interval, same final {what}")

    worker_kill("train", "epoch", "distill workers", "metrics")
    worker_kill("tune", "step", "DeepSpeed workers of the teacher's tuning", "teacher")
    put("driver", lambda v: v["rc"] == 0 and not v["stages_redone_after_done"] and v["same_final_metrics"]
        and v["duplicate_versions"] == 0,
        lambda v: f"`gkd run` killed inside {sum(k['inside'] for k in v['kills'])} of {len(v['kills'])} stages; "
                  f"{len(v['stages_redone_after_done'])} finished stages redone; final metrics "
                  f"{'equal to' if v['same_final_metrics'] else 'differ from'} an uninterrupted run; "
                  f"{v['registry_versions']} registered version(s)",
        "finished stages reused, same metrics, 1 version")
    put("serve", lambda v: v.get("2", {}).get("failed_requests") == 0,
        lambda v: "; ".join(f"{n} replica(s): {s['failed_requests']} of {s['wrk'].get('requests', 0):,} wrk "
                            f"requests failed, recovered in {s['seconds_to_recovery']} s"
                            + (f", {s['probe_failures']} of {s['probe_requests_after_kill']} fresh-connection "
                               "probes failed" if "probe_failures" in s else "")
                            for n, s in sorted(v.items()) if isinstance(s, dict) and "wrk" in s),
        "0 failed requests with 2 replicas")
    put("fuzz", lambda v: v["server_errors"] == 0 and v["undocumented_statuses"] == 0
        and not v["listeners"]["non_loopback"],
        lambda v: f"{v['cases']:,} generated requests: {v['server_errors']} 5xx, {v['undocumented_statuses']} "
                  f"undocumented statuses; {v['listeners']['listening']} listening sockets, "
                  f"{len(v['listeners']['non_loopback'])} off loopback",
        "0 5xx, 0 undocumented, 0 off loopback")
    put("disk", lambda v: v["clear_error"] and not v["traceback"] and v["rerun_rc"] == 0
        and v["validate_after_rerun"]["rc"] == 0,
        lambda v: f"ingest on a full tmpfs: exit {v['rc_when_full']}, "
                  f"{'one clear error' if v['clear_error'] else 'no clear error'}"
                  f"{', a traceback' if v['traceback'] else ''}; validate exit {v['validate_when_full']['rc']}; "
                  f"rerun once freed: exit {v['rerun_rc']}", "a clear error, then a rerun completes")
    put("mlflow", lambda v: v["rerun_rc"] == 0 and v["duplicates"] == 0
        and (v["rc_during_outage"] == 0 or v["error_names_uri"]),
        lambda v: f"server stopped inside distill: exit {v['rc_during_outage']}"
                  f"{' naming the tracking URI' if v['error_names_uri'] else ''}; rerun exit {v['rerun_rc']}; "
                  f"{v['duplicates']} duplicate runs/versions, {v['lost_stage_runs']} stages without a run",
        "an error naming the URI (or it goes on), 0 duplicates")
    return out


def markdown_headline(r: dict) -> tuple[str, str]:
    v = verdicts(r)
    ran = [ok for ok, _, _ in v.values() if ok is not None]
    return f"{sum(ran)}/{len(ran)}", "faults whose counted outcome meets its goal (0 lost, 0 duplicated, 0 5xx ...)"


def markdown_section(r: dict, plot) -> list[str]:
    from gkd.bench.markdown import table

    rows = [[name, "–" if ok is None else ("yes" if ok else "**no**"), counted, goal]
            for name, (ok, counted, goal) in verdicts(r).items()]
    keys_row = ", ".join(f"`{k}` {r.get(k) if r.get(k) is not None else '–'}" for k in KEYS)
    return (["Each fault SIGKILLs real gkd processes (and everything they started) or breaks what they depend on, "
             "then reruns them; every figure is counted from the run (`gkd.bench.reliability`).", ""]
            + table(["fault", "goal met", "counted", "goal"], rows) + ["", f"Result keys: {keys_row}."])


def markdown_losses(r: dict) -> list[str]:
    return [f"reliability fault `{name}` misses its goal ({goal}): {counted}."
            for name, (ok, counted, goal) in verdicts(r).items() if ok is False]
