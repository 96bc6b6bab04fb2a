"""Ray Serve layer: the student as a FastAPI ingress deployment, the teacher LLM as a second one (cascade).

build_app(cfg)            -> the Serve application (student ingress [+ teacher])
app_builder(args)         -> the same from a `serve deploy` YAML: import_path gkd.serve.app:app_builder,
                             args {config: <experiment yaml>, overrides: [key=value, ...]}
run_local(cfg, blocking)  -> serve.run on this machine's Ray (or RAY_ADDRESS); returns the base URL
shutdown()                -> serve.shutdown()
bare_app(cfg), run_bare   -> the same API and student in one uvicorn process, no Ray (the benchmark's ceiling)

The student model call goes through `@serve.batch`; new nodes' encoding and the teacher run off the
replica's event loop (`asyncio.to_thread`), so a slow batch never stalls health checks or cached answers.
"""

import asyncio
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError
from ray import serve

from gkd.config import ExperimentConfig, ServeConfig, load_config, parse_overrides
from gkd.errors import ConfigError, GkdError
from gkd.runtime import free_port
from gkd.serve.api import build_api, token_digest
from gkd.serve.model import Query, StudentService, TeacherService

log = logging.getLogger(__name__)

# Ray Serve's fast path (measured in gkd/bench/serve.py): HAProxy in front, requests straight into the
# ingress replica's own HTTP server (direct ingress), gRPC between deployments, no per-request log writes.
# RETRY_ON: Ray's default retries a request on another replica only when the connection to the first failed
# (nothing sent). Every route of gkd's API is read-only, so a request whose replica died with it in flight (the
# connection closed with no answer) is safe to send again: HAProxy does, on another replica (Ray's template has
# `option redispatch 1`). serve.env can set it back to conn-failure.
HAPROXY_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1",
               "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response"}
_RUN_DIRS: list[Path] = []  # HAProxy files of the Serve instances this process started (removed by shutdown)


async def student_probs(service: StudentService, queries: list[Query]) -> list[np.ndarray]:
    """service.student_probs, with new nodes (encoder + GNN layers) off the event loop; cache rows inline."""
    if any(q.texts for q in queries):
        return await asyncio.to_thread(service.student_probs, queries)
    return service.student_probs(queries)


@serve.deployment(name="student")
@serve.ingress()
class StudentServer:
    """Ingress replica: the student's cache + inductive path behind the FastAPI routes of gkd.serve.api."""

    def __init__(self, cfg: dict, tracking_uri: str | None, token_sha256: str | None, teacher=None):
        replica_setup()
        cfg = ExperimentConfig.model_validate(cfg)
        s = cfg.serve
        self.service = StudentService.from_config(cfg, tracking_uri)
        self.token_sha256 = token_sha256 or token_digest(s)  # else the replica's own $<token_env> (cluster pods)
        self.teacher = teacher
        self.batching = s.batching
        self.student_batch.set_max_batch_size(s.max_batch_size)
        self.student_batch.set_batch_wait_timeout_s(s.batch_wait_timeout_s)

    # two batches in flight: one encodes/runs the GNN in a thread while the next one fills (measured faster)
    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002, max_concurrent_batches=2)
    async def student_batch(self, queries: list[Query]) -> list[np.ndarray]:
        return await student_probs(self.service, queries)

    async def student(self, q: Query) -> np.ndarray:
        if self.batching == "all" or (self.batching == "new_nodes" and q.texts):
            return await self.student_batch(q)
        return (await student_probs(self.service, [q]))[0]

    async def ask_teacher(self, items: list[dict]) -> np.ndarray:
        return np.stack(await asyncio.gather(*[self.teacher.score.remote(it) for it in items]))

    def __serve_build_asgi_app__(self):
        return build_api(self.service, self.student, self.ask_teacher if self.teacher is not None else None,
                         self.token_sha256)


