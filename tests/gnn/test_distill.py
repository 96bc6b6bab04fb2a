"""The student stage end to end on Ray Train: distillation beats vanilla, 2-worker DDP survives a killed worker."""

import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from gkd.config import content_hash
from gkd.gnn import distill
from gkd.gnn.inputs import StudentInputs, graph_arrays, teacher_arrays
from gkd.gnn.train import tensors

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # the student world ingests with Ray Data; Ray Train runs


def crash_once(marker: str, kill_rank: int, kill_epoch: int, rank: int, epoch: int, metrics: dict) -> None:
    """LoopConfig.epoch_hook of the resume test: rank `kill_rank` dies after epoch `kill_epoch` like an OOM-killed
    worker, once (the marker file keeps the restarted run alive). Module-level, so Ray workers can unpickle it."""
    if rank == kill_rank and epoch == kill_epoch and not Path(marker).exists():
        Path(marker).write_text(f"killed rank {rank} after epoch {epoch}\n")
        os._exit(1)


def _with(cfg, out=None, **distill_updates):
    c = cfg.model_copy(deep=True)
    c.distill = c.distill.model_copy(update=distill_updates)
    if out is not None:
        c.stage_dirs = {"distill": out}
    return c


def test_distillation_from_a_strong_teacher_beats_vanilla(student_world, tmp_path):
    cfg, tag = student_world
    results = {}
    for method in ("vanilla", "kd", "lingugkd", "pan", "all"):
        c = _with(cfg, tmp_path / method, method=method, interpreter_dir=tmp_path / "interpreter")
        results[method] = distill.run(c)
    # pan and all trained the interpreter once, under a key that ignores the student-only fields
    assert distill.interpreter_key(_with(cfg, method="pan")) == distill.interpreter_key(_with(cfg, method="all",
                                                                                                    kd_weight=3.0))
    assert distill.interpreter_key(_with(cfg, method="pan", hidden=8)) != distill.interpreter_key(cfg)
    metrics = json.loads((tmp_path / "interpreter" / "metrics.json").read_text())
    assert metrics["key"] == distill.interpreter_key(cfg) and metrics == results["all"]["interpreter"]
    acc = {m: r["test"]["acc"] for m, r in results.items()}
    # 5 labels per class and weak features: labels alone get little; a 90%-accurate teacher on 300 nodes helps
    for method in ("kd", "lingugkd", "pan", "all"):
        assert acc[method] >= acc["vanilla"] + 0.15, acc
    m = results["all"]
    assert m["test"]["nodes"] == int((tag.split == "test").sum())
    assert set(m["test"]["per_class"]) == set(tag.class_names)
    assert m["teacher_nodes"]["nodes"] == cfg.teacher.eval_budget
    assert m["inputs"]["teacher_covered"] > 0 and m["inputs"]["key_edges"] > 0
    assert m["inputs"]["semantic_nodes"] == int(np.ceil(0.2 * m["inputs"]["keyword_nodes"]))
    assert m["interpreter"]["test"]["acc"] > acc["vanilla"]
    assert {"ce", "kd", "pseudo", "nce", "pan_out", "pan_sem", "pan_struct"} <= set(m["history"][0])
    # the saved student reproduces the reported logits and accuracy from a fresh load
    gnn, info = distill.load_student(tmp_path / "all" / "checkpoint")
    assert info["class_names"] == tag.class_names and info["method"] == "all"
    logits, _ = distill._infer(gnn, graph_arrays(tag), cfg.distill, "cpu", "check")
    np.testing.assert_allclose(logits, np.load(tmp_path / "all" / "logits.npy"), atol=2e-2)
    test = np.flatnonzero(tag.split == "test")
    assert round(float((logits[test].argmax(1) == tag.labels[test]).mean()), 4) == m["test"]["acc"]
    assert m["key"] == content_hash(_with(cfg, method="all"), "distill")


