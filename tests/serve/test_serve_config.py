"""serve: and serve.cascade: in the experiment config: defaults and the errors a user can hit."""

import os

import pytest

from gkd.config import build_config
from gkd.errors import ConfigError
from gkd.serve.api import BodyLimit, body_limit
from gkd.serve.app import local_env, serve_env


def test_defaults_bind_loopback_with_the_fast_ingress_and_the_cascade_off():
    s = build_config({}).serve
    assert (s.host, s.port, s.alias, s.ingress, s.batching, s.access_log) == (
        "127.0.0.1", 8000, "champion", "haproxy", "new_nodes", False)
    assert s.token_env == "GKD_SERVE_TOKEN" and not s.cascade.enabled and s.cascade.threshold == 0.5
    assert serve_env(s) == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1",
                            "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response"}
    assert body_limit(s) == 2**20 + 256 * (6 * 20_000 + 24 * 1024)


def test_a_body_over_the_limit_is_a_json_413_declared_or_chunked():
    """The documented ErrorBody, not Starlette's plain text; a body at the limit still reaches the route."""
    from fastapi import FastAPI, Request
    from fastapi.testclient import TestClient

    app = FastAPI()
    app.add_middleware(BodyLimit, limit=100)

    @app.post("/echo")
    async def echo(request: Request):
        return {"bytes": len(await request.body())}

    client = TestClient(app)
    message = "request body over 100 bytes, the most this server's limits"
    declared = client.post("/echo", content=b"x" * 101)
    chunked = client.post("/echo", content=iter([b"x" * 60, b"x" * 60]))
    assert "content-length" not in chunked.request.headers  # really sent without a declared length
    for got in (declared, chunked):
        assert got.status_code == 413 and got.headers["content-type"] == "application/json"
        assert got.json()["detail"].startswith(message)
    assert client.post("/echo", content=b"x" * 100).json() == {"bytes": 100}
    assert client.post("/echo", content=iter([b"x" * 50, b"x" * 50])).json() == {"bytes": 100}


@pytest.mark.parametrize("serve, message", [
    ({"route_prefix": "api"}, "serve: Value error, route_prefix must start with '/'"),
    ({"env": {"OMP_NUM_THREADS": "1"}}, "env takes RAY_SERVE_* variables only"),
    ({"max_batch_size": 128}, "max_batch_size=128 exceeds max_ongoing_requests=64"),
    ({"cascade": {"threshold": 0}}, "serve.cascade.threshold: Input should be greater than 0"),
    ({"cascade": {"max_batch_size": 32}}, "max_batch_size=32 exceeds max_ongoing_requests=16"),
    ({"ingress": "nginx"}, "serve.ingress: Input should be 'haproxy' or 'proxy'"),
    ({"batching": True}, "serve.batching: Input should be 'off', 'new_nodes' or 'all'"),
    ({"port": 70000}, "serve.port: Input should be less than or equal to 65535"),
])
def test_bad_serve_settings_name_the_key(serve, message):
    with pytest.raises(ConfigError) as err:
        build_config({"serve": serve})
    assert message in str(err.value)


def test_local_runs_get_their_own_haproxy_files_and_ports_but_serve_env_wins():
    from gkd.serve.app import shutdown

    s = build_config({"serve": {"env": {"RAY_SERVE_HAPROXY_STATS_PORT": "18404"}}}).serve
    a, b = local_env(s), local_env(s)
    assert a["RAY_SERVE_HAPROXY_STATS_PORT"] == b["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404"
    assert a["RAY_SERVE_HAPROXY_SOCKET_PATH"] != b["RAY_SERVE_HAPROXY_SOCKET_PATH"]
    assert len(a["RAY_SERVE_HAPROXY_SOCKET_PATH"]) + 57 <= 97  # HAProxy's limit, with Ray's 56-char directory
    assert local_env(build_config({"serve": {"ingress": "proxy"}}).serve) == {}
    shutdown()  # no Serve running: removes the two scratch directories


def test_serve_start_up_is_retried_after_a_system_actor_dies_then_fails_with_what_to_do(monkeypatch, tmp_path):
    """The failure seen under load (HAProxyManager killed before it ran): shut down, fresh ports, retry; after
    serve.start_attempts a GkdError naming the cause and the fixes, never a bare ActorDiedError."""
    from ray.exceptions import ActorDiedError

    import gkd.serve.app as app
    from gkd.errors import GkdError

    cfg = build_config({"workdir": str(tmp_path), "serve": {"checkpoint": str(tmp_path), "start_attempts": 3}})
    calls, ran, shutdowns, pauses = [], [], [], []

    def start(http_options, controller_options):
        calls.append(controller_options["runtime_env"]["env_vars"]["RAY_SERVE_HAPROXY_STATS_PORT"])
        if len(calls) < 2:
            raise ActorDiedError()

    monkeypatch.setattr(app.serve, "start", start)
    monkeypatch.setattr(app.serve, "run", lambda *a, **k: ran.append(k["name"]))
    monkeypatch.setattr(app, "shutdown", lambda: shutdowns.append(1))
    app.start_serve(cfg, sleep=pauses.append)
    assert len(calls) == 2 and calls[0] != calls[1]  # fresh side ports on the retry
    assert ran == ["gkd-student"] and len(shutdowns) == 1 and pauses == [5.0]

    calls.clear()

    def always_dies(http_options, controller_options):
        calls.append(1)
        raise ActorDiedError()

    monkeypatch.setattr(app.serve, "start", always_dies)
    with pytest.raises(GkdError, match=r"did not start after 3 attempt\(s\): ActorDiedError.*overloaded"):
        app.start_serve(cfg, sleep=pauses.append)
    assert len(calls) == 3 and pauses[1:] == [5.0, 10.0]
    env = local_env(cfg.serve)
    assert env["RAY_SERVE_HAPROXY_STARTUP_TIMEOUT_S"] == "120"
    assert os.access(env["RAY_SERVE_HAPROXY_BINARY_PATH"], os.X_OK)
