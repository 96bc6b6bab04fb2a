"""The quick profile of every benchmark suite through `gkd bench` (the CI smoke test), checked on its JSON."""

import json
import shutil

import numpy as np
import pytest

from gkd.bench.suites import SUITES, command, layout, run
from gkd.cli import main as gkd_main
from gkd.data.store import TAG
from gkd.gnn.inputs import TEST, label_rate_split, split_codes

# scale's quick profile has its own test (tests/bench/test_scale.py)
SMOKE = [s for s in SUITES if s != "scale"]


def reads_the_quick_run(test):
    """The marks of a test that uses `quick`: every suite runs in its own process with its own Ray cluster, and the
    serve suite starts Ray Serve and the bare uvicorn app (about 8 minutes on 2 cores)."""
    for mark in (pytest.mark.ray, pytest.mark.slow, pytest.mark.serve):
        test = mark(test)
    return test


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    if shutil.which("wrk") is None:
        pytest.fail("the serve suite needs wrk: `make test` installs it (apt-get install wrk)")
    root = tmp_path_factory.mktemp("bench")
    out = run(SMOKE, "quick", root)
    results = {s: json.loads((root / "results" / f"{s}.json").read_text()) for s in SMOKE}
    return root, out, results


@reads_the_quick_run
def test_every_suite_ran_and_wrote_its_result(quick):
    root, out, results = quick
    assert {s: st["rc"] for s, st in out["suites"].items()} == {s: 0 for s in SMOKE}
    for suite, r in results.items():
        assert r["profile"] == "quick", suite
        assert r["command"].startswith(f"python -m gkd.bench.{suite} --profile quick"), suite
        assert r["machine"]["cpus"] >= 1
    # the run's own record: every suite's exit code and wall, and a total covering them
    rec = json.loads((root / "results" / "run.json").read_text())
    assert rec["suites"] == out["suites"] and rec["profile"] == "quick"
    assert rec["work"] == str(root / "work")
    # walls are rounded to 0.1 s, each by up to 0.05 s: the sum of n rounded walls may pass the rounded total
    walls = [st["wall_s"] for st in rec["suites"].values()]
    assert sum(walls) <= rec["total_s"] + 0.05 * (len(walls) + 1) and rec["total_s"] <= out["wall_s"]


@reads_the_quick_run
def test_quality_tables_come_from_the_runs(quick):
    root, _, results = quick
    q = results["quality"]
    assert [(r["gnn"], r["method"]) for r in q["rows"]] == [("sage", "vanilla"), ("sage", "lingugkd")]
    for row in q["rows"]:
        accs = [r["test"]["acc"] for r in q["runs"] if (r["gnn"], r["method"]) == (row["gnn"], row["method"])]
        assert row["acc_mean"] == round(float(np.mean(accs)), 4) and 0 <= row["acc_mean"] <= 1
    assert q["best"]["method"] == "lingugkd" and q["best_vanilla"]["method"] == "vanilla"
    assert q["best_vs_vanilla_acc_ratio"] == round(q["best"]["acc_mean"] / q["best_vanilla"]["acc_mean"], 3)
    for side in ("zero_shot", "tuned"):
        t = q["teacher"][side]
        assert t["groups"] == 3 and t["nodes"] == 24 and 0 <= t["acc_mean"] <= 1 and t["acc_std"] >= 0
    # the sweep: two methods at every rate, all scored on one test set (the pool of the largest rate removed)
    sweep = q["sweep"]
    assert [(r["labels_per_class"], r["method"]) for r in sweep["rows"]] == [
        (2, "vanilla"), (2, "lingugkd"), (6, "vanilla"), (6, "lingugkd")]
    tag = TAG.load(root / "work" / "quality" / "graph", features=False)
    codes, counts = label_rate_split(split_codes(tag.split), tag.labels, 2, 6, 0)
    assert sweep["test_nodes"] == counts["test_nodes"] == (codes == TEST).sum() < (tag.split == "test").sum()
    assert {r["test_nodes"] for r in q["sweep_runs"]} == {sweep["test_nodes"]}


@reads_the_quick_run
def test_cost_stream_sampler_serve_numbers_are_consistent(quick):
    _, _, r = quick
    c = r["cost"]
    assert c["student_vs_teacher_nodes_per_s_ratio"] == round(c["student"]["nodes_per_s"] / c["teacher"]["nodes_per_s"], 1)
    assert c["student"]["full_graph"]["matches_batched"]  # k-hop batches give the layer-wise logits
    assert c["teacher"]["parameters"] > c["student"]["parameters"] > 0 and c["nodes"] == 16

    s = r["stream"]
    assert s["nodes"] == 8 and set(s["ray"]) == {"1", "2"} and s["loop"]["tokens"] > 0
    assert s["two_vs_one_actor_ratio"] == round(s["ray"]["2"]["tokens_per_s"] / s["ray"]["1"]["tokens_per_s"], 3)

    g = r["sampler"]["graphs"][0]
    assert g["num_nodes"] == 300 and g["ours"]["seeds_per_s"] > 0 and g["ours"]["mean_sampled_nodes_per_batch"] > 0

    sv = r["serve"]
    assert not [x for x in sv["runs"] if x["non_2xx"] or x["socket_errors"]]
    for payload in ("ids1", "new1"):
        for c, point in sv["batched_vs_unbatched"][payload].items():
            assert point["batched"]["rps"] > 0 and point["unbatched"]["rps"] > 0 and point["batched"]["p99_ms"] > 0
            assert point["rps_ratio"] == round(point["batched"]["rps"] / point["unbatched"]["rps"], 3)


@reads_the_quick_run
def test_document_has_every_suite_and_flags_the_quick_profile(quick):
    root, out, _ = quick
    doc = (root / "BENCHMARKS.md").read_text()
    assert out["doc"] == str(root / "BENCHMARKS.md")
    for title in ("quality", "cost", "sampler", "stream", "serve", "scale"):
        assert title in doc.lower()
    assert "quick profile" in doc.lower() and "gkd bench --suite scale" in doc  # scale was not run here
    rec = json.loads((root / "results" / "run.json").read_text())
    assert f"{rec['started_at']} to {rec['finished_at']}" in doc and "| quality | ok |" in doc
    assert list((root / "plots").glob("*.png"))


def test_layout_and_commands():
    full = layout("full")
    assert str(full["doc"]) == "BENCHMARKS.md" and str(full["results"]) == "bench/results"
    assert str(layout("quick")["results"]) == "bench/quick/results"
    cmd = command("serve", "full", full)
    assert cmd[1:5] == ["-m", "gkd.bench.serve", "--profile", "full"] and "bench/work/quality" in cmd
    # --work: the suites' work dirs elsewhere (a fresh clone resuming an earlier run's), results still in bench/
    elsewhere = layout("full", work="/data/bench-work")
    assert str(elsewhere["results"]) == "bench/results" and str(elsewhere["doc"]) == "BENCHMARKS.md"
    assert command("sampler", "full", elsewhere)[-3:] == ["/data/bench-work/sampler", "--graph-dir",
                                                          "/data/bench-work/quality/graph"]


def test_unknown_suite_is_a_clear_error(capsys):
    assert gkd_main(["bench", "--suite", "quality,speed"]) == 2
    assert "unknown suite(s) speed" in capsys.readouterr().err
