"""The Ray-free serving core: the layer cache, the inductive path against a full forward pass, request checks."""

import numpy as np
import pytest
import torch

from gkd.errors import GkdError
from gkd.serve.model import (RequestError, StudentService, TeacherService, inductive_logits, layer_inputs,
                             load_served_student, softmax)

from .conftest import random_student, reference_probs

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # the fixture ingests with Ray Data (~35 s)


def full_forward(gnn, x: np.ndarray, indptr, indices, extra_src=(), extra_dst=()) -> tuple[np.ndarray, list]:
    """gnn(x, every CSR edge + extra edges) -> (logits (n, C), [h_1 .. h_L])."""
    n0 = len(indptr) - 1
    src = np.concatenate([indices, np.asarray(extra_src, dtype=np.int64)])
    dst = np.concatenate([np.repeat(np.arange(n0), np.diff(indptr)), np.asarray(extra_dst, dtype=np.int64)])
    with torch.no_grad():
        logits, reps = gnn.eval()(torch.from_numpy(np.asarray(x, dtype=np.float32)),
                                  torch.from_numpy(np.stack([src, dst])).long())
    return logits.numpy(), [r.numpy() for r in reps]


@pytest.mark.parametrize("kind", ["gcn", "sage", "gat", "gin"])
def test_layer_cache_equals_a_full_forward_pass(serve_world, kind):
    _, tag, _, _, _ = serve_world
    gnn = random_student(tag, kind, seed=1)
    hidden, logits = layer_inputs(gnn, tag.x, tag.indptr, tag.indices, batch_size=64)  # 5 chunks per layer
    ref_logits, reps = full_forward(gnn, tag.x, tag.indptr, tag.indices)
    assert len(hidden) == 2 and hidden[0] is tag.x
    np.testing.assert_allclose(hidden[1], reps[0], atol=1e-5)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-5)


@pytest.mark.parametrize("kind", ["gcn", "sage", "gat", "gin"])
def test_inductive_answer_equals_a_full_forward_with_the_new_nodes_added(serve_world, kind):
    """New nodes linked by edges neighbour -> new only: the graph's own embeddings stay as they were."""
    _, tag, _, _, _ = serve_world
    gnn = random_student(tag, kind, seed=2)
    hidden, _ = layer_inputs(gnn, tag.x, tag.indptr, tag.indices)
    rng = np.random.default_rng(0)
    x_new = rng.normal(size=(3, tag.x.shape[1])).astype(np.float32)
    neighbors = [np.array([1, 2, 3]), np.array([3, 3, 200, 17]), np.array([], dtype=np.int64)]  # dup, isolated
    n = tag.num_nodes
    uniq = [np.unique(s) for s in neighbors]
    src = np.concatenate(uniq)
    dst = np.concatenate([np.full(len(s), n + j) for j, s in enumerate(uniq)])
    ref, _ = full_forward(gnn, np.concatenate([tag.x, x_new]), np.concatenate([tag.indptr, [tag.indptr[-1]] * 3]),
                          tag.indices, src, dst)
    got = inductive_logits(gnn, hidden, x_new, neighbors)
    np.testing.assert_allclose(got, ref[n:], atol=1e-5)
    before, _ = full_forward(gnn, tag.x, tag.indptr, tag.indices)
    np.testing.assert_allclose(ref[:n], before, atol=1e-6)  # the reference really held the graph fixed
    alone = inductive_logits(gnn, hidden, x_new[2:], neighbors[2:])  # no neighbours in the whole batch
    np.testing.assert_allclose(alone, ref[n + 2 :], atol=1e-5)


@pytest.fixture(scope="module")
def service(serve_world):
    cfg, tag, gnn, ckpt, _ = serve_world
    cfg = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"checkpoint": ckpt})})
    gnn2, info, model_info, _ = load_served_student(cfg)
    return StudentService(gnn2, info, tag, model_info, cfg)


