"""The live Ray Serve app, started by `gkd serve --detach` on a free loopback port: the student from the registry
alias, the tiny Llama as the cascade's teacher, a bearer token, every endpoint and every class of bad request."""

import json
import os
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

from gkd.errors import ConfigError
from gkd.runtime import free_port
from gkd.serve.model import TeacherService, inductive_logits, layer_inputs, softmax

from .conftest import reference_probs

pytestmark = [pytest.mark.ray, pytest.mark.serve, pytest.mark.slow]  # Ray Serve (~60 s to start) and uvicorn
TOKEN = "s3cret-test-token"
ROOT = Path(__file__).resolve().parents[2]


def call(url: str, body=None, token: str | None = TOKEN, raw: bytes | None = None) -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of a GET (body None) or a POST."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read()), dict(resp.headers)
    except urllib.error.HTTPError as err:
        text = err.read().decode()
        try:
            return err.code, json.loads(text or "{}"), dict(err.headers)
        except json.JSONDecodeError:  # not what the API documents: the test shows the text
            return err.code, {"detail": f"not JSON: {text}"}, dict(err.headers)


@pytest.fixture(scope="module")
def live(serve_world, tmp_path_factory):
    """(base url, threshold, reference probs): `gkd serve --detach` with the cascade at the median confidence."""
    from ray import serve

    from gkd.cli import main

    cfg, tag, gnn, _, data = serve_world
    ref = reference_probs(gnn, tag)
    threshold = float(np.median(ref.max(1)))
    data = {**data, "serve": {**data["serve"], "batching": "all", "max_batch_size": 8, "batch_wait_timeout_s": 0.05,
                              "cascade": {**data["serve"]["cascade"], "threshold": threshold}}}
    path = tmp_path_factory.mktemp("live") / "serve.yaml"
    path.write_text(yaml.safe_dump(data))
    port = free_port()
    os.environ["GKD_SERVE_TOKEN"] = TOKEN
    try:
        assert main(["serve", "--config", str(path), "--port", str(port), "--cascade", "--detach"]) == 0
        yield f"http://127.0.0.1:{port}", threshold, ref
    finally:
        os.environ.pop("GKD_SERVE_TOKEN", None)
        serve.shutdown()


