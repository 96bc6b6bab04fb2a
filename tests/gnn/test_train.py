"""The Ray-free training core: seeds per method, shards, Pan's batch augmentation, deterministic fit."""

import numpy as np
import torch

from gkd.gnn.inputs import TEST, TRAIN, UNLABELED, VAL, graph_arrays, teacher_arrays
from gkd.gnn.train import (METHOD_LOSSES, epoch_shard, fit, keyword_inputs, repeat_key_edges, seed_nodes, tensors)


def test_seed_nodes_follow_the_losses():
    arrays = {"y": np.array([0, 1, -1, 0, 1, 0]), "split": np.array([TRAIN, TRAIN, TRAIN, VAL, TEST, UNLABELED]),
              "t_pos": np.array([-1, -1, -1, -1, 0, -1], np.int32),
              "l_pos": np.array([-1, -1, -1, -1, 0, 1], np.int32),
              "r_pos": np.array([-1, -1, -1, -1, -1, 0], np.int32), "kw_pos": np.full(6, -1, np.int32)}
    assert seed_nodes(arrays, METHOD_LOSSES["vanilla"], 0, 0).tolist() == [0, 1]  # labelled train only
    assert seed_nodes(arrays, METHOD_LOSSES["kd"], 0, 0).tolist() == [0, 1, 4]  # + teacher-covered
    assert seed_nodes(arrays, METHOD_LOSSES["interpreter"], 0, 0).tolist() == [0, 1, 4, 5]  # + any LLM label
    # pan adds random unlabelled seeds, never validation nodes
    assert seed_nodes(arrays, METHOD_LOSSES["pan"], 10, 0).tolist() == [0, 1, 2, 4, 5]


def test_epoch_shards_are_equal_cover_everything_and_depend_on_the_epoch():
    seeds = np.arange(100, 111)
    shards = [epoch_shard(seeds, 0, 3, r, 3, 4) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # ceil(11 / 3), wrapping around
    assert set(np.concatenate(shards)) == set(seeds.tolist())
    assert not np.array_equal(epoch_shard(seeds, 0, 4, 0, 3, 4), shards[0])
    assert np.array_equal(epoch_shard(seeds, 0, 3, 0, 3, 4), shards[0])


def test_key_neighbour_edges_are_repeated_and_keywords_joined():
    A = tensors({"x": np.zeros((10, 2), np.float32), "key_codes": np.array([5 * 10 + 7], np.int64),
                 "kw_pos": np.array([-1] * 7 + [0, -1, -1], np.int32), "kw_emb": np.array([[3.0, 4.0, 5.0]], np.float32)})
    n_id = torch.tensor([5, 7, 8])
    edge_index = torch.tensor([[1, 2], [0, 0]])  # 7 -> 5 (a key edge), 8 -> 5
    out = repeat_key_edges(A, n_id, edge_index, repeat=3)
    assert out.tolist() == [[1, 2, 1, 1], [0, 0, 0, 0]]
    assert repeat_key_edges(A, n_id, edge_index, repeat=1) is edge_index
    x = keyword_inputs(A, n_id, torch.ones(3, 2))
    assert x.tolist() == [[1, 1, 0, 0, 0], [1, 1, 3, 4, 5], [1, 1, 0, 0, 0]]


def _config(cfg, method, arrays):
    d = cfg.distill.model_copy(update={"method": method, "epochs": 6, "patience": 100})
    spec = {"kind": "sage", "in_dim": arrays["x"].shape[1], "hidden": 16, "num_classes": arrays["num_classes"],
            "num_layers": 2, "dropout": 0.5, "heads": 4}
    return {"distill": d.model_dump(mode="json"), "mode": method, "spec": spec,
            "teacher_dim": int(arrays["t_feats"].shape[2]), "hops": int(arrays["t_feats"].shape[0] - 1)}


def test_fit_is_deterministic_for_a_seed_and_reports_checkpoints(student_world):
    cfg, tag = student_world
    arrays = graph_arrays(tag)
    arrays.update(teacher_arrays(cfg.workdir / "teacher", tag.num_nodes, tag.num_classes))
    config = _config(cfg, "lingugkd", arrays)
    reports = []
    a = fit(arrays, config, report=lambda m, s: reports.append((m["epoch"], s["epoch"])))
    b = fit(arrays, config)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert all(torch.equal(a["best_model"][k], b["best_model"][k]) for k in a["best_model"])
    assert reports == [(5, 5), (6, 6)]  # every checkpoint_every=5 epochs and the last
    assert {"ce", "nce", "mix_ce", "layer_w1", "layer_w2"} <= set(a["history"][0])
    # resuming from the epoch-3 state of a run gives the same epochs 4..6 as the uninterrupted run
    states = []
    fit(arrays, {**config, "distill": {**config["distill"], "epochs": 3}},
        report=lambda m, s: states.append(s))
    resumed = fit(arrays, config, prior=states[-1])
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in a["history"]]
