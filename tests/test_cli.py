import json

import pytest

from gkd.cli import main


@pytest.mark.ray
@pytest.mark.slow
def test_ingest_prints_summary_then_validate_and_summary(ray_local, tmp_path, capsys):
    out = tmp_path / "w"
    rc = main(["ingest", "--source", "synthetic", "--out", str(out),
               "--set", "ingest.source.num_nodes=500", "--set", "ingest.source.num_edges=2000",
               "--set", "ingest.encoder.name=hashing", "--set", "ingest.encoder.dim=16", "--set", "ingest.num_shards=2"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "nodes            500" in text and "2,000 rows" in text and "label homophily" in text
    assert main(["validate", str(out / "graph")]) == 0
    assert "valid (500 nodes, 2,000 edges)" in capsys.readouterr().out
    assert main(["summary", "--json", str(out / "graph")]) == 0
    assert json.loads(capsys.readouterr().out)["source"]["kind"] == "synthetic"


def test_config_error_exits_2_with_key_path(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("ingest:\n  num_shards: -1\n")
    assert main(["ingest", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "ingest.num_shards: Input should be greater than or equal to 1" in err


# ingest starts Ray before it reads a file source, so even a missing path costs a Ray start (~11 s)
@pytest.mark.ray
@pytest.mark.slow
def test_source_and_path_override(tmp_path, capsys):
    assert main(["ingest", "--source", "cora", "--path", str(tmp_path / "nowhere"), "--out", str(tmp_path / "w")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_validate_missing_store(tmp_path, capsys):
    assert main(["validate", str(tmp_path)]) == 2
    assert "meta.json is missing" in capsys.readouterr().err


def test_distill_without_a_graph_store_says_what_to_run(tmp_path, capsys):
    assert main(["distill", "--out", str(tmp_path), "--set", "distill.method=vanilla"]) == 2
    err = capsys.readouterr().err
    assert "gkd distill: error:" in err and "run `gkd ingest`" in err


def test_a_full_disk_and_a_lost_tracking_server_are_said_plainly(monkeypatch, capsys):
    import errno

    import mlflow
    from mlflow.exceptions import MlflowException

    from gkd import cli

    full = OSError(errno.ENOSPC, "No space left on device", "/w/graph/x.npy.partial")
    assert cli.environment_error(full).startswith("no space left on the device writing /w/graph/x.npy.partial: ")
    try:  # wrapped, as a Ray worker or pyarrow passes it on
        try:
            raise full
        except OSError as inner:
            raise RuntimeError("task failed") from inner
    except RuntimeError as outer:
        assert "free space" in cli.environment_error(outer)
    assert "no space left" in cli.environment_error(RuntimeError("IOError: [Errno 28] No space left on device"))
    assert cli.environment_error(ValueError("a bug")) is None
    lost = MlflowException("API request to http://127.0.0.1:5999/api/2.0/mlflow/runs/create failed")
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: "http://127.0.0.1:5999")
    said = cli.environment_error(lost)
    assert said.startswith("the MLflow tracking server at http://127.0.0.1:5999 failed (API request to ")
    assert "rerun with --no-track" in said
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: "sqlite:///w/mlflow.db")
    assert cli.environment_error(lost) is None  # a local store's error is not a server outage: raised as is

    # main prints the one line and exits 2, no traceback
    monkeypatch.setattr(cli, "cmd_validate", lambda args: (_ for _ in ()).throw(full))
    monkeypatch.setattr(cli, "build_parser", _parser_calling(cli.cmd_validate))
    assert cli.main(["validate", "/w/graph"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gkd validate: error: no space left on the device") and "Traceback" not in err


def _parser_calling(fn):
    import argparse

    def build():
        p = argparse.ArgumentParser(prog="gkd")
        p.add_argument("--log-level", default="INFO")
        sub = p.add_subparsers(dest="command", required=True)
        v = sub.add_parser("validate")
        v.add_argument("graph")
        v.set_defaults(fn=fn)
        return p
    return build
