"""The Ray-free training core: seeds per method, shards, Pan's batch augmentation, deterministic fit."""

import dataclasses

import numpy as np
import pytest
import torch

from gkd.gnn.inputs import (TEST, TRAIN, UNLABELED, VAL, GraphArrays, RationaleTargets, StudentInputs,
                            graph_arrays, teacher_arrays)
from gkd.gnn.train import (METHOD_LOSSES, LoopConfig, epoch_shard, fit, keyword_inputs, repeat_key_edges, seed_nodes,
                           tensors)


def test_seed_nodes_follow_the_losses():
    y, split = np.array([0, 1, -1, 0, 1, 0]), np.array([TRAIN, TRAIN, TRAIN, VAL, TEST, UNLABELED])
    pos = {"teacher_pos": np.array([-1, -1, -1, -1, 0, -1], np.int32),
           "llm_pos": np.array([-1, -1, -1, -1, 0, 1], np.int32),
           "rationale_pos": np.array([-1, -1, -1, -1, -1, 0], np.int32)}
    assert seed_nodes(y, split, METHOD_LOSSES["vanilla"], 0, 0, **pos).tolist() == [0, 1]  # labelled train only
    assert seed_nodes(y, split, METHOD_LOSSES["kd"], 0, 0, **pos).tolist() == [0, 1, 4]  # + teacher-covered
    assert seed_nodes(y, split, METHOD_LOSSES["kd"], 0, 0).tolist() == [0, 1]  # no teacher outputs: labels only
    # + any LLM label
    assert seed_nodes(y, split, METHOD_LOSSES["interpreter"], 0, 0, **pos).tolist() == [0, 1, 4, 5]
    # pan adds random unlabelled seeds, never validation nodes
    assert seed_nodes(y, split, METHOD_LOSSES["pan"], 10, 0, **pos).tolist() == [0, 1, 2, 4, 5]


def test_epoch_shards_are_equal_cover_everything_and_depend_on_the_epoch():
    seeds = np.arange(100, 111)
    shards = [epoch_shard(seeds, 0, 3, r, 3, 4) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]  # ceil(11 / 3), wrapping around
    assert set(np.concatenate(shards)) == set(seeds.tolist())
    assert not np.array_equal(epoch_shard(seeds, 0, 4, 0, 3, 4), shards[0])
    assert np.array_equal(epoch_shard(seeds, 0, 3, 0, 3, 4), shards[0])


def test_tensors_share_memory_with_the_arrays_and_keep_the_types():
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    x.flags.writeable = False  # as ray.get hands them out of the object store
    g = GraphArrays(x=x, y=np.array([0, 1, -1]), split=np.array([TRAIN, VAL, TEST], np.int8),
                    indptr=np.array([0, 1, 2, 2]), indices=np.array([1, 0]), num_classes=2)
    A = tensors(StudentInputs(g))
    assert isinstance(A, StudentInputs) and isinstance(A.graph, GraphArrays) and A.teacher is None
    assert isinstance(A.graph.x, torch.Tensor) and A.graph.x.data_ptr() == x.ctypes.data  # no copy
    assert A.graph.y.tolist() == [0, 1, -1] and A.graph.num_classes == 2
    assert isinstance(g.x, np.ndarray)  # the numpy object is left as it was


def test_key_neighbour_edges_are_repeated_and_keywords_joined():
    A = tensors(RationaleTargets(pos=np.full(10, -1, np.int32), soft=np.zeros((0, 2), np.float32),
                                 kw_pos=np.array([-1] * 7 + [0, -1, -1], np.int32),
                                 kw_emb=np.array([[3.0, 4.0, 5.0]], np.float32),
                                 key_codes=np.array([5 * 10 + 7], np.int64),
                                 sem_score=np.full(10, np.nan, np.float32),
                                 struct_score=np.full(10, np.nan, np.float32)))
    n_id = torch.tensor([5, 7, 8])
    edge_index = torch.tensor([[1, 2], [0, 0]])  # 7 -> 5 (a key edge), 8 -> 5
    out = repeat_key_edges(A, n_id, edge_index, repeat=3)
    assert out.tolist() == [[1, 2, 1, 1], [0, 0, 0, 0]]
    assert repeat_key_edges(A, n_id, edge_index, repeat=1) is edge_index
    x = keyword_inputs(A, n_id, torch.ones(3, 2))
    assert x.tolist() == [[1, 1, 0, 0, 0], [1, 1, 3, 4, 5], [1, 1, 0, 0, 0]]


def _loop(cfg, method, graph):
    d = cfg.distill.model_copy(update={"method": method, "epochs": 6, "patience": 100})
    spec = {"kind": "sage", "in_dim": graph.x.shape[1], "hidden": 16, "num_classes": graph.num_classes,
            "num_layers": 2, "dropout": 0.5, "heads": 4}
    return LoopConfig(distill=d, mode=method, spec=spec)


@pytest.mark.slow  # Ray Train runs; the student world ingests with Ray Data (`ray` comes from that fixture)
def test_fit_is_deterministic_for_a_seed_and_reports_checkpoints(student_world):
    cfg, tag = student_world
    inputs = StudentInputs(graph_arrays(tag), teacher=teacher_arrays(cfg.workdir / "teacher", tag.num_nodes,
                                                                     tag.num_classes)[0])
    loop = _loop(cfg, "lingugkd", inputs.graph)
    events = []
    a = fit(inputs, loop, report=lambda m, s: events.append(("report", m["epoch"], s["epoch"])),
            on_epoch=lambda m, step: events.append(("epoch", step, m["epoch"])),
            on_epoch_end=lambda rank, epoch, m: events.append(("end", rank, epoch, m["val_acc"])))
    b = fit(inputs, loop)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert all(torch.equal(a["best_model"][k], b["best_model"][k]) for k in a["best_model"])
    # a checkpoint every checkpoint_every=5 epochs and at the last; the end-of-epoch hook after it, on rank 0
    assert [e[:3] for e in events if e[0] == "report"] == [("report", 5, 5), ("report", 6, 6)]
    assert [e[1] for e in events if e[0] == "epoch"] == [1, 2, 3, 4, 5, 6]
    assert [e for e in events if e[0] == "end"] == [("end", 0, k + 1, h["val_acc"]) for k, h in enumerate(a["history"])]
    assert events.index(("report", 5, 5)) < events.index(("end", 0, 5, a["history"][4]["val_acc"]))
    assert {"ce", "nce", "mix_ce", "layer_w1", "layer_w2"} <= set(a["history"][0])
    # LinguGKD aligns both student layers to the teacher's hops 1..2 (feature width from the teacher's arrays)
    assert (inputs.teacher.dim, inputs.teacher.hops) == (24, 2)
    # resuming from the epoch-3 state of a run gives the same epochs 4..6 as the uninterrupted run
    states = []
    fit(inputs, dataclasses.replace(loop, distill=loop.distill.model_copy(update={"epochs": 3})),
        report=lambda m, s: states.append(s))
    assert states[-1]["epoch"] == 3
    resumed = fit(inputs, loop, prior=states[-1])
    assert [h["loss"] for h in resumed["history"]] == [h["loss"] for h in a["history"]]
