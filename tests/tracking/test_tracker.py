"""Tracking to a SQLite store and to a live `mlflow server` started here: nested runs, params, curves."""

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from gkd.runtime import free_port
from gkd.tracking.tracker import Tracker, flatten, log_history, log_metrics, tracking_uri

CONFIG = {"name": "toy", "distill": {"gnn": "sage", "fanouts": [15, 10], "pan": {"top_fraction": 0.2}}}


def test_flatten_and_default_uri(tmp_path, monkeypatch):
    assert flatten(CONFIG) == {"name": "toy", "distill.gnn": "sage", "distill.fanouts": "[15, 10]",
                               "distill.pan.top_fraction": "0.2"}
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:1"


def _track_and_check(workdir):
    import mlflow
    from mlflow import MlflowClient

    tracker = Tracker("toy-exp", workdir)
    with tracker.parent("pipeline", CONFIG) as parent:
        with tracker.stage("distill", {"method": "kd"}) as child:
            log_history([{"epoch": 1, "loss": 2.0, "val_acc": 0.5}, {"epoch": 2, "loss": 1.0, "val_acc": 0.7}])
            log_metrics({"test": {"acc": 0.61, "nodes": 10, "per_class": {}}, "best_epoch": 2})
    client = MlflowClient(tracker.uri)
    got = client.get_run(parent.info.run_id)
    assert got.data.params["distill.fanouts"] == "[15, 10]"
    kid = client.get_run(child.info.run_id)
    assert kid.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert kid.data.params == {"method": "kd"}
    assert kid.data.metrics["test.acc"] == 0.61 and kid.data.metrics["best_epoch"] == 2
    curve = client.get_metric_history(child.info.run_id, "val_acc")
    assert [(m.step, m.value) for m in curve] == [(1, 0.5), (2, 0.7)]
    assert "config.json" in [a.path for a in client.list_artifacts(parent.info.run_id)]
    mlflow.set_tracking_uri(None)
    return tracker.uri


def test_tracking_to_sqlite_in_the_workdir(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = _track_and_check(tmp_path / "w")
    assert uri.startswith("sqlite:///") and (tmp_path / "w" / "mlflow.db").is_file()
    assert list((tmp_path / "w" / "mlartifacts").rglob("config.json"))  # artifacts stay in the work dir


@pytest.mark.slow  # an `mlflow server` subprocess: ~30 s on 2 cores
def test_tracking_to_a_live_mlflow_server(tmp_path, monkeypatch):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination",
         str(tmp_path / "artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    pytest.fail("mlflow server did not come up within 120 s")
                time.sleep(1)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        assert _track_and_check(tmp_path / "w") == f"http://127.0.0.1:{port}"
        assert not (tmp_path / "w" / "mlflow.db").exists()  # nothing went to the local default
    finally:
        server.terminate()
        server.wait(timeout=30)
