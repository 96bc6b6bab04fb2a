"""Distillation inputs: compact teacher outputs, Pan's rationale arrays (with the key-neighbour fallback)."""

import numpy as np
import pyarrow as pa
import pytest

from gkd.config import EncoderConfig, PanConfig
from gkd.data.store import build_csr
from gkd.errors import DataError
from gkd.gnn.distill import _llm_soft
from gkd.gnn.inputs import (TEST, TRAIN, UNLABELED, VAL, GraphArrays, RationaleTargets, StudentInputs,
                            TeacherTargets, label_rate_split, rationale_arrays, split_codes, teacher_arrays)
from gkd.llm.features import OutputWriter
from gkd.llm.rationale import SCHEMA


def test_split_codes():
    codes = split_codes(np.array(["train", "val", "test", "unlabeled", "train"]))
    assert codes.tolist() == [TRAIN, VAL, TEST, UNLABELED, TRAIN] and codes.dtype == np.int8


def test_label_rate_split_draws_train_first_and_keeps_one_test_set():
    # class 0: 3 train, 6 test; class 1: 2 train, 2 test; one val node and one unlabelled node
    labels = np.array([0] * 9 + [1] * 4 + [0, -1])
    codes = np.array([TRAIN] * 3 + [TEST] * 6 + [TRAIN] * 2 + [TEST] * 2 + [VAL, UNLABELED], dtype=np.int8)
    runs = {k: label_rate_split(codes, labels, k, pool=4, seed=0) for k in (1, 2, 4)}
    for k, (out, counts) in runs.items():
        assert ((out == TRAIN) & (labels == 0)).sum() == k  # exactly k labels per class when the class has them
        assert ((out == TRAIN) & (labels == 1)).sum() == min(k, 4)
        assert out[13] == VAL and out[14] == UNLABELED  # val and unlabelled nodes are never touched
        assert counts["test_nodes"] == (out == TEST).sum()
    tests = [set(np.flatnonzero(out == TEST)) for out, _ in runs.values()]
    # the pool of 4 per class leaves test at every k: class 0 gives 3 train + 1 test node, class 1 all its 4
    assert tests[0] == tests[1] == tests[2] and len(tests[0]) == 6 - 1
    one, two = (set(np.flatnonzero(runs[k][0] == TRAIN)) for k in (1, 2))
    assert one < two and one <= set(np.flatnonzero(codes == TRAIN))  # nested; the graph's train nodes come first
    assert runs[4][1]["classes_short_of_labels"] == 0 and label_rate_split(codes, labels, 8, None, 0)[1][
        "classes_short_of_labels"] == 1  # class 1 has only 4 labelled nodes outside val


def test_teacher_arrays_keep_only_covered_rows(tmp_path):
    w = OutputWriter(tmp_path, num_nodes=10, num_classes=3, hops=1, dim=4)
    soft = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    w.add({"node_id": np.array([7, 2]), "soft": soft,
           "feat_hop0": np.ones((2, 4), np.float16), "feat_hop1": np.full((2, 4), 2, np.float16)})
    t, counts = teacher_arrays(tmp_path, 10, 3)
    assert isinstance(t, TeacherTargets) and counts == {"teacher_taught": 2} and t.weight is None
    assert t.pos.tolist() == [-1, -1, 0, -1, -1, -1, -1, 1, -1, -1]  # node 2 -> row 0, node 7 -> row 1
    np.testing.assert_allclose(t.soft, soft[[1, 0]])
    assert t.feats.shape == (2, 2, 4) and t.feats.dtype == np.float16
    assert (t.feats[0] == 1).all() and (t.feats[1] == 2).all()
    assert (t.dim, t.hops) == (4, 1)
    with pytest.raises(DataError, match="do not match the graph"):
        teacher_arrays(tmp_path, 11, 3)
    with pytest.raises(DataError, match="run `gkd teacher` first"):
        teacher_arrays(tmp_path / "nothing", 10, 3)


def _table(rows):
    return pa.Table.from_pylist([{**{k: None for k in SCHEMA.names}, "problems": [], **r} for r in rows], schema=SCHEMA)


def test_rationale_arrays_use_llm_key_neighbours_and_count_the_fallback():
    # 0 - 1, 0 - 2, 0 - 3, 3 - 4; features: node 3 looks like node 0's keywords
    indptr, indices = build_csr(np.array([0, 0, 0, 3]), np.array([1, 2, 3, 4]), 5)
    x = np.eye(5, 16, dtype=np.float32)
    graph = GraphArrays(x=x, y=np.zeros(5, np.int64), split=np.zeros(5, np.int8), indptr=indptr, indices=indices,
                        num_classes=2)
    table = _table([
        {"node_id": 4, "soft": [0.2, 0.8], "keywords": [], "key_neighbors": [3, 0]},  # 0 is no neighbour of 4
        {"node_id": 0, "soft": [0.9, 0.1], "keywords": ["alpha"], "key_neighbors": [9]},  # 9 invalid: fallback
    ])

    class Enc:  # a fixed "encoder": the keyword embedding equals node 3's features
        def encode(self, texts):
            return np.repeat(x[3:4], len(texts), axis=0)

    import gkd.data.encode as encode

    orig = encode.make_encoder
    encode.make_encoder = lambda cfg: Enc()
    try:
        out, counts = rationale_arrays(table, graph, EncoderConfig(name="hashing", dim=16),
                                       PanConfig(fallback_key_neighbors=1, key_edge_repeat=3))
    finally:
        encode.make_encoder = orig
    assert counts == {"rationale_nodes": 2, "keyword_nodes": 1, "llm_key_neighbor_nodes": 1,
                      "fallback_key_neighbor_nodes": 1, "key_edges": 2}
    # node 4 keeps its real key neighbour 3; node 0 falls back to its most keyword-similar neighbour, 3
    assert isinstance(out, RationaleTargets)
    assert out.key_codes.tolist() == [0 * 5 + 3, 4 * 5 + 3]  # sorted
    assert out.kw_pos.tolist() == [0, -1, -1, -1, -1] and np.allclose(out.kw_emb[0], x[3])
    assert out.sem_score[0] == pytest.approx(1.0)  # keywords orthogonal to node 0's own features
    assert np.isnan(out.sem_score[4])
    # node 0: degree 3, one key neighbour counted 3 times -> 2 extra of 5; node 4: degree 1 -> 2 extra of 3
    assert out.struct_score[0] == pytest.approx(2 / 5) and out.struct_score[4] == pytest.approx(2 / 3)
    assert out.pos.tolist() == [1, -1, -1, -1, 0]
    np.testing.assert_allclose(out.soft, [[0.2, 0.8], [0.9, 0.1]])  # rows in the table's order


