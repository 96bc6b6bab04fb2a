"""Runtime helpers: free ports, the local Ray start-up's retries, the persisted-checkpoint fallback."""

import socket
from pathlib import Path

import pytest

from gkd import runtime


def test_free_port_is_bindable_and_outside_the_ephemeral_range():
    low, high = runtime.ephemeral_port_range()
    assert 1024 <= low < high <= 65535
    ports = {runtime.free_port() for _ in range(20)}
    # above Ray's worker ports (a head given one of those fails to start), below the ephemeral range
    assert all(runtime.FIRST_PORT <= p < low for p in ports) and runtime.FIRST_PORT > 19_999
    assert len(ports) > 1  # random picks, not one fixed port
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("", port))  # nothing holds it


def test_free_port_skips_a_taken_port_and_falls_back_to_the_os(monkeypatch):
    with socket.socket() as held:
        held.bind(("", 0))
        held.listen()
        taken = held.getsockname()[1]
        # every pick lands on the taken port: free_port must not return it, and asks the OS instead
        monkeypatch.setattr(runtime.random.SystemRandom, "randrange", lambda self, a, b: taken)
        port = runtime.free_port(tries=5)
        assert port != taken and port > 0
    # no room below a low ephemeral range: the OS's pick
    monkeypatch.setattr(runtime, "ephemeral_port_range", lambda: (15000, 60999))
    assert runtime.free_port() >= 15000


def test_a_restart_without_a_checkpoint_finds_the_newest_one_that_loads(tmp_path):
    """persisted_checkpoint: what a Ray Train worker reads when Ray Train restarted it with no checkpoint."""
    import json

    from gkd.llm.tune import DS_DIR, STATE_FILE, complete_state
    from gkd.runtime import local_run_dir, persisted_checkpoint

    run = tmp_path / "run"
    assert persisted_checkpoint(None, complete_state) is None and persisted_checkpoint(run, complete_state) is None

    def folder(stamp: str, step: int, ranks: list[int], zero_stage: int = 2):
        d = run / f"checkpoint_2026-12-03_10-16-{stamp}"
        (d / DS_DIR / f"step{step}").mkdir(parents=True)
        (d / STATE_FILE).write_text(json.dumps({"step": step, "world_size": 2, "zero_stage": zero_stage}))
        for r in ranks:
            (d / DS_DIR / f"step{step}" / f"bf16_zero_pp_rank_{r}_mp_rank_00_optim_states.pt").write_bytes(b"x")
        return d

    folder("09.97", 4, [0, 1])
    newest = folder("40.05", 8, [0])  # rank 1's shards never arrived: passed over
    ckpt, state = persisted_checkpoint(run, complete_state)
    assert state["step"] == 4 and ckpt.path.endswith("checkpoint_2026-12-03_10-16-09.97")
    (newest / DS_DIR / "step8" / "bf16_zero_pp_rank_1_mp_rank_00_optim_states.pt").write_bytes(b"x")
    assert persisted_checkpoint(run, complete_state)[1]["step"] == 8
    folder("59.00", 12, [], zero_stage=0)  # no ZeRO: the state file is enough
    assert persisted_checkpoint(run, complete_state)[1]["step"] == 12
    (run / "checkpoint_2026-12-03_10-17-00.00").mkdir()  # cut before its state file: skipped
    assert persisted_checkpoint(run, complete_state)[1]["step"] == 12
    assert local_run_dir("s3://bucket/runs", "x") is None and local_run_dir(tmp_path, "x") == str(tmp_path / "x")


def test_a_restart_resumes_from_the_newer_of_ray_trains_checkpoint_and_the_newest_persisted(tmp_path):
    """resume_state: a report persisted but never registered by Ray Train (a worker killed right after it) is
    newer than what Ray Train hands back, and is where the restart resumes."""
    import json

    import ray.train

    from gkd.runtime import resume_state

    run = tmp_path / "run"

    def folder(stamp: str, epoch: int):
        d = run / f"checkpoint_2026-12-03_10-16-{stamp}"
        d.mkdir(parents=True)
        (d / "state.json").write_text(json.dumps({"epoch": epoch}))
        return d

    def load(d):
        return json.loads((Path(d) / "state.json").read_text())

    def epoch(state):
        return state["epoch"]

    assert resume_state(None, run, load, epoch) == (None, None, None)  # a first start
    registered = ray.train.Checkpoint.from_directory(str(folder("09.97", 4)))
    ckpt, state, source = resume_state(registered, run, load, epoch)
    assert (ckpt, state["epoch"], source) == (registered, 4, "Ray Train's checkpoint")
    folder("40.05", 8)  # reported, persisted, never registered
    ckpt, state, source = resume_state(registered, run, load, epoch)
    assert state["epoch"] == 8 and ckpt.path.endswith("10-16-40.05") and source == "the newest persisted checkpoint, newer than Ray Train's at 4"
    ckpt, state, source = resume_state(None, run, load, epoch)
    assert state["epoch"] == 8 and source == "the newest persisted checkpoint, Ray Train had none"
    ckpt, state, _ = resume_state(registered, None, load, epoch)  # URI storage: Ray Train's own only
    assert (ckpt, state["epoch"]) == (registered, 4)


def test_a_local_ray_start_that_times_out_is_retried_then_said_plainly(monkeypatch):
    from gkd import runtime
    from gkd.errors import GkdError

    class FakeRay:
        def __init__(self, failures: int, message: str = "The current node timed out during startup."):
            self.failures, self.message, self.inits, self.shutdowns = failures, message, 0, 0

        def init(self, **kwargs):
            self.inits += 1
            if self.inits <= self.failures:
                raise Exception(self.message)

        def shutdown(self):
            self.shutdowns += 1

    monkeypatch.setattr(runtime.time, "sleep", lambda s: None)
    flaky = FakeRay(failures=2)
    runtime.start_local(flaky, {"address": "local"})
    assert (flaky.inits, flaky.shutdowns) == (3, 2)
    down = FakeRay(failures=3)
    with pytest.raises(GkdError, match="did not start in 3 attempts .*timed out during startup.*overloaded"):
        runtime.start_local(down, {"address": "local"})
    other = FakeRay(failures=1, message="invalid resource request")  # not a start-up timeout: raised at once
    with pytest.raises(Exception, match="invalid resource request"):
        runtime.start_local(other, {"address": "local"})
    assert other.inits == 1