def test_health_model_info_and_openapi(live):
    url, threshold, _ = live
    status, health, _ = call(f"{url}/healthz", token=None)
    assert status == 200 and health == {"status": "ok", "model": "serve-student", "nodes": 300}
    status, info, _ = call(f"{url}/v1/model")
    assert status == 200
    assert (info["name"], info["version"], info["alias"], info["source"]) == ("serve-student", "1", "champion",
                                                                              "registry")
    assert info["metrics"] == {"val_acc": 0.61, "test_acc": 0.55}
    assert info["num_nodes"] == 300 and info["num_classes"] == 3 and info["encoder"]["id"] == "hashing-d32"
    assert info["cascade"] == {"enabled": True, "threshold": threshold}
    status, spec, _ = call(f"{url}/openapi.json", token=None)
    assert status == 200 and {"/v1/predict", "/v1/model", "/healthz"} <= set(spec["paths"])
    assert "PredictRequest" in spec["components"]["schemas"]
    # every status the API answers is documented, with its body
    predict = spec["paths"]["/v1/predict"]["post"]["responses"]
    assert set(predict) == {"200", "400", "401", "404", "413", "422"}
    for code in ("400", "401", "404", "413"):
        assert predict[code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert set(spec["paths"]["/v1/model"]["get"]["responses"]) == {"200", "401"}


def test_known_nodes_answer_as_the_full_graph_student_or_as_the_teacher_below_the_threshold(live, serve_world):
    url, threshold, ref = live
    cfg, tag, _, _, _ = serve_world
    ids = list(range(16))
    status, out, _ = call(f"{url}/v1/predict", {"node_ids": ids, "top_k": 3})
    assert status == 200 and out["model"] == "serve-student" and out["version"] == "1"
    preds = out["predictions"]
    assert [p["node_id"] for p in preds] == ids
    low = [i for i in ids if ref[i].max() < threshold]
    assert 0 < len(low) < len(ids)
    assert [p["answered_by"] for p in preds] == ["teacher" if i in low else "student" for i in ids]
    teacher = TeacherService(cfg).score([{"node_id": i} for i in low])  # the same tiny Llama, in this process
    for p in preds:
        expect = teacher[low.index(p["node_id"])] if p["node_id"] in low else ref[p["node_id"]]
        got = np.array([p["probabilities"][name] for name in tag.class_names])  # top_k = all 3 classes
        np.testing.assert_allclose(got, expect, atol=1e-4)
        assert list(p["probabilities"].values()) == sorted(got, reverse=True)  # most probable first
        assert p["label"] == tag.class_names[int(expect.argmax())]
        assert p["confidence"] == pytest.approx(float(expect.max()), abs=1e-4)


def test_concurrent_requests_are_batched_and_answered_in_order(live):
    url, threshold, ref = live
    confident = [i for i in range(300) if ref[i].max() >= threshold][:12]
    with ThreadPoolExecutor(12) as pool:
        outs = list(pool.map(lambda i: call(f"{url}/v1/predict", {"node_ids": [i], "top_k": 1}), confident))
    for i, (status, out, _) in zip(confident, outs):
        (p,) = out["predictions"]
        assert status == 200 and p["node_id"] == i and p["answered_by"] == "student"
        assert p["confidence"] == pytest.approx(float(ref[i].max()), abs=1e-5)


def test_keys_and_new_nodes_are_classified_inductively(live, serve_world):
    url, threshold, ref = live
    _, tag, gnn, _, _ = serve_world
    texts, keys = tag.texts(), _keys(tag)
    node = next(i for i in np.argsort(-ref.max(1)) if 0 < len(tag.neighbors(i)) <= 64)
    fresh = {"text": "an entirely new node about " + texts[9], "neighbors": [9, 12], "neighbor_keys": [keys[40]]}
    body = {"keys": [keys[node]], "top_k": 3,
            "nodes": [{"text": texts[node], "neighbor_keys": [keys[int(v)] for v in tag.neighbors(node)]}, fresh]}
    status, out, _ = call(f"{url}/v1/predict", body)
    assert status == 200
    by_key, copy, new = out["predictions"]
    assert by_key["node_id"] == node and by_key["key"] == keys[node]
    # the new node has the known node's text and neighbours: the inductive pass gives its very answer
    assert copy["node_id"] is None and copy["answered_by"] == "student"
    assert copy["probabilities"] == by_key["probabilities"] == _top(ref[node], tag.class_names)
    hidden, _ = layer_inputs(gnn, tag.x, tag.indptr, tag.indices)
    from gkd.serve.model import graph_encoder

    x_new = graph_encoder(tag.meta, "cpu", 1).encode([fresh["text"]])
    expect = softmax(inductive_logits(gnn, hidden, x_new, [np.array([9, 12, 40])]))[0]
    if expect.max() >= threshold:
        assert new["answered_by"] == "student" and new["probabilities"] == _top(expect, tag.class_names)
    else:
        assert new["answered_by"] == "teacher"


def _keys(tag) -> list[str]:
    from gkd.serve.model import _node_keys

    return _node_keys(tag.graph_dir, tag.num_nodes)


def _top(probs: np.ndarray, names: list[str]) -> dict:
    return {names[c]: round(float(probs[c]), 6) for c in np.argsort(-probs, kind="stable")}


@pytest.mark.parametrize("body, status, detail", [
    ({"node_ids": [5, 300]}, 404, "unknown node ids 300"),
    ({"keys": ["no-such-package"]}, 404, "unknown keys 'no-such-package'"),
    ({"node_ids": ["5"]}, 422, "Input should be a valid integer"),
    ({"node_ids": 5}, 422, "Input should be a valid list"),
    ({"nodes": [{"text": 12}]}, 422, "Input should be a valid string"),
    ({"nodes": [{"text": "x", "colour": "red"}]}, 422, "Extra inputs are not permitted"),
    ({"nodes": [{"text": "   "}]}, 422, "String should match pattern"),  # the schema says: not blank
    ({}, 400, "empty request"),
    ({"node_ids": list(range(17))}, 413, "17 nodes in one request; this server takes at most 16"),
    ({"nodes": [{"text": "y" * 501}]}, 413, "at most 500 (serve.max_text_chars)"),
    ({"node_ids": [1], "top_k": 0}, 422, "greater than or equal to 1"),
    (b"{not json", 422, "JSON decode error"),
    # valid JSON that once crashed the server (schemathesis): ids int64 cannot hold, a lone UTF-16 surrogate
    ({"node_ids": [9228904684104620032]}, 404, "node_ids: unknown node ids 9228904684104620032"),
    ({"node_ids": [-265617644762486036600436293632]}, 404, "node_ids: unknown node ids -2656176447624860366"),
    ({"nodes": [{"text": "x", "neighbors": [9228904684104620032]}]}, 404, "nodes[0].neighbors: unknown node ids"),
    (b'{"nodes": [{"text": "\\ud8b1 abc"}]}', 422, "unable to parse raw data as a unicode string"),
    (b'{"keys": ["\\ud800"]}', 404, "keys: unknown keys"),
    # more bytes than 16 nodes of 500 characters and 64 neighbours could take: refused before parsing
    (b'{"nodes": [{"text": "' + b"z" * 1_200_000 + b'"}]}', 413, "request body over 1,"),
])
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(live, body, status, detail):
    url, _, _ = live
    got, out, _ = call(f"{url}/v1/predict", raw=body) if isinstance(body, bytes) else call(f"{url}/v1/predict", body)
    assert got == status and detail in json.dumps(out["detail"])
    again, out, _ = call(f"{url}/v1/predict", {"node_ids": [0]})
    assert again == 200 and out["predictions"][0]["node_id"] == 0


def test_everything_the_local_service_starts_listens_on_loopback_only(live):
    """The API, HAProxy (frontend, stats, metrics), the replicas' direct ingress, the fallback proxy and Ray's
    own GCS, raylet, workers and agents: every listening socket of this process's descendants."""
    from gkd.bench.reliability import listeners, listening_sockets

    url, _, _ = live
    api_port = int(url.rsplit(":", 1)[1])
    socks = listening_sockets(os.getpid())
    haproxy = [s for s in socks if "haproxy" in s["process"]]
    assert api_port in {s["port"] for s in socks}
    assert len(haproxy) >= 3  # frontend, stats, metrics
    summary = listeners(os.getpid())
    assert summary["listening"] == len(socks) and summary["processes"] >= 5  # GCS, raylet, driver, Serve, HAProxy
    assert summary["non_loopback"] == []


def test_haproxy_wrapper_binds_the_side_listeners_to_the_side_host(tmp_path):
    import subprocess

    from gkd.serve.app import haproxy_wrapper

    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("defaults\n  timeout client 1s\n  timeout server 1s\n  timeout connect 1s\n"
                   "frontend http_frontend\n    bind 127.0.0.1:8000\n    mode http\n"
                   "frontend prometheus\n    bind :9101\n    mode http\n"
                   "listen stats\n  bind *:8404\n  mode http\n  stats enable\n")
    wrapper = haproxy_wrapper(tmp_path, "127.0.0.1")
    done = subprocess.run([str(wrapper), "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    binds = [line.strip() for line in cfg.read_text().splitlines() if line.strip().startswith("bind")]
    assert binds == ["bind 127.0.0.1:8000", "bind 127.0.0.1:9101", "bind 127.0.0.1:8404"]
    done = subprocess.run([str(wrapper), "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and cfg.read_text().count("bind 127.0.0.1:") == 3, done.stderr  # a reload: same
    haproxy_wrapper(tmp_path, "::1")
    cfg.write_text("listen stats\n  bind *:8404\n")
    subprocess.run([str(wrapper), "-c", "-f", str(cfg)], capture_output=True, timeout=60)
    assert "bind [::1]:8404" in cfg.read_text()


def test_a_non_loopback_api_without_a_token_is_warned_about(serve_world, monkeypatch):
    from gkd.serve.app import exposure_warning

    cfg, *_ = serve_world
    monkeypatch.delenv("GKD_SERVE_TOKEN", raising=False)
    exposed = cfg.serve.model_copy(update={"host": "0.0.0.0", "port": 8123, "token_env": "GKD_SERVE_TOKEN"})
    warning = exposure_warning(exposed)
    assert "0.0.0.0" in warning and "port 8123" in warning and "/v1/predict" in warning
    assert "GKD_SERVE_TOKEN" in warning
    assert exposure_warning(exposed.model_copy(update={"host": "127.0.0.1"})) is None
    assert exposure_warning(exposed.model_copy(update={"host": "::1"})) is None
    monkeypatch.setenv("GKD_SERVE_TOKEN", "s3cret")
    assert exposure_warning(exposed) is None


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_predict_and_model_need_the_bearer_token(live, token):
    url, _, _ = live
    for status, out, headers in (call(f"{url}/v1/predict", {"node_ids": [0]}, token=token),
                                 call(f"{url}/v1/model", token=token)):
        assert status == 401 and "bearer token" in out["detail"] and headers.get("www-authenticate") == "Bearer"
    assert call(f"{url}/v1/predict", {"node_ids": [0]})[0] == 200


def test_serve_on_a_taken_port_is_a_clear_error(serve_world, tmp_path, capsys):
    import socket

    from gkd.cli import main

    _, _, _, ckpt, data = serve_world
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--config", str(path), "--checkpoint", str(ckpt), "--port", str(port), "--detach"]) == 2
    assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err


def test_app_builder_reads_the_experiment_yaml_and_the_cluster_yaml_points_at_it(serve_world, tmp_path):
    from ray.serve.deployment import Application
    from ray.serve.schema import ServeDeploySchema

    from gkd.serve.app import app_builder

    _, _, _, _, data = serve_world
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    app = app_builder({"config": str(path), "overrides": ["serve.num_replicas=2", "serve.cascade.enabled=true"]})
    assert isinstance(app, Application)
    with pytest.raises(ConfigError, match="serve.num_replicas"):
        app_builder({"config": str(path), "overrides": ["serve.num_replicas=0"]})
    with pytest.raises(ConfigError, match="serve application args"):
        app_builder({"config": str(path), "typo": 1})
    spec = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / "jobs" / "serve_config.yaml").read_text()))
    (application,) = spec.applications
    assert (application.name, application.route_prefix, application.import_path) == (
        "gkd-student", "/", "gkd.serve.app:app_builder")
    assert (ROOT / application.args["config"]).is_file()
    assert spec.http_options.host == "127.0.0.1"


def test_the_bare_app_serves_the_same_api_without_ray_serve(serve_world):
    """gkd.serve.app.bare_app (the benchmark's ceiling) under uvicorn in a thread: same answers, no cascade."""
    import threading
    import time

    import uvicorn

    from gkd.serve.app import bare_app

    cfg, tag, gnn, ckpt, _ = serve_world
    port = free_port()
    cfg = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"checkpoint": ckpt, "token_env": None})})
    server = uvicorn.Server(uvicorn.Config(bare_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                pytest.fail(f"uvicorn did not start on 127.0.0.1:{port} within 60 s "
                            f"({'its thread exited' if not thread.is_alive() else 'still starting'})")
            time.sleep(0.05)
        url, ref, texts = f"http://127.0.0.1:{port}", reference_probs(gnn, tag), tag.texts()
        status, out, _ = call(f"{url}/v1/predict", {"node_ids": [3], "top_k": 3, "nodes": [
            {"text": texts[3], "neighbors": tag.neighbors(3).tolist()}]}, token=None)
        assert status == 200 and out["version"] is None
        assert [p["answered_by"] for p in out["predictions"]] == ["student", "student"]
        for p in out["predictions"]:
            assert p["probabilities"] == _top(ref[3], tag.class_names)
        assert call(f"{url}/v1/model", token=None)[1]["cascade"] == {"enabled": False}
    finally:
        server.should_exit = True
        thread.join(10)
