"""The scale suite's quick profile end to end: each stage measured, the projection's arithmetic, reuse on rerun."""

import json

import numpy as np
import pytest

from gkd.bench import scale
from gkd.data.store import node_arrays

pytestmark = [pytest.mark.ray, pytest.mark.slow]

QUICK = scale.PROFILES["quick"]["overrides"]


@pytest.fixture(scope="module")
def quick(ray_local, tmp_path_factory):
    """One measured quick run, then a rerun in the same workdir through the CLI with twice the GPUs."""
    root = tmp_path_factory.mktemp("scale")
    first = scale.run("quick", root / "scale.json", root / "w")
    argv = ["--profile", "quick", "--workdir", str(root / "w"), "--out", str(root / "again.json"), "--gpus", "16"]
    assert scale.main(argv) == 0
    return root, first, json.loads((root / "again.json").read_text())


def test_result_file_and_graph_size(quick):
    root, first, _ = quick
    assert json.loads((root / "scale.json").read_text()) == first
    assert first["profile"] == "quick" and first["command"].startswith("python -m gkd.bench.scale --profile quick")
    g = first["graph"]
    assert (g["num_nodes"], g["num_edges"], g["num_classes"]) == (QUICK["ingest.source.num_nodes"],
                                                                  QUICK["ingest.source.num_edges"], 47)
    assert g["encoder"] == "hashing" and g["feature_dim"] == QUICK["ingest.encoder.dim"] == 32
    assert np.load(root / "w" / "graph" / "x.npy", mmap_mode="r").shape == (20_000, 32)


def test_every_stage_is_measured(quick):
    _, first, _ = quick
    stages = first["stages"]
    assert list(stages) == list(scale.STAGES)
    for name, s in stages.items():
        assert s["reused"] is False, name
        assert s["wall_s"] > 0 and s["peak_rss_gib"] > 0 and s["peak_system_used_gib"] >= 0, name
    assert first["total_wall_s"] >= sum(s["wall_s"] for s in stages.values())
    assert first["peak_rss_gib"] == max(s["peak_rss_gib"] for s in stages.values())
    assert first["peak_stage"] in stages and stages[first["peak_stage"]]["peak_rss_gib"] == first["peak_rss_gib"]
    assert first["stages_wall_s"] == pytest.approx(sum(s["wall_s"] for s in stages.values()), abs=0.02)
    assert 0 < first["peak_rss_gib"] < first["memory_limit_gib"]
    assert first["reused_stages"] == []


def test_partition_is_a_metis_partition_of_every_node(quick):
    root, first, _ = quick
    p = first["stages"]["partition"]
    assert p["status"] == "done" and p["num_parts"] == 8
    part = np.load(root / "w" / "partition" / "partition.npy")
    assert part.shape == (20_000,) and np.bincount(part, minlength=8).tolist() == p["part_sizes"]
    assert 0 < p["edge_cut"] < first["graph"]["num_csr_entries"] // 2
    assert p["balance"] < 1.1  # METIS balances vertex counts within its 3% default


def test_teacher_outputs_cover_exactly_the_budget(quick):
    root, first, _ = quick
    t = first["stages"]["teacher_outputs"]
    assert t["nodes"] == t["written"] == scale.PROFILES["quick"]["budget"] == 8
    assert t["nodes_per_s"] == pytest.approx(8 / t["wall_s"], rel=0.02) and t["actors"] == 2
    covered = np.load(root / "w" / "teacher" / "covered.npy")
    _, split = node_arrays(root / "w" / "graph")
    budget = scale.budget_nodes(split, 8)
    assert np.array_equal(np.flatnonzero(covered), budget)
    assert (split[budget] == "train").sum() == t["train_nodes"] == 4
    soft = np.load(root / "w" / "teacher" / "soft.npy")
    assert np.allclose(soft[covered].sum(1), 1, atol=1e-3) and not soft[~covered].any()


def test_distill_ran_one_epoch_on_two_workers(quick):
    root, first, _ = quick
    d = first["stages"]["distill_epoch"]
    assert d["epochs"] == 1 and d["workers"] == 2 and d["method"] == "lingugkd"
    # seeds: the 1,600 train nodes plus the teacher-covered nodes outside train
    assert d["seeds"] == first["graph"]["train_nodes"] + 4 == 1604
    assert d["seeds_per_s"] == round(d["seeds_trained"] / d["epoch_s"], 2)
    assert d["train_wall_s"] > d["epoch_s"] > 0 and d["infer_wall_s"] > 0
    m = json.loads((root / "w" / "student" / "metrics.json").read_text())
    assert m["epochs_run"] == 1 and m["num_workers"] == 2 and m["method"] == "lingugkd"