def test_the_interpreter_is_built_like_its_student_and_an_uncapped_gin_one_is_not_reused(student_world, tmp_path):
    """A GIN interpreter caps its neighbour sums at the training fanouts, as the student does at inference (an
    uncapped one summed every neighbour at full-graph inference: its targets lost most of their accuracy)."""
    cfg, _ = student_world
    reused = {}
    for gnn in ("gin", "sage"):
        idir = tmp_path / f"interp-{gnn}"
        c = _with(cfg, tmp_path / gnn, gnn=gnn, method="pan", epochs=3, interpreter_dir=idir)
        spec = distill.run(c)["interpreter"]["spec"]
        assert spec == {**distill.student_spec(c.distill, spec["in_dim"], 4), "kind": gnn}
        assert spec["sum_caps"] == ([5, 10] if gnn == "gin" else None)
        # as an interpreter saved before its spec was recorded (i.e. built with uncapped sums)
        saved = json.loads((idir / "metrics.json").read_text())
        (idir / "metrics.json").write_text(json.dumps({**{k: v for k, v in saved.items() if k != "spec"},
                                                       "best_epoch": -1}))
        again = distill.run(_with(c, tmp_path / f"{gnn}-again"))["interpreter"]
        reused[gnn] = again["best_epoch"] == -1
        assert again["spec"] if not reused[gnn] else "spec" not in again
    assert reused == {"gin": False, "sage": True}  # only the GIN interpreter changed: only it is retrained


def test_two_worker_ddp_resumes_after_a_worker_is_killed(student_world, tmp_path):
    cfg, tag = student_world
    cfg = _with(cfg, method="kd", num_workers=2, epochs=6, patience=100, checkpoint_every=2)
    inputs = StudentInputs(graph_arrays(tag), teacher=teacher_arrays(cfg.workdir / "teacher", tag.num_nodes,
                                                                     tag.num_classes)[0])
    spec = {"kind": "sage", "in_dim": inputs.graph.x.shape[1], "hidden": 16, "num_classes": tag.num_classes,
            "num_layers": 2, "dropout": 0.5, "heads": 4}
    marker = tmp_path / "killed.txt"
    # rank 1 dies (os._exit) after epoch 3; Ray Train restarts both workers from the epoch-2 checkpoint
    killed = distill.train_student(inputs, cfg, "kd", spec, tmp_path / "a",
                            epoch_hook=functools.partial(crash_once, str(marker), 1, 3))
    assert marker.read_text() == "killed rank 1 after epoch 3\n"
    clean = distill.train_student(inputs, cfg, "kd", spec, tmp_path / "b")
    assert killed["epoch"] == clean["epoch"] == 6
    assert [h["epoch"] for h in killed["history"]] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([h["loss"] for h in killed["history"]], [h["loss"] for h in clean["history"]],
                               rtol=1e-5)
    assert [h["val_acc"] for h in killed["history"]] == [h["val_acc"] for h in clean["history"]]
    assert all(torch.allclose(killed["best_model"][k], clean["best_model"][k], atol=1e-6) for k in clean["best_model"])


def test_inputs_travel_through_the_object_store_without_a_copy(student_world):
    import ray

    cfg, tag = student_world
    inputs = StudentInputs(graph_arrays(tag), teacher=teacher_arrays(cfg.workdir / "teacher", tag.num_nodes,
                                                                     tag.num_classes)[0])
    ref = ray.put(inputs)
    got = ray.get(ref)
    assert isinstance(got, StudentInputs) and got.rationale is None and got.graph.num_classes == tag.num_classes
    np.testing.assert_array_equal(got.graph.x, inputs.graph.x)
    np.testing.assert_array_equal(got.teacher.feats, inputs.teacher.feats)
    # read-only views of the shared object store buffer (a deserialised copy would be writable) ...
    assert not got.graph.x.flags.writeable and not got.teacher.soft.flags.writeable
    assert ray.get(ref).graph.x.ctypes.data == got.graph.x.ctypes.data
    # ... that tensors() wraps without a copy either
    assert tensors(got).graph.x.data_ptr() == got.graph.x.ctypes.data


