"""The quick profile of every benchmark suite through `gkd bench` (the CI smoke test), checked on its JSON."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from gkd.bench.suites import SUITES, command, layout, run
from gkd.cli import main as gkd_main
from gkd.bench.quality import PROFILES
from gkd.data.store import TAG
from gkd.gnn.baselines import BASELINES
from gkd.gnn.inputs import TEST, TRAIN, label_rate_split, split_codes

# scale's and reliability's quick profiles have their own tests (tests/bench/test_scale.py, test_reliability.py)
SMOKE = [s for s in SUITES if s not in ("scale", "reliability")]


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


def _mean(values) -> float:
    return round(float(np.mean(values)), 4)


def check_quality(q: dict, graph_dir) -> None:
    """quality.json of the quick profile against its own runs and the graph store it ran on."""
    p = PROFILES["quick"]
    assert (p["gnns"], p["methods"], p["seeds"], p["rates"]) == (["sage", "sign"], ["vanilla", "lingugkd"], 1, [2, 6])
    # students: every gnn x method, raw then refined, each the mean of its runs
    assert [(r["gnn"], r["method"], r["refined"]) for r in q["rows"]] == [
        (g, m, refined) for g in p["gnns"] for m in p["methods"] for refined in (False, True)]
    for row in q["rows"]:
        key = (row["gnn"], row["method"], row["refined"])
        got = [r for r in q["runs"] if (r["gnn"], r["method"], r["refined"]) == key]
        assert row["seeds"] == [r["seed"] for r in got] == list(range(p["seeds"]))
        assert row["acc_mean"] == _mean([r["test"]["acc"] for r in got]) and 0 <= row["acc_mean"] <= 1
        assert row["val_acc_mean"] == _mean([r["val"]["acc"] for r in got])
    raw = [r for r in q["rows"] if not r["refined"]]
    # baselines: each of BASELINES raw and refined, each the mean of its runs
    assert [(b["name"], b["refined"]) for b in q["baselines"]] == [
        (name, refined) for name in BASELINES for refined in (False, True)]
    for b in q["baselines"]:
        got = [r for r in q["baseline_runs"] if (r["gnn"], r["refined"]) == (b["name"], b["refined"])]
        assert [r["method"] for r in got] == ["baseline"] * p["seeds"]
        assert b["acc_mean"] == _mean([r["test"]["acc"] for r in got]) and 0 <= b["acc_mean"] <= 1
    # the val sweep: every tuned student at every grid point; the winner has the best val accuracy
    tun = q["tuning"]
    assert tun["grid"] == p["grid"] == {"sage": [{"hidden": 16}, {"hidden": 16, "jk": True}],
                                        "sign": [{"hidden": 16}, {"hidden": 32}]}
    assert [(pt["gnn"], pt["params"]) for pt in tun["points"]] == [(g, x) for g in p["tune"] for x in p["grid"][g]]
    assert set(tun["chosen"]) == set(p["tune"]) == {"sage", "sign"}
    for gnn, params in tun["chosen"].items():
        pts = [pt for pt in tun["points"] if pt["gnn"] == gnn]
        assert next(pt for pt in pts if pt["params"] == params)["val_acc"] == max(pt["val_acc"] for pt in pts)
    # the bests and the goals' ratios / gap, from the values they are made of
    best = max((r for r in raw if r["method"] != "vanilla"), key=lambda r: r["acc_mean"])
    best_vanilla = max((r for r in raw if r["method"] == "vanilla"), key=lambda r: r["acc_mean"])
    assert q["best"] == {k: best[k] for k in ("gnn", "method", "acc_mean", "f1_mean")}
    assert q["best_vanilla"] == {k: best_vanilla[k] for k in ("gnn", "method", "acc_mean", "f1_mean")}
    assert q["best_vs_vanilla_acc_ratio"] == round(best["acc_mean"] / best_vanilla["acc_mean"], 3)
    mp = q["best_message_passing"]
    assert mp == {"gnn": "sage", "acc_mean": raw[0]["acc_mean"], "acc_std": raw[0]["acc_std"]}  # sign is not one
    sign_raw = next(b for b in q["baselines"] if b["name"] == "sign" and not b["refined"])
    assert q["plain_student_vs_sign_raw_ratio"] == round(mp["acc_mean"] / sign_raw["acc_mean"], 3)
    br, bb = q["best_refined"], q["best_baseline_refined"]
    assert br["acc_mean"] == max(r["acc_mean"] for r in q["rows"] if r["refined"])
    assert {k: br[k] for k in ("acc_mean", "acc_std")} in [
        {k: r[k] for k in ("acc_mean", "acc_std")} for r in q["rows"]
        if r["refined"] and (r["gnn"], r["method"]) == (br["gnn"], br["method"])]
    assert bb["acc_mean"] == max(b["acc_mean"] for b in q["baselines"] if b["refined"])
    assert bb["acc_std"] == next(b for b in q["baselines"] if b["refined"] and b["name"] == bb["name"]
                                 and b["acc_mean"] == bb["acc_mean"])["acc_std"]
    assert q["best_refined_vs_baseline_refined_ratio"] == round(br["acc_mean"] / bb["acc_mean"], 3)
    ind = q["inductive"]
    gap = 100 * (ind["refined_test_mean"] - ind["new_holdout_mean"])
    assert q["inductive_vs_transductive_acc_gap"] == round(gap, 2)
    # the inductive check: the labels-only student of the best val accuracy, on the nodes held out at ingest
    tag = TAG.load(graph_dir, features=False)
    holdout = int((tag.split == "holdout").sum())
    assert holdout > 0 and ind["holdout_nodes"] == holdout == q["graph"]["holdout_nodes"]
    assert {r["holdout"]["nodes"] for r in q["runs"] if not r["refined"]} == {holdout}
    assert ind["gnn"] == max((r for r in raw if r["method"] == "vanilla"), key=lambda r: r["val_acc_mean"])["gnn"]
    assert [g["seed"] for g in ind["runs"]] == list(range(p["seeds"]))
    for k in ("refined_test", "raw_holdout", "glnn_test", "glnn_holdout", "new_holdout"):
        assert ind[f"{k}_mean"] == _mean([g[k]["acc"] for g in ind["runs"]]) and 0 <= ind[f"{k}_mean"] <= 1
    # new nodes: each run serves the candidate val preferred, and its refined held-out number is the one counted
    for g in ind["runs"]:
        cands = g["new_candidates"]
        assert g["new_served"] in cands and g["new_holdout"] == cands[g["new_served"]]["holdout"]
        assert cands[g["new_served"]]["val_acc_reweighted"] == max(c["val_acc_reweighted"] for c in cands.values())
    assert ind["new_served"] == [g["new_served"] for g in ind["runs"]]
    # the GLNN run refines the same student as the table's refined row
    assert ind["refined_test_mean"] == next(r for r in q["rows"] if (r["gnn"], r["method"], r["refined"])
                                            == (ind["gnn"], "vanilla", True))["acc_mean"]
    # the teacher: both sides over 3 groups of its 24 test nodes
    for side in ("zero_shot", "tuned"):
        t = q["teacher"][side]
        assert t["groups"] == 3 and t["nodes"] == 24 and 0 <= t["acc_mean"] <= 1 and t["acc_std"] >= 0
    # the label-rate sweep: the rate baselines and the inductive check's student, raw and refined at every rate, all
    # scored on one test set (the pool of the largest rate removed)
    sweep = q["sweep"]
    assert sweep["gnn"] == ind["gnn"] and sweep["methods"] == [*p["rate_baselines"], f"{ind['gnn']} (gkd)"]
    assert sweep["rates"] == p["rates"] and sweep["label_pool_per_class"] == max(p["rates"]) == 6
    assert [(r["labels_per_class"], r["method"], r["refined"]) for r in sweep["rows"]] == [
        (k, m, refined) for k in p["rates"] for m in sweep["methods"] for refined in (False, True)]
    for row in sweep["rows"]:
        got = [r for r in q["sweep_runs"] if (r["labels_per_class"], r["method"], r["refined"])
               == (row["labels_per_class"], row["method"], row["refined"])]
        assert len(got) == p["seeds"] and row["acc_mean"] == _mean([r["test"]["acc"] for r in got])
    codes, counts = label_rate_split(split_codes(tag.split), tag.labels, 2, 6, 0)
    assert sweep["test_nodes"] == counts["test_nodes"] == (codes == TEST).sum() < (tag.split == "test").sum()
    assert {r["test"]["nodes"] for r in q["sweep_runs"]} == {sweep["test_nodes"]}
    assert {r["test_nodes"] for r in q["sweep_runs"] if r["method"] == sweep["methods"][-1]} == \
        {sweep["test_nodes"]}
    # the LLM's share: with vs without the teacher (tuned on that rate's labels only), refined, per seed
    assert list(q["llm_share_by_rate"]) == [str(k) for k in p["share_rates"]] == ["6"]
    for k, sh in q["llm_share_by_rate"].items():
        runs = [r for r in q["share_runs"] if r["labels_per_class"] == int(k) and r["refined"]]
        assert sorted((r["share"], r["seed"]) for r in runs) == sorted(
            (side, seed) for side in ("with", "without") for seed in range(p["seeds"]))
        assert {r["method"] for r in runs if r["share"] == "with"} == {sh["method"]} == {"lingugkd"}
        assert {(r["gnn"], r["method"]) for r in runs if r["share"] == "without"} == {(sh["gnn"], "vanilla")}
        diffs = [100 * (next(r for r in runs if (r["share"], r["seed"]) == ("with", s))["test"]["acc"]
                        - next(r for r in runs if (r["share"], r["seed"]) == ("without", s))["test"]["acc"])
                 for s in range(p["seeds"])]
        assert sh["points"] == round(_mean(diffs), 2)
        assert sh["with_refined"] == _mean([r["test"]["acc"] for r in runs if r["share"] == "with"])
        assert 0 <= sh["teacher_acc"] <= 1 and sh["taught_nodes"] > 0 and sh["teacher_examples"] > 0
        assert sh["dropped_below_floor"] == next(r["inputs"]["teacher_dropped_below_floor"] for r in runs
                                                 if r["share"] == "with")
        # the teacher saw only this rate's labels: its prompts are drawn from the rate split's train nodes
        # (the quick config caps them at teacher.train_budget = 8)
        codes_k, _ = label_rate_split(split_codes(tag.split), tag.labels, int(k), max(p["rates"]), 0)
        assert sh["teacher_examples"] == min(8, int((codes_k == 0).sum()))
        # no cap in the profile: the rate's own teacher; its taught nodes that carry a label at this rate, counted
        taught = np.load(graph_dir.parent / "share" / f"k{k}" / "teacher" / "taught.npy").astype(bool)
        assert sh["teacher_labels_per_class"] == int(k) and taught.sum() == sh["taught_nodes"]
        assert sh["taught_labelled"] == int((taught & (codes_k == TRAIN)).sum())
    assert q["llm_share_acc_points"] == q["llm_share_by_rate"]["6"]["points"]
    # every distilled method against the same GNN on labels alone: at the graph's split (the students above) ...
    for gnn in p["gnns"]:
        for kind, refined in (("raw", False), ("refined", True)):
            assert q["methods_vs_vanilla"][gnn]["lingugkd"][kind]["points"] == _points(q["runs"], gnn, "lingugkd",
                                                                                        refined, p["seeds"])
    # ... and at methods_rate with that rate's teacher (the share's): every GNN x method x seed, raw and refined
    at, mruns = q["methods_share_at"], q["method_share_runs"]
    assert "methods_unfinished" not in q  # written part-way after each GNN, cleared once every GNN has run
    assert (at["labels_per_class"], at["methods"], at["gnns"]) == (p["methods_rate"], p["share_methods"], p["gnns"]) \
        == (6, ["lingugkd"], ["sage", "sign"])
    assert sorted((r["gnn"], r["method"], r["seed"], r["refined"]) for r in mruns) == sorted(
        (g, m, s, ref) for g in p["gnns"] for m in ("vanilla", *p["share_methods"]) for s in range(p["seeds"])
        for ref in (False, True))
    assert {r["test_nodes"] for r in mruns} == {at["test_nodes"]} == {r["test_nodes"] for r in q["share_runs"]}
    below = []
    for gnn in p["gnns"]:
        cell = q["llm_share_by_method"][gnn]["lingugkd"]
        for kind, refined in (("raw", False), ("refined", True)):
            assert cell[kind]["points"] == _points(mruns, gnn, "lingugkd", refined, p["seeds"])
        if min(cell["raw"]["points"], cell["refined"]["points"]) < 0:
            below.append({"gnn": gnn, "method": "lingugkd", "raw": cell["raw"]["points"],
                          "refined": cell["refined"]["points"]})
    assert q["methods_below_vanilla"] == below
    # the share's own students are the same runs (reused, not retrained): same accuracies
    sh = q["llm_share_by_rate"]["6"]
    for r in q["share_runs"]:
        method = sh["method"] if r["share"] == "with" else "vanilla"
        assert r["test"]["acc"] == next(x["test"]["acc"] for x in mruns if (x["gnn"], x["method"], x["seed"],
                                                                            x["refined"]) ==
                                        (sh["gnn"], method, r["seed"], r["refined"]))


def _points(runs: list[dict], gnn: str, method: str, refined: bool, seeds: int) -> float:
    """method minus vanilla on the same gnn, per seed, mean in points (as the suite rounds)."""
    acc = {(r["method"], r["seed"]): r["test"]["acc"] for r in runs if r["gnn"] == gnn and r["refined"] == refined}
    return round(_mean([100 * (acc[method, s] - acc["vanilla", s]) for s in range(seeds)]), 2)


@reads_the_quick_run
def test_quality_tables_come_from_the_runs(quick):
    root, _, results = quick
    check_quality(results["quality"], root / "work" / "quality" / "graph")


@reads_the_quick_run
def test_cost_stream_sampler_serve_numbers_are_consistent(quick):
    root, _, r = quick
    c = r["cost"]
    assert c["student_vs_teacher_nodes_per_s_ratio"] == round(c["student"]["nodes_per_s"] / c["teacher"]["nodes_per_s"], 1)
    assert c["student"]["full_graph"]["matches_batched"]  # k-hop batches give the layer-wise logits
    assert c["teacher"]["parameters"] > c["student"]["parameters"] > 0 and c["nodes"] == 16
    # the teacher is read as its checkpoint was tuned: a sequence classifier by its head, a causal LM by names
    archs = json.loads((Path(c["teacher"]["model"]) / "config.json").read_text()).get("architectures") or []
    assert c["teacher"]["scoring"] == ("head" if any(a.endswith("ForSequenceClassification") for a in archs)
                                       else "names")

    s = r["stream"]
    assert s["nodes"] == 8 and set(s["ray"]) == {"1", "2"} and s["loop"]["tokens"] > 0
    assert s["two_vs_one_actor_ratio"] == round(s["ray"]["2"]["tokens_per_s"] / s["ray"]["1"]["tokens_per_s"], 3)
    t = s["teacher_outputs"]
    assert s["one_pass_vs_three_pass_nodes_per_s_ratio"] == round(t["head_one_pass"]["nodes_per_s"]
                                                                  / t["three_pass"]["nodes_per_s"], 3)
    assert s["names_one_pass_vs_three_pass_nodes_per_s_ratio"] == round(t["one_pass"]["nodes_per_s"]
                                                                        / t["three_pass"]["nodes_per_s"], 3)
    # the head read-out is the quality suite's tuned teacher (same work dir) when it has one, else timed only
    head = t["head_one_pass"]
    tuned = (root / "work" / "quality" / "teacher" / "checkpoint" / "config.json").is_file()
    assert head["nodes"] == 8 and head.get("untrained_head", False) == (not tuned)
    assert (head["acc"] is None) == (not tuned) and (head["acc"] is None or 0 <= head["acc"] <= 1)
    # both readouts score the same K-hop prompt: the same predictions, so the same accuracy on the same nodes
    assert t["one_pass"]["nodes"] == t["three_pass"]["nodes"] == 8 and t["one_pass"]["acc"] == t["three_pass"]["acc"]

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
