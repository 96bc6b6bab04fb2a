"""`ray job submit` round trip: a real local Ray cluster (`ray start --head` on 127.0.0.1, token auth),
the pipeline entrypoint jobs/pipeline.py on a tiny config, SUCCEEDED, outputs checked, cluster stopped."""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from gkd.config import build_config
from gkd.data import ingest
from gkd.data.store import TAG
from gkd.llm.models import make_tiny_llama
from gkd.pipeline import read_marker
from gkd.stages import stage_names
from gkd.runtime import free_port

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # a second Ray cluster (`ray start --head`) runs the job
REPO = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture()
def cluster():
    """A head node of its own (ports, temp dir, token); stopped by signalling `ray start --block`, so the
    test session's other Ray cluster is left alone (`ray stop` would kill every Ray process here)."""
    temp = tempfile.mkdtemp(prefix="gkdjob", dir="/tmp")  # short: Ray's socket paths have a length limit
    gcs, dash = free_port(), free_port()
    # every fixed default port gets a free one: the tests' own Ray instance already holds the defaults
    ports = [f"--{flag}={free_port()}" for flag in (
        "dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
        "metrics-export-port", "ray-client-server-port", "node-manager-port", "object-manager-port")]
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           # killpg's SIGTERM reaches the GCS too, so the head's default 30 s drain would wait on a dead GCS
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
           # the job driver runs `python`: the interpreter that has gkd installed
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs}",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", "--num-cpus=2", f"--temp-dir={temp}",
         "--include-dashboard=true", "--disable-usage-stats", *ports],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if head.poll() is not None:
            pytest.fail(f"ray start --head exited {head.returncode}:\n{head.stdout.read()}")
        r = subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True, text=True)
        if r.returncode == 0:
            break
        time.sleep(2)
    else:
        pytest.fail("the Ray dashboard (jobs API) did not come up within 120 s")
    try:
        yield address, env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def test_ray_job_submit_runs_the_pipeline_to_succeeded(ray_local, cluster, tmp_path, tiny_config):
    address, env = cluster
    # without the token the jobs API refuses
    no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
    denied = subprocess.run([RAY, "job", "list", "--address", address], env=no_token, capture_output=True,
                            text=True, cwd=tmp_path)
    assert denied.returncode != 0 and "auth" in (denied.stdout + denied.stderr).lower()

    data = tiny_config(tmp_path, distill={"num_workers": 1, "epochs": 3, "patience": 3},
                       teacher={"num_workers": 1, "max_steps": 1})
    cfg = build_config(data)
    ingest.run(cfg)
    make_tiny_llama(tmp_path / "tiny-llama", texts=TAG.load(cfg.graph_dir, features=False).texts())
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(data))
    job_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    job_id = f"gkd-test-{secrets.token_hex(4)}"
    cmd = [RAY, "job", "submit", "--address", address, "--submission-id", job_id, "--no-wait",
           "--working-dir", ".", "--runtime-env-json",
           json.dumps({"env_vars": {"MLFLOW_TRACKING_URI": job_env["MLFLOW_TRACKING_URI"], "HF_HUB_OFFLINE": "1"}}),
           "--", "python", "jobs/pipeline.py", "--config", str(config_path)]
    for _ in range(30):  # the head's job agent starts a little after the jobs API answers
        submit = subprocess.run(cmd, env=job_env, cwd=REPO, capture_output=True, text=True)
        if submit.returncode == 0 or "No available agent" not in submit.stderr:
            break
        time.sleep(2)
    assert submit.returncode == 0, submit.stdout + submit.stderr
    status, deadline = "", time.time() + 600
    while time.time() < deadline:
        r = subprocess.run([RAY, "job", "status", "--address", address, job_id], env=env, capture_output=True,
                           text=True)
        out = r.stdout + r.stderr  # the CLI logger writes the status line to stderr
        # `ray job status` says "Job '<id>' succeeded" / "failed" / "was stopped" when the job has ended
        status = next((s.upper() for s in ("succeeded", "failed", "stopped") if f"' {s}" in out or
                       f"' was {s}" in out), "")
        if status:
            break
        time.sleep(3)
    r = subprocess.run([RAY, "job", "logs", "--address", address, job_id], env=env, capture_output=True, text=True)
    logs = r.stdout + r.stderr
    assert status == "SUCCEEDED", f"job {job_id}: {status or 'timed out'}\n{logs[-4000:]}"
    # the driver ran the pipeline on the cluster: every stage finished and was tracked
    for stage in stage_names():
        assert read_marker(cfg, stage)["status"] == "done", stage
    student = json.loads((cfg.workdir / "student" / "metrics.json").read_text())
    assert student["epochs_run"] == 3 and 0 <= student["test"]["acc"] <= 1
    assert "registered tiny-student version 1 (alias candidate)" in logs
    assert "joining Ray cluster" in logs  # RAY_ADDRESS from the job supervisor, not a new local cluster
