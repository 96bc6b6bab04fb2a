"""Registry round trip on a SQLite store: log + register (candidate), the promotion gate, load by alias."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from gkd.errors import GkdError
from gkd.gnn.distill import save_student
from gkd.gnn.models import GNN
from gkd.tracking import registry

pytestmark = pytest.mark.slow  # MLflow pyfunc logging and a fresh-process load: 8 to 47 s a test on 2 cores


def _student(path, seed):
    torch.manual_seed(seed)
    gnn = GNN("sage", 4, 8, 3, num_layers=2)
    save_student(gnn, path, {"class_names": ["a", "b", "c"], "encoder": {"id": "hashing-d4"}})
    return gnn


@pytest.fixture()
def store(tmp_path, monkeypatch):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    from gkd.tracking.tracker import ensure_experiment

    ensure_experiment("gkd-test", tmp_path)
    yield uri
    mlflow.set_tracking_uri(None)


def _register(tmp_path, seed, val_acc):
    import mlflow

    with mlflow.start_run():
        _student(tmp_path / f"s{seed}", seed)
        return registry.log_student(tmp_path / f"s{seed}", "toy-student", {"val_acc": val_acc, "test_acc": 0.5})


FRAME = pd.DataFrame({"x": [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]],
                      "neighbors": [[1], [0, 2], []]})


def test_register_promote_gate_and_load_by_alias_in_a_fresh_process(store, tmp_path):
    v1 = _register(tmp_path, 1, 0.60)
    assert v1["version"] == "1"
    first = registry.promote("toy-student")
    assert first["promoted"] and first["reason"] == "no champion yet"
    v2 = _register(tmp_path, 2, 0.55)  # worse on validation: the gate refuses it
    refused = registry.promote("toy-student")
    assert not refused["promoted"] and refused["version"] == v2["version"] == "2"
    assert refused["candidate_val_acc"] == 0.55 and refused["champion_val_acc"] == 0.60
    assert "0.5500 < champion v1's 0.6000" in refused["reason"]
    forced = registry.promote("toy-student", version="2", force=True)
    assert forced["promoted"] and forced["reason"].endswith("(forced)")
    v3 = _register(tmp_path, 3, 0.55)  # ties the champion: promoted
    assert registry.promote("toy-student")["promoted"] and v3["version"] == "3"
    assert registry.promote("toy-student", version="3")["reason"] == "version 3 already is the champion"

    # a fresh process loads models:/toy-student@champion and classifies the same table as the saved GNN
    code = ("import json, pandas as pd; from gkd.tracking.registry import load_champion; "
            f"frame = pd.DataFrame({FRAME.to_dict(orient='list')!r}); "
            "print(json.dumps(load_champion('toy-student').predict(frame).to_dict(orient='list')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={
        **__import__("os").environ, "MLFLOW_TRACKING_URI": store}, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    expected = registry.predict_table(_student(tmp_path / "check", 3), ["a", "b", "c"],
                                      np.stack(FRAME["x"].map(np.asarray)), list(FRAME["neighbors"]))
    assert got["label"] == expected["label"]
    np.testing.assert_allclose(got["probs"], expected["probs"], atol=1e-6)


def test_promote_without_versions_and_bad_input_are_clear_errors(store, tmp_path):
    with pytest.raises(GkdError, match="no model version to promote"):
        registry.promote("nothing-here")
    _register(tmp_path, 1, 0.6)
    model = registry.load_champion("toy-student", alias="candidate")
    with pytest.raises(GkdError, match="missing \\['neighbors'\\]"):
        model.predict(pd.DataFrame({"x": [[1.0, 0, 0, 0]]}))
    with pytest.raises(GkdError, match="this student takes 4"):
        model.predict(pd.DataFrame({"x": [[1.0, 0]], "neighbors": [[]]}))


def test_cli_register_then_promote_with_the_workdir_sqlite_store(tmp_path, monkeypatch, capsys):
    import mlflow

    from gkd.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    sdir = tmp_path / "student"
    _student(sdir / "checkpoint", 0)
    (sdir / "metrics.json").write_text(json.dumps({
        "gnn": "sage", "method": "kd", "test": {"acc": 0.5, "macro_f1": 0.4}, "val": {"acc": 0.6}, "history": []}))
    try:
        assert main(["promote", "--out", str(tmp_path), "--model", "gkd-student"]) == 2
        assert "no model version to promote" in capsys.readouterr().err
        # without the refine stage's checkpoint, register says what to run
        assert main(["register", "--out", str(tmp_path)]) == 2
        assert "run `gkd distill` and `gkd refine` first" in capsys.readouterr().err
        assert main(["register", "--out", str(tmp_path), "--set", "refine.enabled=false"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("registered gkd-student version 1 (alias candidate), MLflow run ")
        assert f"sqlite:///{tmp_path.resolve()}/mlflow.db" in out
        assert main(["promote", "--out", str(tmp_path), "--model", "gkd-student"]) == 0
        assert "version 1: promoted to champion (no champion yet)" in capsys.readouterr().out
    finally:
        mlflow.set_tracking_uri(None)
    assert main(["register", "--out", str(tmp_path / "empty")]) == 2
    assert "run `gkd distill` and `gkd refine` first" in capsys.readouterr().err


def test_a_sign_student_predicts_a_table_from_the_tables_own_hops():
    from gkd.gnn.models import SIGN

    torch.manual_seed(0)
    sign = SIGN(4, 8, 3, num_layers=2, dropout=0.0).eval()
    x = np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)
    neighbors = [[1, 2], [0], [0, 3], []]
    out = registry.predict_table(sign, ["a", "b", "c"], x, neighbors)
    # by hand: hop 1 = mean of the listed neighbours' rows (zeros without), hop 2 = mean of their hop 1
    h1 = np.stack([x[nb].mean(0) if nb else np.zeros(4, np.float32) for nb in neighbors])
    h2 = np.stack([h1[nb].mean(0) if nb else np.zeros(4, np.float32) for nb in neighbors])
    with torch.no_grad():
        logits, _ = sign(torch.from_numpy(np.concatenate([x, h1, h2], axis=1)))
    probs = torch.softmax(logits, 1).numpy()
    np.testing.assert_allclose(np.asarray(out["probs"]), probs, rtol=1e-5, atol=1e-6)
    assert out["label"] == [["a", "b", "c"][i] for i in probs.argmax(1)]


def test_a_student_registered_before_a_kill_is_found_again_by_its_key(store, tmp_path):
    """register_student tags the run with the student's key before it creates the version, so a job killed
    between the version and its stage marker finds that version on rerun instead of adding a duplicate."""
    import mlflow

    assert registry.version_of("toy-student", "k1") is None  # no registered model at all yet
    with mlflow.start_run():
        mlflow.set_tag(registry.STUDENT_KEY, "k1")
        _student(tmp_path / "s1", 1)
        # the version's own tags never written (killed right after registration): the run's tag finds it
        registry.log_student(tmp_path / "s1", "toy-student", {"val_acc": 0.6})
    with mlflow.start_run():
        _student(tmp_path / "s2", 2)
        registry.log_student(tmp_path / "s2", "toy-student", {"val_acc": 0.5, registry.STUDENT_KEY: "k2"})
    assert registry.version_of("toy-student", "k1") == "1"
    assert registry.version_of("toy-student", "k2") == "2"
    assert registry.version_of("toy-student", "k3") is None
