"""The HTTP API fuzzed from its own OpenAPI schema (schemathesis, every default check on), in process: the bare
FastAPI app over an ASGI transport, with the same routes, limits and token check as the Serve ingress.

schemathesis's own pytest plugin (`from_fixture`) does not run under this pytest, so the test drives each
operation's hypothesis strategy itself."""

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from hypothesis import HealthCheck, given, settings

from gkd.bench.reliability import FUZZ_CHECKS

pytestmark = [pytest.mark.ray, pytest.mark.serve]  # serve_world's MLflow store and student (no Serve started)
TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EXAMPLES = 100  # per operation and mode (schema-valid, schema-invalid), each sent with and without the token


def test_every_generated_request_gets_a_documented_conforming_answer(serve_world, monkeypatch):
    """No 5xx, only statuses the schema lists, bodies and content types as documented; schema-valid requests
    accepted (2xx, or the documented 401/404/413) and schema-invalid ones refused."""
    from gkd.serve.app import bare_app

    cfg, _, _, ckpt, _ = serve_world
    monkeypatch.setenv("GKD_SERVE_FUZZ_TOKEN", TOKEN)
    cfg = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"checkpoint": ckpt,
                                                                      "token_env": "GKD_SERVE_FUZZ_TOKEN"})})
    config = SchemathesisConfig.from_dict(FUZZ_CHECKS)  # the reliability suite's live fuzz uses the same checks
    schema = schemathesis.openapi.from_asgi("/openapi.json", bare_app(cfg), config=config)
    sent, statuses = {}, {}
    operations = [op.ok() for op in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"POST /v1/predict", "GET /v1/model", "GET /healthz"}
    runs = [(op, GenerationMode.POSITIVE) for op in operations] + [
        (op, GenerationMode.NEGATIVE) for op in operations if op.label == "POST /v1/predict"]  # the only input
    for op, mode in runs:
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case):
            for headers in (AUTH, None):
                response = case.call_and_validate(headers=headers)
                sent[op.label] = sent.get(op.label, 0) + 1
                statuses.setdefault(op.label, set()).add(response.status_code)

        fuzz()
    assert sent["POST /v1/predict"] >= EXAMPLES  # the generator was not starved
    assert {200, 401, 422} <= statuses["POST /v1/predict"]  # valid, unauthorised and malformed cases all ran
