"""Refinement (temperature, class prior, Correct & Smooth), the plain baselines, hop features and SIGN: Ray-free."""

import numpy as np
import pytest
import torch

from gkd.config import DistillConfig, RefineConfig
from gkd.gnn import refine as R
from gkd.gnn.refine_stage import glnn_weights
from gkd.gnn.baselines import BASELINES, baseline_logits
from gkd.gnn.distill import student_spec, with_hops
from gkd.gnn.infer import inductive_logits, layer_inputs
from gkd.gnn.inputs import TEST, TRAIN, UNLABELED, VAL, RefinedTargets, StudentInputs
from gkd.gnn.models import GNN, SIGN, build_gnn
from gkd.gnn.propagate import hop_features, mean_adjacency, mean_of_neighbors, sym_adjacency
from gkd.gnn.train import LoopConfig, fit, glnn_seeds


def _acc(scores, g, split=TEST):
    nodes = np.flatnonzero(g.split == split)
    return float((scores[nodes].argmax(1) == g.y[nodes]).mean())


def test_hop_features_are_neighbour_means_and_a_new_node_gets_the_same_numbers(sbm_graph):
    g = sbm_graph(n=200, seed=1)
    hops = hop_features(g.x, g.indptr, g.indices, 2, batch_cols=5)  # several column blocks
    d = g.x.shape[1]
    for i in (0, 17, 199):
        nb = g.indices[g.indptr[i] : g.indptr[i + 1]]
        np.testing.assert_allclose(hops[i, d : 2 * d], g.x[nb].mean(0), rtol=1e-5, atol=1e-6)
        one_hop = hops[:, d : 2 * d]
        np.testing.assert_allclose(hops[i, 2 * d :], one_hop[nb].mean(0), rtol=1e-5, atol=1e-6)
        # node i as a "new" node: means of its neighbours' cached rows are exactly its hops in the graph
        np.testing.assert_allclose(mean_of_neighbors(one_hop, [nb])[0], hops[i, 2 * d :], rtol=1e-5, atol=1e-6)
    assert np.allclose(mean_adjacency(g.indptr, g.indices).sum(1), 1.0)
    assert mean_of_neighbors(g.x, [np.zeros(0, dtype=np.int64)]).tolist() == [[0.0] * d]


def test_temperature_recovers_an_overconfident_model():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 5)) * 2
    p = R.softmax(true_logits)
    y = np.array([rng.choice(5, p=row) for row in p])
    assert R.fit_temperature(true_logits * 3.0, y) == pytest.approx(3.0, rel=0.15)
    assert R.fit_temperature(true_logits, y) == pytest.approx(1.0, rel=0.15)


def test_em_and_bbse_estimate_a_shifted_class_prior_without_target_labels():
    rng = np.random.default_rng(1)
    c, means = 3, np.eye(3) * 2.5

    def draw(prior, n):
        y = rng.choice(c, size=n, p=prior)
        x = means[y] + rng.normal(size=(n, c))
        # Bayes posteriors under a uniform source prior: softmax of the class log-likelihoods
        return R.softmax(-0.5 * ((x[:, None, :] - means[None]) ** 2).sum(2)), y

    target_prior = np.array([0.7, 0.2, 0.1])
    p_val, y_val = draw(np.full(3, 1 / 3), 3000)
    p_target, _ = draw(target_prior, 6000)
    source = np.full(3, 1 / 3)
    np.testing.assert_allclose(R.prior_em(p_target, source), target_prior, atol=0.03)
    np.testing.assert_allclose(R.prior_bbse(p_val, y_val, p_target, c), target_prior, atol=0.03)
    # no shift: both stay at the source prior
    p_same, _ = draw(source, 6000)
    np.testing.assert_allclose(R.prior_em(p_same, source), source, atol=0.03)