@serve.deployment(name="teacher")
class TeacherServer:
    """The teacher LLM: one node per call, batched into one forward of up to cascade.max_batch_size nodes."""

    def __init__(self, cfg: dict):
        replica_setup()
        cfg = ExperimentConfig.model_validate(cfg)
        self.service = TeacherService(cfg)
        self.score.set_max_batch_size(cfg.serve.cascade.max_batch_size)
        self.score.set_batch_wait_timeout_s(cfg.serve.cascade.batch_wait_timeout_s)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def score(self, items: list[dict]) -> list[np.ndarray]:
        return list(await asyncio.to_thread(self.service.score, items))


def resolved(cfg: ExperimentConfig) -> ExperimentConfig:
    """Paths made absolute here, so replicas (other working directories, other machines) read the same files."""
    s = cfg.serve
    absolute = lambda p: str(Path(p).expanduser().resolve()) if p and Path(p).expanduser().exists() else p
    return cfg.model_copy(update={
        "workdir": cfg.workdir.resolve(),
        "llm": cfg.llm.model_copy(update={"model": absolute(cfg.llm.model)}),
        "serve": s.model_copy(update={
            "checkpoint": s.checkpoint.resolve() if s.checkpoint else None,
            "cascade": s.cascade.model_copy(update={"model": absolute(s.cascade.model)})}),
    })


def replica_setup() -> None:
    """Called first in each gkd replica's __init__. On a loopback-only local cluster (ray.local_loopback), bind
    Ray Serve's inter-deployment gRPC server to 127.0.0.1 as well: Ray 2.60 hard-codes '[::]:0' for it
    (serve/_private/replica.py) and starts it after the deployment's __init__ returns, with no setting for its
    address. Elsewhere (a real cluster) this does nothing."""
    if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        return
    import ray.serve._private.replica as replica

    original = getattr(replica, "add_port_to_grpc_server", None)
    if original is None or getattr(original, "_gkd_loopback", False):
        return

    def loopback(server, address: str):
        host, _, port = address.rpartition(":")
        return original(server, f"127.0.0.1:{port}" if host in ("[::]", "0.0.0.0", "") else address)

    loopback._gkd_loopback = True
    replica.add_port_to_grpc_server = loopback


def build_app(cfg: ExperimentConfig, tracking_uri: str | None = None):
    """The Serve application: StudentServer (FastAPI ingress) bound to a TeacherServer when the cascade is on."""
    from gkd.tracking.tracker import tracking_uri as default_uri

    cfg = resolved(cfg)
    s, data = cfg.serve, cfg.model_dump(mode="json")
    teacher = None
    if s.cascade.enabled:
        c = s.cascade
        teacher = TeacherServer.options(
            num_replicas=c.num_replicas, max_ongoing_requests=c.max_ongoing_requests,
            ray_actor_options={"num_cpus": c.num_cpus_per_replica, "num_gpus": c.num_gpus_per_replica},
        ).bind(data)
    uri = None if s.checkpoint else (tracking_uri or default_uri(cfg.workdir))
    return StudentServer.options(
        num_replicas=s.num_replicas, max_ongoing_requests=s.max_ongoing_requests,
        ray_actor_options={"num_cpus": s.num_cpus_per_replica, "num_gpus": s.num_gpus_per_replica},
    ).bind(data, uri, token_digest(s), teacher)


class AppArgs(BaseModel):
    """`args` of the application in a `serve deploy` YAML."""

    model_config = ConfigDict(extra="forbid")
    config: str | None = None  # experiment YAML (relative to the job's working dir); None = defaults
    overrides: list[str] = []  # dotted key=value, as `gkd --set`


def app_builder(args: AppArgs):
    """Serve application builder (import_path gkd.serve.app:app_builder in jobs/serve_config.yaml)."""
    try:
        args = args if isinstance(args, AppArgs) else AppArgs.model_validate(args or {})
    except ValidationError as err:
        raise ConfigError(f"serve application args: {err}") from None
    return build_app(load_config(args.config, parse_overrides(args.overrides)))


# ----------------------------------------------------------------------------- running it


def serve_env(s: ServeConfig) -> dict[str, str]:
    """RAY_SERVE_* variables the Serve controller, proxies and replicas need for serve.ingress, plus serve.env."""
    return {**(HAPROXY_ENV if s.ingress == "haproxy" else {}), **s.env}