def test_vanilla_needs_no_teacher_and_methods_say_what_is_missing(student_world, tmp_path):
    from gkd.config import build_config
    from gkd.errors import DataError

    cfg, _ = student_world
    bare = build_config({**cfg.model_dump(mode="json"), "workdir": str(tmp_path)})
    (tmp_path / "graph").symlink_to(cfg.graph_dir.resolve())
    with pytest.raises(DataError, match="run `gkd teacher` first"):
        distill.run(_with(bare, method="kd"))


def test_sign_student_then_refine_stage_with_glnn_and_held_out_nodes(student_world, tmp_path):
    from gkd.data.store import read_holdout
    from gkd.errors import DataError
    from gkd.gnn import refine, refine_stage
    from gkd.pipeline import run_stage
    from gkd.gnn.infer import inductive_logits, layer_inputs

    cfg, tag = student_world
    c = _with(cfg, tmp_path / "sign", gnn="sign", method="vanilla")
    c.stage_dirs = {"distill": tmp_path / "sign", "refine": tmp_path / "refined"}
    c.refine = c.refine.model_copy(update={"glnn_epochs": 10, "glnn_nodes": 200})
    m = run_stage(c, "distill", track=False)["summary"]  # its marker says which config trained the student
    holdout = read_holdout(c.graph_dir)
    assert len(holdout) == round(0.1 * (len(holdout) + int((tag.split == "test").sum()))) > 0
    assert m["holdout"]["nodes"] == len(holdout) and m["test"]["acc"] > 0.3  # 4 classes: chance is 0.25
    r = refine_stage.run(c)
    # refinement chose on val, never hurt reweighted val accuracy, and the GLNN student was trained and scored
    assert r["choice"]["val_acc_reweighted"] >= r["choice"]["raw_val_acc_reweighted"]
    assert r["raw"]["test"] == {k: v for k, v in m["test"].items() if k != "per_class"}
    assert r["glnn"]["holdout"]["nodes"] == len(holdout) and r["glnn"]["history"]
    assert {"ce", "glnn"} <= set(r["glnn"]["history"][0])
    probs = np.load(tmp_path / "refined" / "checkpoint" / "refined.npy").astype(np.float32)
    assert probs.shape == (tag.num_nodes, tag.num_classes) and np.allclose(probs.sum(1), 1.0, atol=1e-2)
    test = np.flatnonzero(tag.split == "test")
    assert round(float((probs[test].argmax(1) == tag.labels[test]).mean()), 4) == r["refined"]["test"]["acc"]
    # new nodes: each candidate's refinement chosen on val; the better one by reweighted val acc is served,
    # and its held-out number is the refined inductive answer on those nodes, recomputed here from the files
    cands = r["new_nodes"]["candidates"]
    assert set(cands) == {"student", "glnn"} and all(x["holdout"]["nodes"] == len(holdout) for x in cands.values())
    served = r["new_nodes"]["served"]
    assert cands[served]["val_acc_reweighted"] == max(x["val_acc_reweighted"] for x in cands.values())
    gnn, info = distill.load_student(tmp_path / "refined" / "checkpoint")
    assert info["refined"] == "refined.npy" and info["new_nodes"] == served and gnn.kind == "sign"
    hidden, _ = layer_inputs(gnn, tag.x, tag.indptr, tag.indices)
    logits = inductive_logits(gnn, hidden, np.asarray(tag.x[holdout.nodes]), holdout.neighbors)
    if served == "glnn":
        assert round(float((logits.argmax(1) == holdout.labels).mean()), 4) == r["glnn"]["holdout"]["acc"]
    refiner = refine.NewNodeRefiner.from_json(info["new_node_refine"])
    pred = refiner.apply(logits, *refine.neighbor_mean(probs, holdout.neighbors)).argmax(1)
    assert abs(float((pred == holdout.labels).mean()) - r["new_nodes"]["holdout"]["acc"]) <= 1 / len(holdout)
    # a refine config pointed at a student trained with another distill config refuses, with the reason
    other = c.model_copy(deep=True)
    other.distill = other.distill.model_copy(update={"hidden": 8})
    with pytest.raises(DataError, match="trained with another distill config"):
        refine_stage.run(other)