def test_known_nodes_are_the_full_graph_answer_and_a_copied_node_gets_the_same(serve_world, service):
    _, tag, gnn, _, _ = serve_world
    ref = reference_probs(gnn, tag)
    np.testing.assert_allclose(service.probs, ref, atol=1e-5)
    node = int(np.argmax(np.diff(tag.indptr)))  # the best-connected node
    texts = tag.texts()
    q = service.parse(node_ids=[5, node], keys=[service.keys[7]],
                      nodes=[{"text": texts[node], "neighbors": tag.neighbors(node).tolist()}])
    probs = service.student_probs([q])[0]
    np.testing.assert_allclose(probs[:3], ref[[5, node, 7]], atol=1e-6)
    # same text (same features) and same neighbours: the inductive pass reproduces the node's own answer
    np.testing.assert_allclose(probs[3], ref[node], atol=1e-5)


def test_batched_queries_are_split_back_in_order(serve_world, service):
    _, tag, gnn, _, _ = serve_world
    ref = reference_probs(gnn, tag)
    texts = tag.texts()
    qs = [service.parse(node_ids=[i], nodes=[{"text": texts[i + 1], "neighbors": tag.neighbors(i + 1).tolist()}])
          for i in (10, 20, 30)]
    out = service.student_probs(qs)
    for i, probs in zip((10, 20, 30), out):
        np.testing.assert_allclose(probs, ref[[i, i + 1]], atol=1e-5)


def test_answers_name_classes_top_k_first_and_the_answering_model(service):
    q = service.parse(node_ids=[3], top_k=2)
    probs = np.array([[0.1, 0.7, 0.2]], dtype=np.float32)
    out = service.answer(q, probs, ["teacher"])
    (p,) = out["predictions"]
    names = service.class_names
    assert out["model"] == "serve-student" and out["version"] is None
    assert p["node_id"] == 3 and p["key"] == service.keys[3] and p["label"] == names[1]
    assert p["confidence"] == pytest.approx(0.7) and p["answered_by"] == "teacher"
    assert list(p["probabilities"]) == [names[1], names[2]]
    assert service.parse(node_ids=[3], top_k=99).top_k == 3  # at most the number of classes


@pytest.mark.parametrize("request_, status, message", [
    ({}, 400, "empty request"),
    ({"node_ids": list(range(17))}, 413, "17 nodes in one request; this server takes at most 16"),
    ({"node_ids": [1, 300, -2]}, 404, "node_ids: unknown node ids 300, -2; this graph has ids 0..299"),
    ({"keys": ["no-such-node"]}, 404, "keys: unknown keys 'no-such-node'"),
    ({"nodes": [{"text": "  \n"}]}, 400, "nodes[0].text is empty"),
    ({"nodes": [{"text": "x" * 501}]}, 413, "nodes[0].text has 501 characters; this server takes at most 500"),
    ({"nodes": [{"text": "ok", "neighbors": list(range(65))}]}, 413, "nodes[0] lists 65 neighbours; this server takes at most 64"),
    ({"nodes": [{"text": "ok", "neighbors": [0, 999]}]}, 404, "nodes[0].neighbors: unknown node ids 999"),
    ({"node_ids": [2**63 + 5]}, 404, f"node_ids: unknown node ids {2**63 + 5}"),
    ({"nodes": [{"text": "ok", "neighbors": [-(2**80)]}]}, 404, f"nodes[0].neighbors: unknown node ids {-(2**80)}"),
    ({"nodes": [{"text": "\ud8b1 abc"}]}, 400, "nodes[0].text is not valid Unicode: a lone surrogate '\\ud8b1'"),
])
def test_bad_requests_are_refused_with_a_status_and_the_reason(service, request_, status, message):
    with pytest.raises(RequestError) as err:
        service.parse(**request_)
    assert err.value.status == status and message in str(err.value)


def test_student_from_the_registry_alias_and_a_clear_error_without_one(serve_world):
    cfg, _, gnn, _, _ = serve_world
    loaded, info, model_info, refined = load_served_student(cfg)
    assert model_info["name"] == "serve-student" and model_info["version"] == "1"
    assert model_info["source"] == "registry" and model_info["uri"] == "models:/serve-student@champion"
    assert model_info["metrics"] == {"val_acc": 0.61, "test_acc": 0.55}
    for a, b in zip(loaded.state_dict().values(), gnn.state_dict().values()):
        assert torch.equal(a, b)
    bad = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"alias": "nope"})})
    with pytest.raises(GkdError, match="no version of 'serve-student' has alias 'nope'"):
        load_served_student(bad)