def test_rationale_rows_for_another_graph_are_rejected():
    indptr, indices = build_csr(np.array([0]), np.array([1]), 2)
    graph = GraphArrays(x=np.eye(2, dtype=np.float32), y=np.zeros(2, np.int64), split=np.zeros(2, np.int8),
                        indptr=indptr, indices=indices, num_classes=2)
    with pytest.raises(DataError, match="outside 0..1"):
        rationale_arrays(_table([{"node_id": 5, "soft": [0.5, 0.5]}]), graph, EncoderConfig(name="hashing"),
                         PanConfig())


def test_llm_soft_prefers_the_teacher():
    n = 5
    graph = GraphArrays(x=np.zeros((n, 1), np.float32), y=np.zeros(n, np.int64), split=np.zeros(n, np.int8),
                        indptr=np.zeros(n + 1, np.int64), indices=np.zeros(0, np.int64), num_classes=2)
    nan = np.full(n, np.nan, np.float32)
    rationale = RationaleTargets(pos=np.array([0, 1, -1, -1, -1], np.int32),
                                 soft=np.array([[1, 0], [1, 0]], np.float32),
                                 kw_pos=np.full(n, -1, np.int32), kw_emb=np.zeros((0, 1), np.float32),
                                 key_codes=np.zeros(0, np.int64), sem_score=nan, struct_score=nan)
    teacher = TeacherTargets(pos=np.array([-1, 0, -1, 1, -1], np.int32),
                             soft=np.array([[0, 1], [0.3, 0.7]], np.float32), feats=np.zeros((2, 2, 3), np.float16))
    out = _llm_soft(StudentInputs(graph, teacher=teacher, rationale=rationale))
    assert out.pos.tolist() == [0, 1, -1, 2, -1]
    np.testing.assert_allclose(out.soft, [[1, 0], [0, 1], [0.3, 0.7]])
    # without a teacher, the rationale's soft labels alone
    alone = _llm_soft(StudentInputs(graph, rationale=rationale))
    assert alone.pos.tolist() == [0, 1, -1, -1, -1]
    np.testing.assert_allclose(alone.soft, [[1, 0], [1, 0]])


def test_teacher_arrays_teach_only_the_budget_with_calibrated_weights(tmp_path):
    """taught.npy keeps eval/val nodes out of the targets; calibration.json turns confidence into weights."""
    import json

    w = OutputWriter(tmp_path, num_nodes=6, num_classes=2, hops=0, dim=2)
    soft = np.array([[0.95, 0.05], [0.6, 0.4], [0.3, 0.7], [0.5, 0.5]], np.float32)
    w.add({"node_id": np.array([0, 1, 2, 5]), "soft": soft, "feat_hop0": np.ones((4, 2), np.float16)})
    taught = np.array([True, True, True, False, False, False])  # node 5: an eval node, output but not taught
    np.save(tmp_path / "taught.npy", taught)
    with pytest.raises(DataError, match="calibration.json is missing"):
        teacher_arrays(tmp_path, 6, 2, "calibrated")
    (tmp_path / "calibration.json").write_text(json.dumps({"x": [0.5, 0.7, 0.95], "y": [0.2, 0.6, 0.9]}))
    t, counts = teacher_arrays(tmp_path, 6, 2, "calibrated", floor=0.5, negative_precision=0.85)
    assert t.pos.tolist() == [0, 1, 2, -1, -1, -1]  # node 5 has outputs but is never a target
    np.testing.assert_allclose(t.weight, [0.9, 0.0, 0.6], atol=1e-6)  # conf .95 -> .9; .6 -> .4 < floor; .7 -> .6
    assert t.confident.tolist() == [True, False, False]
    assert counts == {"teacher_taught": 3, "teacher_dropped_below_floor": 1, "teacher_weight_mean": 0.5,
                      "teacher_confident": 1}
    uniform, _ = teacher_arrays(tmp_path, 6, 2)
    assert uniform.weight is None and uniform.pos.tolist() == t.pos.tolist()
    # soft-label targets carry the teacher's weights
    g = GraphArrays(x=np.zeros((6, 2), np.float32), y=np.zeros(6, np.int64), split=np.zeros(6, np.int8),
                    indptr=np.zeros(7, np.int64), indices=np.zeros(0, np.int64), num_classes=2)
    ls = _llm_soft(StudentInputs(g, teacher=t))
    np.testing.assert_allclose(ls.weight, [0.9, 0.0, 0.6], atol=1e-6)
    np.save(tmp_path / "taught.npy", np.array([True, False, False, True, False, False]))  # node 3 has no output
    with pytest.raises(DataError, match="taught.npy does not fit"):
        teacher_arrays(tmp_path, 6, 2)
