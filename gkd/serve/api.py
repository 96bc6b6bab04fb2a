"""The HTTP API (FastAPI): request/response schemas and routes, shared by the Ray Serve ingress and the bare app.

POST /v1/predict   node ids, keys, or new nodes (text + neighbour ids) -> label, confidence, probabilities
GET  /v1/model     the served model: registry name, version, alias, metrics, graph, limits
GET  /healthz      liveness (no auth)
Schema errors are 422 (FastAPI); semantic ones 400 / 404 / 413 with a `detail` message; a missing or
wrong bearer token 401.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Annotated, Awaitable, Callable

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr
from starlette.datastructures import Headers

from gkd.config import ServeConfig
from gkd.serve.model import TEACHER, Query, RequestError, StudentService


def _integral(value):
    """JSON Schema counts 2.0 as an integer; strict ints still refuse "2", 2.5 and true."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[StrictInt, BeforeValidator(_integral)]


class NewNode(BaseModel):
    """A node the graph has not seen: its text and the existing nodes it links to."""

    model_config = ConfigDict(extra="forbid")
    text: StrictStr = Field(description="the node's text, encoded with the graph's own encoder (not blank)",
                            pattern=r"\S")
    neighbors: list[JsonInt] = Field(default=[], description="node ids of its neighbours in the graph")
    neighbor_keys: list[StrictStr] = Field(default=[], description="or their keys (e.g. Debian package names)")


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"node_ids": [0, 42]}, {"keys": ["bash"]},
                     {"nodes": [{"text": "command-line tool to query DNS servers", "neighbor_keys": ["libc6"]}]}],
        # at least one node: an empty request is a 400
        "anyOf": [{"required": [k], "properties": {k: {"minItems": 1}}} for k in ("node_ids", "keys", "nodes")]})
    node_ids: list[JsonInt] = Field(default=[], description="node ids 0..N-1 of the graph")
    keys: list[StrictStr] = Field(default=[], description="the source's own node ids (Debian: package names)")
    nodes: list[NewNode] = Field(default=[], description="new nodes, classified inductively")
    top_k: Annotated[StrictInt, Field(ge=1), BeforeValidator(_integral)] | None = Field(default=None, description="class probabilities per node (default serve.top_k)")


class Prediction(BaseModel):
    node_id: int | None = Field(description="None for a new node")
    key: str | None
    label: str
    confidence: float
    probabilities: dict[str, float] = Field(description="the top_k classes, most probable first")
    answered_by: str = Field(description="'refined' (a known node, from the refine stage's whole-graph predictions), "
                                         "'student' (a new node; or a known one when the model has no refined "
                                         "predictions), or 'teacher' when the cascade passed a low-confidence "
                                         "answer on")


class PredictResponse(BaseModel):
    model: str
    version: str | None
    predictions: list[Prediction]


class ErrorBody(BaseModel):
    detail: str = Field(description="what was wrong with the request, naming the field")


# every status the routes answer besides 200 and FastAPI's own 422, with its body: in the OpenAPI schema, so that
# generated clients and schema-driven fuzzers know them
_AUTH = {401: {"model": ErrorBody, "description": "missing or wrong bearer token (when serve.token_env is set)"}}
_PREDICT_ERRORS = {
    400: {"model": ErrorBody, "description": "no node at all (node_ids, keys and nodes all empty)"},
    **_AUTH,
    404: {"model": ErrorBody, "description": "node ids outside 0..N-1, or unknown keys"},
    413: {"model": ErrorBody, "description": "more nodes, characters or neighbours than the serve limits allow"},
}