def test_teacher_prompts_hold_the_new_node_and_its_neighbours(serve_world):
    cfg, tag, _, _, _ = serve_world
    teacher = TeacherService(cfg)
    texts = tag.texts()
    items = [{"node_id": 4}, {"text": "brand new node text", "neighbors": [8]}]
    prompts = teacher.prompts(items)
    assert prompts[0] == teacher.builder.scoring_prefix(4)
    assert "Node: brand new node text" in prompts[1]
    assert texts[8].split()[0] in prompts[1].split("1-hop neighbors:")[1]
    soft = teacher.score(items)
    assert soft.shape == (2, tag.num_classes)
    np.testing.assert_allclose(soft.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(soft[:1], teacher.score(items[:1]), atol=1e-4)  # batch-independent


def test_known_nodes_come_from_refined_predictions_new_ones_from_the_student(serve_world, tmp_path):
    from gkd.gnn.distill import save_student
    from gkd.gnn.models import SIGN

    cfg, tag, _, _, _ = serve_world
    torch.manual_seed(0)
    sign = SIGN(tag.x.shape[1], 16, tag.num_classes, 2, dropout=0.0).eval()
    rng = np.random.default_rng(0)
    refined = rng.dirichlet(np.ones(tag.num_classes), size=tag.num_nodes).astype(np.float16)
    ckpt = tmp_path / "checkpoint"
    save_student(sign, ckpt, {"class_names": tag.class_names, "encoder": tag.meta["encoder"], "graph": tag.name,
                              "gnn": "sign", "method": "vanilla", "refined": "refined.npy", "new_nodes": "glnn"})
    np.save(ckpt / "refined.npy", refined)
    c = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"checkpoint": ckpt})})
    gnn, info, model_info, got = load_served_student(c)
    svc = StudentService(gnn, info, tag, model_info, c, refined=got)
    node = 11
    nbrs = tag.neighbors(node)
    q = svc.parse(node_ids=[3, node], nodes=[{"text": tag.texts()[node], "neighbors": nbrs.tolist()}])
    probs = svc.student_probs([q])[0]
    np.testing.assert_allclose(probs[:2], refined[[3, node]].astype(np.float32))
    # the new node (a copy of node 11) is the SIGN student's inductive answer: its own full-graph row
    hidden, logits = layer_inputs(gnn, tag.x, tag.indptr, tag.indices)
    np.testing.assert_allclose(probs[2], softmax(logits[[node]])[0], atol=1e-5)
    assert svc.answered_by(q) == ["refined", "refined", "student"]
    body = svc.answer(q, probs, svc.answered_by(q))
    assert [p["answered_by"] for p in body["predictions"]] == ["refined", "refined", "student"]
    answers = svc.describe()["answers"]
    assert answers["known_nodes"] == "refined" and answers["new_nodes"] == "student"
    assert "glnn" in answers["new_nodes_from"]
    # refined predictions of another graph are refused with the reason
    with pytest.raises(GkdError, match="refined predictions are 5 x"):
        StudentService(gnn, info, tag, model_info, c, refined=got[:5])
    # with a new-node refinement in student.json: temperature, prior ratio and the neighbours' refined rows
    ratio = np.linspace(0.5, 2.0, tag.num_classes)
    info2 = {**info, "new_node_refine": {"temperature": 2.0, "ratio": ratio.tolist(), "alpha": 0.5}}
    svc2 = StudentService(gnn, info2, tag, model_info, c, refined=got)
    own = softmax(logits[[node]] / 2.0)[0] * ratio
    own /= own.sum()
    nbr = refined[np.unique(nbrs)].astype(np.float32).mean(0)
    expect = 0.5 * own + 0.5 * nbr
    np.testing.assert_allclose(svc2.student_probs([q])[0][2], expect / expect.sum(), atol=1e-5)
    assert "class prior, 0.5 x its neighbours' refined predictions" in svc2.describe()["answers"]["new_nodes_from"]
    (ckpt / "refined.npy").unlink()
    with pytest.raises(Exception, match="refined.npy is missing"):
        load_served_student(c)