def local_env(s: ServeConfig) -> dict[str, str]:
    """serve_env plus what lets several Serve instances share one machine (HAProxy's files and side ports of
    their own, short drains on shutdown); serve.env still wins."""
    env = serve_env(s)
    if s.ingress != "haproxy":
        return env
    # short: HAProxy caps socket paths at 97 characters and Ray adds a 56-character directory
    run = Path(tempfile.mkdtemp(prefix="gs", dir="/tmp" if Path("/tmp").is_dir() else None))
    _RUN_DIRS.append(run)
    own = {"RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(run / "haproxy.cfg"),
           "RAY_SERVE_HAPROXY_SOCKET_PATH": str(run / "admin.sock"),
           "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(run),
           "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(run / "server-state"),
           "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(run / "metrics.sock"),
           "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
           "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
           "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port()),
           "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": str(free_port()),
           "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
           "RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S": "1",
           # Ray's 30 s kills HAProxy's manager on a loaded machine (two services, a test suite): 120 locally
           "RAY_SERVE_HAPROXY_STARTUP_TIMEOUT_S": "120"}
    if "RAY_SERVE_HAPROXY_BINARY_PATH" not in env:
        own["RAY_SERVE_HAPROXY_BINARY_PATH"] = str(haproxy_wrapper(run, s.side_host))
    return {**own, **env}


def haproxy_wrapper(run: Path, side_host: str) -> Path:
    """<run>/haproxy: runs Ray's HAProxy binary on its config with the side listeners bound to `side_host`.

    Ray 2.60's config template binds the stats page (`bind *:<port>`) and the Prometheus frontend
    (`bind :<port>`) to every interface, with no setting for their address; Ray writes the config and then
    starts `<binary> -db -f <config> [-sf <pids>]`, so the wrapper rewrites those two bind lines just before it
    execs the real binary. The API's own frontend keeps serve.host.

    Requests in flight on a replica that dies are replayed on another one by HAProxy's own `retry-on`
    (RAY_SERVE_HAPROXY_RETRY_ON in HAPROXY_ENV), not by this wrapper; Ray's template already sets
    `option idle-close-on-response` (RAY_SERVE_ENABLE_HAPROXY_OPTIMIZED_CONFIG, on by default)."""
    from ray.serve._private.haproxy import get_haproxy_binary

    real = get_haproxy_binary()
    host = f"[{side_host}]" if ":" in side_host else side_host
    path = run / "haproxy"
    path.write_text(
        "#!/bin/sh\n"
        "# written by gkd (gkd.serve.app.haproxy_wrapper): HAProxy's stats and metrics listeners on "
        f"{side_host} only\n"
        'prev=""\n'
        'for arg in "$@"; do\n'
        '  if [ "$prev" = "-f" ] && [ -f "$arg" ]; then\n'
        f"    sed -i -e 's/^\\([[:space:]]*bind[[:space:]]\\{{1,\\}}\\)\\*\\{{0,1\\}}:\\([0-9]\\)/\\1{host}:\\2/' \"$arg\" "
        "|| exit 1\n"
        "  fi\n"
        '  prev="$arg"\n'
        "done\n"
        f'exec "{real}" "$@"\n')
    path.chmod(0o700)
    return path