def _document_limits(app: FastAPI, scfg: ServeConfig) -> None:
    """The server's own limits (serve.max_*) in its OpenAPI schema, so that clients and fuzzers generate what
    it accepts. One limit JSON Schema cannot state stays a documented 413: node_ids + keys + nodes together
    at most max_nodes_per_request."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            schemas = spec["components"]["schemas"]
            for name in ("node_ids", "keys", "nodes"):
                schemas["PredictRequest"]["properties"][name]["maxItems"] = scfg.max_nodes_per_request
            node = schemas["NewNode"]["properties"]
            node["text"]["maxLength"] = scfg.max_text_chars
            for name in ("neighbors", "neighbor_keys"):
                node[name]["maxItems"] = scfg.max_neighbors_per_node
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi


def token_digest(scfg: ServeConfig) -> str | None:
    """sha256 of the bearer token in $<serve.token_env>, None when unset or empty (no auth)."""
    token = os.environ.get(scfg.token_env) if scfg.token_env else None
    return hashlib.sha256(token.encode()).hexdigest() if token else None


def body_limit(scfg: ServeConfig) -> int:
    """Largest /v1/predict body the limits allow (JSON escapes counted at 6 bytes a character); larger is a 413."""
    return 2**20 + scfg.max_nodes_per_request * (6 * scfg.max_text_chars + 24 * scfg.max_neighbors_per_node)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes is a 413 with the API's JSON ErrorBody.

    Not FastAPI's own `max_body_size`: Starlette's limiter answers its 413 in plain text (and replaces any
    response once a declared Content-Length is over), which the OpenAPI schema does not document. A declared
    length over the limit is refused before the body is read; a chunked body is counted as it arrives."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    def too_large(self) -> HTTPException:
        return HTTPException(413, f"request body over {self.limit:,} bytes, the most this server's limits "
                                  "(serve.max_nodes_per_request, max_text_chars, max_neighbors_per_node) allow")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            response = _json({"detail": self.too_large().detail}, 413)
            return await response(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise self.too_large()  # inside the route: FastAPI answers it as JSON {"detail": ...}
            return message

        await self.app(scope, counted, send)


def _json(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json")


class _Unauthorized(Exception):
    pass


StudentFn = Callable[[Query], Awaitable[np.ndarray]]
TeacherFn = Callable[[list[dict]], Awaitable[np.ndarray]]


def build_api(service: StudentService, student: StudentFn, teacher: TeacherFn | None = None,
              token_sha256: str | None = None) -> FastAPI:
    """The FastAPI app: student(query) -> probs (n, C); teacher(items) -> probs (k, C) for the cascade."""
    cascade = service.scfg.cascade
    app = FastAPI(title="gkd student", version="1", description=__doc__)
    _document_limits(app, service.scfg)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, err: RequestValidationError):
        # FastAPI's own 422, with ASCII-escaped JSON: the errors echo the input, and a lone UTF-16 surrogate
        # in it (valid JSON) cannot be encoded as UTF-8 (FastAPI's handler then answers 500)
        return _json({"detail": jsonable_encoder(err.errors())}, 422)

    @app.exception_handler(RequestError)
    async def _refused(_: Request, err: RequestError):
        return JSONResponse({"detail": str(err)}, status_code=err.status)

    async def authorized(request: Request) -> None:  # async: FastAPI would run a sync one in a thread
        if token_sha256 is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        if scheme.lower() != "bearer" or not hmac.compare_digest(digest, token_sha256):
            raise _Unauthorized()

    @app.exception_handler(_Unauthorized)
    async def _unauthorized(_: Request, __: Exception):
        return JSONResponse({"detail": "missing or wrong bearer token: send 'Authorization: Bearer <token>'"},
                            status_code=401, headers={"WWW-Authenticate": "Bearer"})

    app.add_middleware(BodyLimit, limit=body_limit(service.scfg))

    @app.post("/v1/predict", response_model=PredictResponse, dependencies=[Depends(authorized)],
              responses=_PREDICT_ERRORS)
    async def predict(req: PredictRequest):
        q = service.parse(req.node_ids, req.keys, [n.model_dump() for n in req.nodes], req.top_k)
        probs = await student(q)
        by = service.answered_by(q)
        if teacher is not None:
            conf = probs.max(1)
            low = np.arange(len(q)) if cascade.threshold >= 1.0 else np.flatnonzero(conf < cascade.threshold)
            if len(low):
                probs = probs.copy()
                probs[low] = await teacher(q.teacher_items(low))
                for r in low.tolist():
                    by[r] = TEACHER
        return _json(service.answer(q, probs, by))

    @app.get("/v1/model", dependencies=[Depends(authorized)], responses=_AUTH)
    async def model():
        info = service.describe()
        info["cascade"] = ({"enabled": True, "threshold": cascade.threshold} if teacher is not None
                           else {"enabled": False})
        return _json(info)

    @app.get("/healthz")
    async def healthz():
        return _json({"status": "ok", "model": service.model_info["name"], "nodes": service.num_nodes})

    return app
