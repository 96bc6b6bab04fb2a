"""Ray start-up and logging shared by the CLI and jobs/ entrypoints."""

from __future__ import annotations

import logging
import os
import random
import socket
import sys
import time
from pathlib import Path

from gkd.config import RayConfig

log = logging.getLogger("gkd")


def ephemeral_port_range() -> tuple[int, int]:
    """The kernel's range for client sockets' local ports (Linux: 32768-60999 unless configured)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


FIRST_PORT = 20_000  # above Ray's default worker port range (--min/max-worker-port 10002-19999)


def free_port(tries: int = 64) -> int:
    """A TCP port free now, for a server that binds it a moment later (Serve's proxy, HAProxy, a test's Ray head).

    Picked between Ray's default worker ports (10002-19999, which a Ray node reserves whole) and the kernel's
    ephemeral range: a port the OS hands out for bind(0) lies inside the latter, where any client socket opened
    in between (wrk's, Ray's own) can take it first, and the server then fails with "Failed to bind" (seen in
    the serve suite). Checked on every interface; the OS's pick when there is no such gap or nothing is free.
    """
    low = min(ephemeral_port_range()[0], 65536)
    rng = random.SystemRandom()
    for _ in range(tries if low > FIRST_PORT else 0):
        port = rng.randrange(FIRST_PORT, low)
        with socket.socket() as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )


def resolve_device(device: str, key: str) -> str:
    """'auto' -> cuda when torch sees a GPU, else cpu; a cuda device without one is a config error at `key`."""
    import torch

    from gkd.errors import ConfigError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"{key}={device} but torch sees no CUDA device; use auto or cpu")
    return device


def loopback_only(ray) -> None:
    """Make the local cluster this process is about to start listen on 127.0.0.1 only.

    On Linux, Ray binds its GCS, raylet, worker and agent ports to every interface (measured with psutil on
    2.60: '::' and 0.0.0.0) and offers no bind-address setting; its single-machine mode (the one it uses on
    macOS and Windows, switched by RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) takes the loopback address as the node
    address instead. The variable reaches the processes Ray spawns through the environment; this process
    imported ray already, so the constant it read at import is set too."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False


def init_ray(cfg: RayConfig):
    """Join cfg.address or $RAY_ADDRESS (as under `ray job submit`), else start a local cluster."""
    import ray

    if ray.is_initialized():
        return ray
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        log.info("joining Ray cluster at %s", address)
        ray.init(address=address, log_to_driver=True)
    else:
        # address="local": a cluster of our own, never whichever `ray start` cluster happens to run on
        # this machine (set ray.address: auto to join that one)
        if cfg.local_loopback:
            loopback_only(ray)
        kwargs = {"address": "local", "include_dashboard": False}
        if cfg.num_cpus:
            kwargs["num_cpus"] = cfg.num_cpus
        if cfg.object_store_memory_gib:
            kwargs["object_store_memory"] = int(cfg.object_store_memory_gib * 2**30)
        log.info("starting a local Ray cluster (%s)", kwargs)
        start_local(ray, kwargs)
    return ray


def start_local(ray, kwargs: dict, attempts: int = 3) -> None:
    """ray.init of a local cluster, retried when its raylet or GCS does not come up in time: on a loaded
    machine (2 cores, another job's Ray beside it) that happens now and then, and is gone on a second try.
    The last failure is a GkdError that says so."""
    from gkd.errors import GkdError

    for attempt in range(1, attempts + 1):
        try:
            ray.init(**kwargs)
            return
        except Exception as err:  # noqa: BLE001 - only start-up timeouts are retried; the rest re-raised
            if "timed out during startup" not in str(err) and "Timed out" not in str(err):
                raise
            ray.shutdown()
            if attempt == attempts:
                raise GkdError(f"the local Ray cluster did not start in {attempts} attempts ({err}); the machine "
                               "may be overloaded: rerun when it is less busy") from None
            log.warning("local Ray start-up timed out (attempt %d of %d): retrying in %d s", attempt, attempts,
                        5 * attempt)
            time.sleep(5 * attempt)


def persisted_checkpoint(run_dir, load):
    """The newest checkpoint folder persisted under the run's (local or shared) directory that `load(folder)` reads
    -> (ray.train.Checkpoint, what load returned), else None.

    Why: the reliability suite SIGKILLs one of two distill workers right after they reported a checkpoint.
    Ray Train V2's controller saw the dead worker before it registered that report, and restarted the group
    from scratch (epoch 0, not the persisted epoch-4 checkpoint). The folders on disk are the truth. A folder
    cut by a kill does not load and is passed over. `run_dir` None (a URI storage path) -> None."""
    import ray.train

    if run_dir is None or not Path(run_dir).is_dir():
        return None
    for folder in sorted(Path(run_dir).glob("checkpoint_*"), reverse=True):  # names carry their timestamps
        try:
            return ray.train.Checkpoint.from_directory(str(folder)), load(folder)
        except Exception as err:  # noqa: BLE001 - any unreadable folder is skipped, with a note
            log.warning("checkpoint %s does not load (%s): trying an older one", folder, err)
    return None


def resume_state(checkpoint, run_dir, load, progress):
    """Where a (re)started Ray Train worker resumes -> (checkpoint, state, source), or (None, None, None).

    The newer, by progress(state) (the epoch or step), of Ray Train's own checkpoint and the newest folder
    persisted under run_dir (persisted_checkpoint). Why both: a worker killed right after a report can leave
    that report persisted but never registered by Ray Train V2's controller. Ray Train then hands back the
    checkpoint before it (or none), and the restart would redo a whole interval more than the kill cost
    (the reliability suite saw 5 epochs redone with checkpoints every 4). load(folder) -> state."""
    prior = None
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            prior = load(Path(d))
    found = persisted_checkpoint(run_dir, load)
    if found is not None and (prior is None or progress(found[1]) > progress(prior)):
        why = "Ray Train had none" if prior is None else f"newer than Ray Train's at {progress(prior)}"
        return found[0], found[1], f"the newest persisted checkpoint, {why}"
    return (checkpoint, prior, "Ray Train's checkpoint") if prior is not None else (None, None, None)


def local_run_dir(storage_path, name: str) -> str | None:
    """<storage_path>/<name> when the storage is a local or mounted path (what persisted_checkpoint reads)."""
    return None if "://" in str(storage_path) else str(Path(storage_path) / name)


def previous_result(run_dir):
    """The ray.train Result of an earlier run in run_dir that reported a checkpoint, else None."""
    from ray.train import Result

    try:
        result = Result.from_path(str(run_dir))
    except RuntimeError:  # no run (or no checkpoint snapshot) there yet
        return None
    return result if result.checkpoint is not None else None
