"""The reliability suite's quick profile through `gkd bench --suite reliability` (its own test, like scale's): real
SIGKILLs of real gkd processes, every outcome checked on the counts it wrote."""

import json
import shutil

import pytest

from gkd.bench import reliability
from gkd.bench.markdown import render
from gkd.bench.suites import run

pytestmark = [pytest.mark.ray, pytest.mark.slow, pytest.mark.serve]


@pytest.fixture(scope="module")
def rel(tmp_path_factory):
    if shutil.which("wrk") is None:
        pytest.fail("the serve fault needs wrk: `make test` installs it (apt-get install wrk)")
    root = tmp_path_factory.mktemp("bench")
    out = run(["reliability"], "quick", root)
    assert out["suites"]["reliability"]["rc"] == 0
    return root, json.loads((root / "results" / "reliability.json").read_text())


def test_every_result_key_is_counted_by_a_fault_that_ran(rel):
    _, r = rel
    assert set(reliability.KEYS) <= set(r)
    assert set(r["faults"]) == set(reliability.FAULTS)
    errors = {name: f["error"] for name, f in r["faults"].items() if "error" in f}
    assert errors == {}
    # the keys are the faults' own counts
    assert r["nodes_lost"] == r["faults"]["stream"]["lost"] and r["nodes_duplicated"] == r["faults"]["stream"][
        "duplicated"]
    assert r["fuzz_cases"] == r["faults"]["fuzz"]["cases"] > 0
    assert r["bad_inputs_tried"] == r["faults"]["inputs"]["tried"] >= 40


def test_killed_streams_drivers_and_workers_lose_and_repeat_nothing(rel):
    _, r = rel
    s = r["faults"]["stream"]
    assert len(s["kills"]) >= 1 and all(k["processes_killed"] > 1 for k in s["kills"])  # the driver and its Ray
    assert s["actor_kill"]["killed"] and s["stage_done"]
    assert (s["lost"], s["duplicated"], s["outside_budget"]) == (0, 0, 0) and s["nodes"] == s["budget"]
    assert (r["nodes_lost"], r["nodes_duplicated"]) == (0, 0)
    t = r["faults"]["train"]
    assert t["rc"] == 0 and t["resumed_after_epoch"] is not None and t["resumed_after_epoch"] > 0
    assert 0 <= t["epochs_redone"] <= t["checkpoint_every"] and t["same_final_metrics"]
    u = r["faults"]["tune"]  # the teacher's DeepSpeed tuning: one rank killed, its ZeRO shards reloaded
    assert u["rc"] == 0 and u["resumed_after_step"] is not None and u["resumed_after_step"] > 0
    assert 0 <= u["steps_redone"] <= u["checkpoint_every"] and u["same_final_metrics"]
    assert u["killed_run"]["steps"] == u["uninterrupted_run"]["steps"] > u["resumed_after_step"]
    i = r["faults"]["ingest"]
    assert i["killed_mid_encode"] and 0 < i["cached_at_kill"] < i["texts"]
    assert (i["rerun_rc"], i["reencoded_beyond_missing"]) == (0, 0)
    assert i["rerun_encoded"] + i["rerun_from_cache"] == i["texts"]
    d = r["faults"]["driver"]
    assert all(k["inside"] for k in d["kills"]) and d["rc"] == 0
    assert d["stages_redone_after_done"] == [] and d["same_final_metrics"]
    assert (d["registry_versions"], d["duplicate_versions"]) == (1, 0)


def test_service_fuzz_listeners_disk_and_inputs(rel):
    _, r = rel
    f = r["faults"]["fuzz"]
    assert (r["fuzz_server_errors"], r["fuzz_undocumented_statuses"], r["non_loopback_listeners"]) == (0, 0, 0)
    assert f["listeners"]["listening"] >= 3 and {"200", "422"} <= set(f["statuses"])
    for n in ("1", "2"):
        s = r["faults"]["serve"][n]
        assert s["killed"] and s["replicas_before"] == int(n) and s["replicas_back"]
        assert s["wrk"]["requests"] > 0 and s["failed_requests"] >= 0
    assert r["failed_requests_one_replica"] == r["faults"]["serve"]["1"]["failed_requests"]
    disk = r["faults"]["disk"]
    if "skipped" not in disk:  # needs root to mount a tmpfs
        assert disk["rc_when_full"] == 2 and disk["clear_error"] and not disk["traceback"], disk
        assert disk["rerun_rc"] == 0 and disk["validate_after_rerun"]["rc"] == 0
    assert r["bad_inputs_clear_errors"] == r["bad_inputs_tried"]


def test_mlflow_outage_fails_clearly_and_the_rerun_adds_no_duplicates(rel):
    _, r = rel
    m = r["faults"]["mlflow"]
    if "skipped" in m:
        pytest.skip(m["skipped"])
    assert m["rc_during_outage"] == 0 or (m["error_names_uri"] and not m["traceback"]), m
    assert m["rerun_rc"] == 0 and m["registry_versions"] == 1
    assert r["mlflow_outage_duplicates"] == m["duplicates"] == 0


def test_the_document_shows_each_fault_and_its_verdict(rel, tmp_path):
    root, r = rel
    text = render(root / "results", tmp_path / "B.md", tmp_path / "plots")
    assert "## Reliability: faults injected, outcomes counted" in text
    for name in reliability.FAULTS:
        assert f"| {name} |" in text
    met, ran = reliability.markdown_headline(r)[0].split("/")
    assert int(ran) >= 7 and int(met) <= int(ran)
