"""`gkd run` end to end on a tiny graph and a tiny Llama: stages, config-hash reuse, MLflow tracking."""

import json

import mlflow
import pytest
from mlflow import MlflowClient

from gkd.config import build_config
from gkd.data.store import TAG
from gkd.llm.models import make_tiny_llama
from gkd.pipeline import read_marker, run_pipeline, stage_hashes
from gkd.stages import stage_names

@pytest.fixture()
def tracked(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    yield uri
    mlflow.set_tracking_uri(None)


def _children(client, parent_id):
    runs = client.search_runs([client.get_run(parent_id).info.experiment_id],
                              f"tags.mlflow.parentRunId = '{parent_id}'")
    return {r.info.run_name: r for r in runs}


@pytest.mark.slow  # `ray` comes from the ray_local fixture
def test_pipeline_tracks_every_stage_and_reuses_finished_ones(ray_local, tmp_path, tracked, capsys, tiny_config):
    cfg = build_config(tiny_config(tmp_path))
    cfg.workdir.mkdir(parents=True)
    from gkd.data import ingest

    ingest.run(cfg)  # the tiny Llama's vocabulary comes from the graph's texts
    make_tiny_llama(tmp_path / "tiny-llama", texts=TAG.load(cfg.graph_dir, features=False).texts())

    first = run_pipeline(cfg)
    assert list(first["stages"]) == list(stage_names())
    # ingest ran before the pipeline existed: adopted, not redone (ingest's own hash matched)
    assert all(not r["skipped"] for r in first["stages"].values())
    hashes = stage_hashes(cfg)
    for stage in stage_names():
        m = read_marker(cfg, stage)
        assert m["status"] == "done" and m["config_hash"] == hashes[stage]
    client = MlflowClient(tracked)
    parent = client.get_run(first["run_id"])
    assert parent.data.params["distill.method"] == "all" and parent.data.params["ingest.encoder.name"] == "hashing"
    kids = _children(client, first["run_id"])
    assert sorted(kids) == sorted(stage_names())
    student = first["stages"]["distill"]["summary"]
    d = kids["distill"]
    # rank 0 of the 2 Ray Train workers logged each epoch once
    curve = client.get_metric_history(d.info.run_id, "val_acc")
    assert [m.step for m in curve] == list(range(1, student["epochs_run"] + 1))
    assert [m.value for m in curve] == pytest.approx([h["val_acc"] for h in student["history"]])
    interp = client.get_metric_history(d.info.run_id, "interpreter.loss")
    assert len(interp) == len({m.step for m in interp}) > 0
    assert d.data.metrics["test.acc"] == student["test"]["acc"]
    assert d.data.params["distill.hidden"] == "16"
    arts = {a.path for a in client.list_artifacts(d.info.run_id)}
    assert {"student_curve.png", "student_confusion.png", "metrics.json"} <= arts
    t = kids["teacher"]
    tuning = client.get_metric_history(t.info.run_id, "step.loss")
    assert [m.step for m in tuning] == [1, 2]
    assert {"teacher_confusion.png", "teacher_tuning_curve.png"} <= {a.path for a in client.list_artifacts(t.info.run_id)}
    assert t.data.metrics["tuned.acc"] == first["stages"]["teacher"]["summary"]["tuned"]["acc"]
    samples = json.loads(open(client.download_artifacts(kids["rationale"].info.run_id, "rationale_samples.json",
                                                        str(tmp_path))).read())
    assert samples and {"node_id", "text", "keywords", "json_ok", "problems"} <= set(samples[0])
    # refine: the registered model is the GLNN student with the refined predictions of every known node
    ref = first["stages"]["refine"]["summary"]
    assert ref["glnn"]["holdout"]["nodes"] == int((TAG.load(cfg.graph_dir, features=False).split == "holdout").sum())
    assert kids["refine"].data.metrics["refined.test.acc"] == ref["refined"]["test"]["acc"]
    reg = first["stages"]["register"]["summary"]
    assert reg["name"] == "tiny-student" and reg["version"] == "1"
    model_dir = client.download_artifacts(reg["run_id"], "student/artifacts/checkpoint", str(tmp_path / "dl"))
    assert {"refined.npy", "student.json", "model.safetensors"} <= {p.name for p in __import__("pathlib").Path(model_dir).iterdir()}
    assert str(client.get_model_version_by_alias("tiny-student", "candidate").version) == "1"

    # rerun: everything is reused, nothing is registered twice, the stage runs say so
    second = run_pipeline(cfg)
    assert all(r["skipped"] for r in second["stages"].values())
    assert second["stages"]["register"]["summary"]["version"] == "1"
    kids2 = _children(client, second["run_id"])
    assert kids2["distill"].data.tags["gkd.skipped"] == "true"
    assert kids2["distill"].data.tags["gkd.produced_by_run"] == d.info.run_id
    assert kids2["distill"].data.metrics["test.acc"] == student["test"]["acc"]

    # a changed student config reruns distill and register only
    cfg3 = build_config(tiny_config(tmp_path, distill={"epochs": 4, "patience": 4}))
    third = run_pipeline(cfg3, progress=print)
    ran = [s for s, r in third["stages"].items() if not r["skipped"]]
    assert ran == ["distill", "refine", "register"]
    assert third["stages"]["distill"]["summary"]["epochs_run"] == 4
    assert third["stages"]["register"]["summary"]["version"] == "2"
    assert "distill: student" in capsys.readouterr().out


def test_changed_config_invalidates_its_stage_and_downstream_only(tmp_path, tiny_config):
    cfg = build_config(tiny_config(tmp_path))
    h = stage_hashes(cfg)
    other = stage_hashes(build_config(tiny_config(tmp_path, prompt={"hops": 2})))
    assert other["ingest"] == h["ingest"]  # the prompt does not change the graph
    assert all(other[s] != h[s] for s in ("rationale", "teacher", "distill", "refine", "register"))
    runtime = stage_hashes(build_config(tiny_config(tmp_path, rationale={"num_actors": 2},
                                                    distill={"num_cpus_per_worker": 2})))
    assert runtime == h  # how a stage runs does not change what it writes
    with pytest.raises(Exception, match="unknown stage"):
        run_pipeline(cfg, ["ingest", "nope"], track=False)