def test_bbse_stays_on_the_simplex_when_val_cannot_tell_two_classes_apart():
    """Few val labels and two classes the model confuses: C is near singular. Clipping lstsq's answer left
    a prior far from the truth on the classes it could tell apart; the simplex solution keeps those and the
    confused pair's total."""
    rng = np.random.default_rng(3)
    c = 4
    base = np.array([[0.45, 0.45, 0.05, 0.05], [0.45, 0.45, 0.05, 0.05],
                     [0.05, 0.05, 0.85, 0.05], [0.05, 0.05, 0.05, 0.85]])

    def draw(prior, n, noise):
        y = rng.choice(c, size=n, p=prior)
        p = np.clip(base[y] + rng.normal(scale=noise, size=(n, c)), 1e-3, None)
        return p / p.sum(1, keepdims=True), y

    p_val, y_val = draw(np.full(c, 0.25), 20, 0.02)
    target_prior = np.array([0.3, 0.3, 0.3, 0.1])
    p_target, _ = draw(target_prior, 20000, 0.02)
    q = R.prior_bbse(p_val, y_val, p_target, c)
    assert q.min() >= 0 and q.sum() == pytest.approx(1.0)
    assert q[2] == pytest.approx(0.3, abs=0.03) and q[3] == pytest.approx(0.1, abs=0.03)
    assert q[0] + q[1] == pytest.approx(0.6, abs=0.03)
    # a class with no val rows keeps 0
    q = R.prior_bbse(p_val[y_val != 3], y_val[y_val != 3], p_target, c)
    assert q[3] == 0.0 and q.sum() == pytest.approx(1.0)