def check_port_free(host: str, port: int) -> None:
    """A clear error, before Ray starts anything, when this machine already has `port` taken."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do: only a listener counts
        try:
            sock.bind((host, port))
        except OSError as err:
            raise GkdError(f"cannot serve on {host}:{port} ({err.strerror}): set serve.port / --port to a free port, "
                           "or stop what listens there") from None


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:  # a host name: whatever it resolves to, it is not known to stay on this machine
        return False
    mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1, as dual-stack sockets report loopback
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def exposure_warning(s: ServeConfig) -> str | None:
    """The warning for an API bound beyond this machine with no bearer token (None when there is nothing to warn
    about): what is exposed, and the two ways to close it."""
    if is_loopback(s.host) or token_digest(s):
        return None
    return (f"serve.host is {s.host}, a non-loopback address, and no bearer token is set "
            f"(${s.token_env or '<serve.token_env unset>'} is empty): anyone who can reach this machine on port "
            f"{s.port} can call /v1/predict and read /v1/model (model name, version, metrics, graph size). Set "
            f"{s.token_env or 'serve.token_env'} to a secret, or bind serve.host to 127.0.0.1 (docs/SECURITY.md).")


def base_url(s: ServeConfig) -> str:
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::") else s.host
    return f"http://{host}:{s.port}{s.route_prefix.rstrip('/')}"


def run_local(cfg: ExperimentConfig, blocking: bool = False) -> str:
    """Deploy the application with serve.run on cfg.ray's cluster; returns the base URL (blocking: until Ctrl-C)."""
    from gkd.runtime import init_ray

    s = cfg.serve
    if warning := exposure_warning(s):
        log.warning(warning)
    if not (cfg.ray.address or os.environ.get("RAY_ADDRESS")):
        check_port_free(s.host, s.port)
    init_ray(cfg.ray)
    start_serve(cfg)
    url = base_url(s)
    log.info("serving %s at %s (ingress %s%s)", s.app_name, url, s.ingress,
             ", bearer token required" if token_digest(s) else "")
    if blocking:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            shutdown()
    return url


def start_serve(cfg: ExperimentConfig, sleep=time.sleep) -> None:
    """serve.start + serve.run, tried serve.start_attempts times. On a loaded machine a Serve system actor can
    miss its start-up deadline and be killed (seen: `ActorDiedError: HAProxyManager ... killed by ray.kill`
    from serve.start at load ~7): Serve is shut down, given fresh HAProxy files and ports, and started again
    after a pause; the last failure is a GkdError that says what to do."""
    from ray.exceptions import RayActorError, RayTaskError

    s = cfg.serve
    for attempt in range(1, s.start_attempts + 1):
        env = local_env(s)
        try:
            serve.start(http_options={"host": s.host, "port": s.port},
                        controller_options={"runtime_env": {"env_vars": env}} if env else None)
            serve.run(build_app(cfg), name=s.app_name, route_prefix=s.route_prefix,
                      logging_config={"enable_access_log": s.access_log})
            return
        except (RayActorError, RayTaskError) as err:
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            shutdown()
            if attempt == s.start_attempts:
                raise GkdError(
                    f"Ray Serve did not start after {attempt} attempt(s): {type(err).__name__}: {reason}. "
                    "A Serve actor (often HAProxyManager) missed its start-up deadline: the machine is probably "
                    "overloaded. Rerun once the load drops, raise serve.start_attempts, give HAProxy longer "
                    "(serve.env RAY_SERVE_HAPROXY_STARTUP_TIMEOUT_S, 120 locally), or use serve.ingress: proxy."
                ) from None
            pause = 5.0 * attempt
            log.warning("Serve start-up failed (attempt %d of %d: %s: %s); retrying in %.0f s", attempt,
                        s.start_attempts, type(err).__name__, reason, pause)
            sleep(pause)


def shutdown() -> None:
    """Tear down every Serve application and the Serve controller (Ray itself keeps running)."""
    import ray

    if ray.is_initialized():  # otherwise serve.shutdown() starts a local Ray cluster only to find no Serve on it
        serve.shutdown()
    while _RUN_DIRS:
        shutil.rmtree(_RUN_DIRS.pop(), ignore_errors=True)


def bare_app(cfg: ExperimentConfig):
    """The same FastAPI app and student in this process, without Ray Serve (no batching, no cascade)."""
    cfg = resolved(cfg)
    service = StudentService.from_config(cfg)

    async def student(q: Query) -> np.ndarray:
        return (await student_probs(service, [q]))[0]

    return build_api(service, student, None, token_digest(cfg.serve))


def run_bare(cfg: ExperimentConfig) -> None:
    """uvicorn on serve.host:serve.port with bare_app(cfg) (blocks)."""
    import uvicorn

    if warning := exposure_warning(cfg.serve):
        log.warning(warning)
    uvicorn.run(bare_app(cfg), host=cfg.serve.host, port=cfg.serve.port, log_level="warning",
                access_log=cfg.serve.access_log)
