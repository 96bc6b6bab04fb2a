"""The teacher stage end to end on a tiny Llama: zero-shot eval, 2-worker DeepSpeed LoRA tuning, outputs."""

import json

import numpy as np
import pytest

from gkd.llm import teacher

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # Ray Data ingest, 2-worker DeepSpeed tuning on Ray Train


def test_teacher_stage_writes_outputs_and_resumes(world):
    cfg, tag = world
    cfg = cfg.model_copy(deep=True)
    cfg.teacher = cfg.teacher.model_copy(update={"max_steps": 3, "batch_size": 2, "lr": 1e-2, "eval_budget": 12,
                                                  "train_budget": 12, "checkpoint_every": 2, "scoring": "auto",
                                                  "val_budget": 6})
    m = teacher.run(cfg)
    # auto: both read-outs tuned (3 steps = one epoch of 12 prompts on 2 workers), the better on val kept
    tuning = m["tuning"]
    cands = tuning["candidates"]
    assert set(cands) == {"names", "head"} and tuning["val_nodes"] == 6
    assert tuning["scoring"] == max(cands, key=lambda s: cands[s]["val_acc"])
    for c in cands.values():
        assert [round(e["epoch"]) for e in c["epochs"]] == [1] and 0 <= c["epochs"][0]["val_acc"] <= 1
    assert tuning["val_acc"] == cands[tuning["scoring"]]["val_acc"]
    arch = json.loads((cfg.workdir / "teacher" / "checkpoint" / "config.json").read_text())["architectures"][0]
    assert arch.endswith("ForSequenceClassification") == (tuning["scoring"] == "head")
    tdir = cfg.workdir / "teacher"
    evals = teacher.eval_nodes(tag.labels, tag.split, 12, cfg.teacher.seed)
    assert m["test_nodes"] == 12 and len(evals) == 12 and (tag.split[evals] == "test").all()
    for key in ("zero_shot", "tuned"):
        assert m[key]["nodes"] == 12 and 0 <= m[key]["acc"] <= 1
    assert m["tuning"]["examples"] == 12 and m["tuning"]["step"] == 3
    covered = np.load(tdir / "covered.npy")
    soft = np.load(tdir / "soft.npy")
    assert covered.sum() == m["covered_nodes"] and covered[evals].all()
    # measured nodes (test eval, val calibration) have outputs but are never taught on
    vals = teacher.val_nodes(tag.labels, tag.split, 6, cfg.teacher.seed)
    taught = np.load(tdir / "taught.npy")
    assert taught.sum() == m["taught_nodes"] > 0 and not taught[evals].any() and not taught[vals].any()
    assert covered[vals].all() and (covered == (taught | np.isin(np.arange(len(taught)), np.r_[evals, vals]))).all()
    cal = json.loads((tdir / "calibration.json").read_text())
    assert cal["nodes"] == m["val"]["nodes"] == 6 and np.all(np.diff(cal["y"]) >= 0)
    assert m["val"]["acc"] == round(float((soft[vals].argmax(1) == tag.labels[vals]).mean()), 4)
    assert np.allclose(soft[covered].sum(1), 1, atol=1e-3) and not soft[~covered].any()  # never filled
    hidden = json.loads((tdir / "checkpoint" / "config.json").read_text())["hidden_size"]
    for k in range(cfg.prompt.hops + 1):
        f = np.load(tdir / f"feat_hop{k}.npy")
        assert f.shape == (tag.num_nodes, hidden) and f.dtype == np.float16
        assert np.isfinite(f).all() and np.abs(f[covered]).sum(1).min() > 0 and not f[~covered].any()
    # tuned accuracy is read from the written soft labels
    assert m["tuned"]["acc"] == round(float((soft[evals].argmax(1) == tag.labels[evals]).mean()), 4)
    # a rerun finds every step done
    again = teacher.run(cfg)
    assert again["zero_shot"] == m["zero_shot"] and again["tuned"] == m["tuned"]