def test_reweighted_accuracy_weights_rows_to_the_prior():
    y = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 0, 0])  # right on class 0 only
    assert R.reweighted_accuracy(pred, y, np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert R.reweighted_accuracy(pred, y, np.array([0.9, 0.1])) == pytest.approx(0.9)
    assert R.reweighted_accuracy(pred, np.zeros(0, dtype=int), np.array([0.5, 0.5])) == 0.0


def test_correct_and_smooth_lifts_weak_predictions_on_a_homophilous_graph(sbm_graph):
    g = sbm_graph(homophily=0.8, noise=4.0, seed=2)
    adj = sym_adjacency(g.indptr, g.indices)
    logits, _ = baseline_logits("mlp", g, seed=0)
    base = R.softmax(logits)
    train = np.flatnonzero(g.split == TRAIN)
    out = R.correct_and_smooth(base, adj, train, g.y[train], 0.8, 0.8, 50)
    assert _acc(out, g) >= _acc(base, g) + 0.1, (_acc(base, g), _acc(out, g))
    np.testing.assert_allclose(out[train], np.eye(g.num_classes)[g.y[train]])  # labels clamped
    # both strengths 0: only the train rows change
    same = R.correct_and_smooth(base, adj, train, g.y[train], 0.0, 0.0, 50)
    rest = np.setdiff1d(np.arange(len(g.y)), train)
    np.testing.assert_allclose(same[rest], base[rest])


def test_refine_chooses_on_val_and_never_reads_test_labels(sbm_graph):
    g = sbm_graph(homophily=0.7, noise=3.5, seed=3)
    adj = sym_adjacency(g.indptr, g.indices)
    logits, _ = baseline_logits("mlp", g, seed=0)
    cfg = RefineConfig()
    ref = R.refine(logits, g.y, g.split, adj, "em", cfg.correct_alphas, cfg.smooth_alphas, cfg.iterations)
    assert ref.probs.shape == logits.shape and np.allclose(ref.probs.sum(1), 1.0, atol=1e-5)
    assert ref.choice["val_acc_reweighted"] >= ref.choice["raw_val_acc_reweighted"]
    assert set(ref.choice) >= {"temperature", "prior_correction", "correct_alpha", "smooth_alpha"}
    # the estimated prior is near the target nodes' real class mix (0.55 / 0.25 / 0.12 / 0.08)
    target = (g.split == TEST) | (g.split == UNLABELED)
    real = np.bincount(g.y[target], minlength=g.num_classes) / target.sum()
    assert np.abs(ref.prior - real).max() < 0.12, (ref.prior, real)
    assert _acc(ref.probs, g) > _acc(logits, g)
    # shuffle every test label: the refined predictions stay the same to the bit
    y2 = g.y.copy()
    test = np.flatnonzero(g.split == TEST)
    y2[test] = np.random.default_rng(0).permutation(y2[test])
    ref2 = R.refine(logits, y2, g.split, adj, "em", cfg.correct_alphas, cfg.smooth_alphas, cfg.iterations)
    np.testing.assert_array_equal(ref.probs, ref2.probs)
    assert ref.choice == ref2.choice
    # prior "none": no correction is tried
    none = R.refine(logits, g.y, g.split, adj, "none", [0.0], [0.5], 10)
    assert none.choice["prior_correction"] is False and none.choice["smooth_alpha"] == 0.5


def test_baselines_use_the_graph_and_choose_on_val(sbm_graph):
    g = sbm_graph(homophily=0.8, noise=4.0, seed=4)
    acc = {}
    for name in BASELINES:
        logits, chosen = baseline_logits(name, g, seed=0)
        assert logits.shape == (len(g.y), g.num_classes)
        acc[name] = _acc(logits, g)
        assert "val_acc" in chosen
    # noisy text, homophilous edges: every graph-aware baseline beats the text-only MLP by a margin
    for name in ("label_propagation", "sgc", "sign"):
        assert acc[name] >= acc["mlp"] + 0.1, acc
    # the seed changes the initialisation only: the same seed is the same model
    a, _ = baseline_logits("sign", g, seed=1)
    b, _ = baseline_logits("sign", g, seed=1)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_logits("gpt", g)


def test_gcn_root_weight_keeps_the_nodes_own_features():
    torch.manual_seed(0)
    with_root = GNN("gcn", 8, 16, 3, 2, dropout=0.0, root_weight=True)
    assert with_root.spec()["root_weight"] is True and len(with_root.roots) == 2
    assert build_gnn({**with_root.spec(), "root_weight": False}).roots is None
    assert GNN("sage", 8, 16, 3, 2, root_weight=True).spec()["root_weight"] is False  # GCN only
    # an old spec without the key loads as before (no root weight)
    old = {k: v for k, v in with_root.spec().items() if k != "root_weight"}
    assert build_gnn(old).roots is None
    # layer = relu(D^-1 (A + I) X W + X W_root): node 0 is a hub of 20 neighbours, its own row weighs 1/21
    # in the mean and fully in the root term
    x = torch.randn(21, 8)
    hub = torch.stack([torch.arange(1, 21), torch.zeros(20, dtype=torch.long)])
    with_root.eval()
    mean_0 = x.mean(0, keepdim=True)  # (x_0 + 20 neighbours) / 21
    expect = torch.relu(with_root.convs[0].lin(mean_0) + with_root.convs[0].bias + with_root.roots[0](x[:1]))
    torch.testing.assert_close(with_root.layer(0, x, hub)[:1], expect, rtol=1e-5, atol=1e-5)


def test_sign_student_trains_and_answers_new_nodes_exactly(sbm_graph):
    g = sbm_graph(homophily=0.7, noise=3.0, seed=5)
    d = DistillConfig(gnn="sign", method="vanilla", hidden=32, batch_size=32, epochs=30, patience=10, num_workers=1,
                      lr=0.01)
    inputs = StudentInputs(with_hops(g, d))
    assert g.hop_x.shape == (len(g.y), 3 * g.x.shape[1])
    spec = student_spec(d, g.x.shape[1], g.num_classes)
    state = fit(inputs, LoopConfig(distill=d, mode="vanilla", spec=spec))
    model = build_gnn(spec)
    model.load_state_dict(state["best_model"])
    assert isinstance(model, SIGN) and state["best_val"] > 0.6
    hidden, logits = layer_inputs(model, g.x, g.indptr, g.indices, batch_size=64)
    assert len(hidden) == 2 and _acc(logits, g) > 0.6
    # nodes 3 and 40 asked as new nodes (their text + their neighbours): the same logits as in the graph
    nodes = np.array([3, 40])
    nbrs = [g.indices[g.indptr[i] : g.indptr[i + 1]] for i in nodes]
    np.testing.assert_allclose(inductive_logits(model, hidden, g.x[nodes], nbrs), logits[nodes], rtol=1e-4,
                               atol=1e-4)
    with pytest.raises(ValueError, match="needs"):
        model(torch.zeros(2, 5))


def test_glnn_fits_the_refined_targets_class_balanced(sbm_graph):
    g = sbm_graph(homophily=0.7, noise=3.0, seed=6)
    adj = sym_adjacency(g.indptr, g.indices)
    logits, _ = baseline_logits("sign", g, seed=0)
    ref = R.refine(logits, g.y, g.split, adj)
    w = glnn_weights(ref.probs, ref.prior, g.split, g.y)
    fitted = g.split != VAL
    assert (w[g.split == VAL] == 0).all() and w[fitted].mean() == pytest.approx(1.0, rel=1e-5)
    cls = np.where(g.split == TRAIN, g.y, ref.probs.argmax(1))
    small, big = int(np.argmin(ref.prior)), int(np.argmax(ref.prior))
    assert w[fitted & (cls == small)].mean() > w[fitted & (cls == big)].mean()  # rare classes weigh more
    refined = RefinedTargets(probs=ref.probs, weight=w)
    seeds = glnn_seeds(g, refined, 100, seed=0, epoch=0)
    assert len(seeds) == 100 + int((g.split == TRAIN).sum()) and not (g.split[seeds] == VAL).any()
    assert not np.array_equal(seeds, glnn_seeds(g, refined, 100, seed=0, epoch=1))  # a new draw each epoch
    d = DistillConfig(gnn="sage", method="vanilla", hidden=32, fanouts=[10, 5], batch_size=64, epochs=15,
                      patience=15, num_workers=1, lr=0.01)
    spec = student_spec(d, g.x.shape[1], g.num_classes)
    state = fit(StudentInputs(g, refined=refined), LoopConfig(distill=d, mode="glnn", spec=spec, glnn_nodes=300))
    first, last = state["history"][0], state["history"][-1]
    assert {"ce", "glnn"} <= set(first) and last["glnn"] < first["glnn"]


def test_new_node_refiner_applies_temperature_prior_and_neighbours_and_round_trips():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(6, 4))
    nbr = rng.dirichlet(np.ones(4), size=6)
    has = np.array([True, True, False, True, False, True])
    ratio = np.array([2.0, 1.0, 0.5, 1.0])
    r = R.NewNodeRefiner(temperature=1.5, ratio=ratio, alpha=0.25)
    got = r.apply(logits, nbr, has)
    own = R.softmax(logits, 1.5) * ratio
    own /= own.sum(1, keepdims=True)
    np.testing.assert_allclose(got[~has], own[~has], atol=1e-6)  # no neighbours: the node's own answer
    np.testing.assert_allclose(got[has], 0.75 * own[has] + 0.25 * nbr[has], atol=1e-6)
    back = R.NewNodeRefiner.from_json(r.to_json())
    np.testing.assert_allclose(back.apply(logits, nbr, has), got)
    assert R.NewNodeRefiner.from_json(None) is None
    np.testing.assert_allclose(R.NewNodeRefiner.from_json({"temperature": 2.0}).apply(logits),
                               R.softmax(logits, 2.0), atol=1e-6)


