import os
import sys

import pytest

# Ray Train V2's controller polls its workers every 2 s by default, and a worker's report() waits for that poll:
# tests train many tiny runs, so they poll faster. Propagated by Ray Train to its controller and workers, and
# inherited by the bench suites' and the job-submit test's own processes.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")


def pytest_collection_modifyitems(config, items):
    """Every test that uses the session's Ray cluster, directly or through a fixture built on it (fixturenames
    is the whole closure), is marked `ray`: a new test cannot forget it, and `-m "not ray"` stays Ray-free."""
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)


@pytest.fixture(autouse=True)
def _ray_only_when_marked(request):
    """A test that starts Ray without the `ray` marker fails (e.g. serve.shutdown() starts a local cluster when
    none runs), so `-m "not ray"` really runs without one."""
    ray = sys.modules.get("ray")
    before = ray is not None and ray.is_initialized()
    yield
    ray = sys.modules.get("ray")
    if not before and ray is not None and ray.is_initialized() and request.node.get_closest_marker("ray") is None:
        pytest.fail(f"{request.node.nodeid} started a Ray cluster but is not marked `ray`")


@pytest.fixture(autouse=True)
def _feature_cache(tmp_path_factory, monkeypatch):
    """Every test session gets its own feature cache, never the user's ~/.cache/gkd."""
    monkeypatch.setenv("GKD_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "gkd-cache"))


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray cluster for the whole session (2 CPUs, no dashboard)."""
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
        from gkd.runtime import loopback_only

        loopback_only(ray)  # as gkd's own local clusters (ray.local_loopback)
        # address="local": always a fresh cluster for the tests, never one a `ray start` left running
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