def test_projection_hours_follow_from_the_measured_rates(quick):
    _, first, _ = quick
    s, p = first["stages"], first["projection"]
    a = p["assumptions"]
    rates = {"ingest_edges_per_s": s["ingest"]["num_edges"] / s["ingest"]["wall_s"],
             "teacher_nodes_per_s_per_actor": s["teacher_outputs"]["nodes_per_s"] / s["teacher_outputs"]["actors"],
             "distill_seeds_per_s_per_worker": s["distill_epoch"]["seeds_per_s"] / s["distill_epoch"]["workers"],
             "infer_nodes_per_s": s["distill_epoch"]["num_nodes"] / s["distill_epoch"]["infer_wall_s"]}
    assert p["measured_rates"] == pytest.approx(rates, rel=1e-12)
    assert a["gpus"] == 8 and a["epochs"] == 20 and a["target_nodes"] == 2_449_029
    assert a["tune_examples"] == round(1600 / 20_000 * 2_449_029) and a["seeds_per_epoch"] == 2_449_029
    teacher_s = rates["teacher_nodes_per_s_per_actor"] * a["llm_gpu_speedup"] * a["gpus"]
    hours = {
        "ingest": a["target_edges"] / (rates["ingest_edges_per_s"] * a["ingest_speedup"]) / 3600,
        "rationale": a["target_nodes"] * a["rationale_cost"] / teacher_s / 3600,
        "teacher_tuning": a["tune_examples"] * a["tune_epochs"]
        / (a["tune_examples_per_s_per_cpu_worker"] * a["tune_gpu_speedup"] * a["gpus"]) / 3600,
        "teacher_outputs": a["target_nodes"] / teacher_s / 3600,
        "distillation": a["epochs"] * a["seeds_per_epoch"]
        / (rates["distill_seeds_per_s_per_worker"] * a["gnn_gpu_speedup"] * a["gpus"]) / 3600,
        "inference": a["target_nodes"] / (rates["infer_nodes_per_s"] * a["gnn_gpu_speedup"]) / 3600,
    }
    assert {k: v["hours"] for k, v in p["stages"].items()} == pytest.approx(hours, rel=1e-12)
    assert p["total_hours"] == pytest.approx(sum(hours.values()), rel=1e-12)
    for name, stage in p["stages"].items():
        assert stage["formula"].endswith(f"= {hours[name]:.3g} h"), name
        assert "(measured)" in stage["formula"] or name == "teacher_tuning"
    assert "not a measurement" in p["note"]


def test_rerun_reuses_every_stage(quick):
    _, first, again = quick
    assert again["reused_stages"] == list(scale.STAGES)
    for name in scale.STAGES:  # each stage's entry is the earlier measurement, not a new one
        assert again["stages"][name]["reused"] is True and again["stages"][name]["measured"] == first["stages"][name]
    assert again["projection"]["measured_rates"] == first["projection"]["measured_rates"]
    # the rerun reports the stages' measured peak and walls, not those of its reuse checks
    assert [again[k] for k in ("peak_rss_gib", "peak_stage", "peak_system_used_gib", "stages_wall_s")] == [
        first[k] for k in ("peak_rss_gib", "peak_stage", "peak_system_used_gib", "stages_wall_s")]
    assert again["total_wall_s"] < first["stages_wall_s"]


def test_cli_assumption_flags_change_only_their_terms(quick):
    _, first, again = quick
    got, was = again["projection"], first["projection"]["stages"]
    assert got["assumptions"]["gpus"] == 16 and again["command"].endswith("--gpus 16")
    for name in ("rationale", "teacher_tuning", "teacher_outputs", "distillation"):
        assert got["stages"][name]["hours"] == pytest.approx(was[name]["hours"] / 2, rel=1e-12), name
    for name in ("ingest", "inference"):
        assert got["stages"][name]["hours"] == pytest.approx(was[name]["hours"], rel=1e-12), name