def test_new_node_refiner_chosen_on_val_lifts_nodes_outside_the_graph(sbm_graph):
    """A weak, prior-blind classifier on a homophilous graph with a shifted target: val picks the prior
    correction and/or the neighbours' refined predictions, and nodes classified from outside the graph (their
    own logits + their neighbours) gain over the raw answer, without their labels being read."""
    g = sbm_graph(n=900, seed=5, noise=3.0)
    adj = sym_adjacency(g.indptr, g.indices)
    logits, _ = baseline_logits("mlp", g, seed=0, hops=2)
    ref = R.refine(logits, g.y, g.split, adj)
    val = np.flatnonzero(g.split == VAL)
    nbr_val = np.asarray(mean_adjacency(g.indptr, g.indices)[val] @ ref.probs)
    source = R.class_prior(g.y[g.split == TRAIN], g.num_classes)
    refiner, acc = R.fit_new_node_refiner(logits[val], g.y[val], nbr_val, np.diff(g.indptr)[val] > 0, ref, source)
    raw_acc = R.reweighted_accuracy(logits[val].argmax(1), g.y[val], ref.prior)
    assert acc > raw_acc and (refiner.alpha > 0 or refiner.ratio is not None)
    # test nodes asked as new nodes (own logits, neighbour ids): the refined answer beats the raw one
    test = np.flatnonzero(g.split == TEST)
    nbrs = [g.indices[g.indptr[i] : g.indptr[i + 1]] for i in test]
    probs = refiner.apply(logits[test], *R.neighbor_mean(ref.probs, nbrs))
    assert (probs.argmax(1) == g.y[test]).mean() > (logits[test].argmax(1) == g.y[test]).mean() + 0.02
