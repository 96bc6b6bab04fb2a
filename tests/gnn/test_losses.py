import math

import numpy as np

import pytest
import torch
import torch.nn.functional as F

import gkd.gnn.losses as L

from gkd.gnn.losses import (
    LayerAdaptiveAlignment,
    cross_entropy,
    feature_alignment,
    info_nce,
    kd_kl,
    output_mse,
    pseudo_label_ce,
    top_fraction_mask,
)


def _softmax(xs):
    e = [math.exp(x) for x in xs]
    return [v / sum(e) for v in e]


def _ce(row, target):
    return -math.log(_softmax(row)[target])


def _close(t, expected, tol=1e-6):
    assert t.dim() == 0
    assert t.item() == pytest.approx(expected, abs=tol)


def _assert_connected_zero(loss, *leaves):
    assert loss.dim() == 0 and loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    for leaf in leaves:
        assert leaf.grad is not None and torch.all(leaf.grad == 0)


# -- cross_entropy ---------------------------------------------------------------------------------


def test_cross_entropy_hand_computed_and_ignores_unmasked_rows():
    rows = [[1.0, 2.0, 0.0], [0.0, 0.0, 0.0], [3.0, 1.0, 2.0]]
    logits = torch.tensor(rows, requires_grad=True)
    y = torch.tensor([1, -1, 0])  # row 1 has an unknown label but is masked off
    mask = torch.tensor([True, False, True])
    expected = (_ce(rows[0], 1) + _ce(rows[2], 0)) / 2
    loss = cross_entropy(logits, y, mask)
    _close(loss, expected)
    loss.backward()
    assert torch.all(logits.grad[1] == 0)


# -- kd_kl -----------------------------------------------------------------------------------------


def _kd_by_hand(student, teacher, t):
    total = 0.0
    for s_row, p_row in zip(student, teacher):
        p_t = _softmax([math.log(p) / t for p in p_row])
        p_s = _softmax([s / t for s in s_row])
        total += sum(a * (math.log(a) - math.log(b)) for a, b in zip(p_t, p_s))
    return total / len(student) * t * t


def test_kd_kl_hand_computed_at_temperature_2_and_zero_teacher_rows_masked():
    student = [[1.0, 0.0, -1.0], [0.0, 2.0, 0.5]]
    teacher = [[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]]
    s = torch.tensor(student + [[5.0, 0.0, 0.0]])
    p = torch.tensor(teacher + [[0.0, 0.0, 0.0]])  # invalid (uncovered) row, masked off
    mask = torch.tensor([True, True, False])
    loss = kd_kl(s, p, 2.0, mask)
    _close(loss, _kd_by_hand(student, teacher, 2.0))
    assert torch.isfinite(loss)


def test_kd_kl_at_t1_equals_torch_kl_div():
    torch.manual_seed(0)
    s = torch.randn(5, 4)
    p = torch.softmax(torch.randn(5, 4), dim=-1)
    mask = torch.tensor([True, False, True, True, False])
    ref = F.kl_div(F.log_softmax(s[mask], dim=-1), p[mask], reduction="batchmean")
    _close(kd_kl(s, p, 1.0, mask), ref.item(), tol=1e-5)


# -- pseudo_label_ce -------------------------------------------------------------------------------


def test_pseudo_label_ce_uses_confident_masked_rows_only():
    rows = [[0.0, 1.0], [2.0, 0.5], [1.0, 1.0], [0.3, 0.0], [4.0, 0.0]]
    logits = torch.tensor(rows)
    teacher = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.25, 0.75], [0.1, 0.9], [0.0, 1.0]])
    mask = torch.tensor([True, True, True, True, False])
    # row 1: 0.6 < 0.75 dropped; row 2: exactly 0.75 kept; row 4: confident but masked off
    loss, n_used = pseudo_label_ce(logits, teacher, 0.75, mask)
    assert n_used == 3
    _close(loss, (_ce(rows[0], 0) + _ce(rows[2], 1) + _ce(rows[3], 1)) / 3)


# -- info_nce --------------------------------------------------------------------------------------

R = 1 / math.sqrt(2)
Z3 = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]  # cosines: c01 = 0, c02 = c12 = 1/sqrt(2)


def _nce_all_different(tau):
    a, c = 1 / tau, R / tau
    row0 = -math.log(math.exp(a) / (math.exp(a) + math.exp(0) + math.exp(c)))
    row2 = -math.log(math.exp(a) / (math.exp(a) + 2 * math.exp(c)))
    return (2 * row0 + row2) / 3


def test_info_nce_identical_views_all_classes_different():
    z = torch.tensor(Z3)
    for tau in (1.0, 0.5):
        _close(info_nce(z, z.clone(), torch.tensor([0, 1, 2]), tau), _nce_all_different(tau))
    # two nodes on orthogonal axes: log(1 + e^{-1/tau})
    e2 = torch.eye(2)
    _close(info_nce(e2, e2, torch.tensor([0, 1]), 0.5), math.log(1 + math.exp(-2)))


def test_info_nce_normalises_inputs():
    z = torch.tensor(Z3)
    _close(info_nce(3 * z, 0.2 * z, torch.tensor([0, 1, 2]), 1.0), _nce_all_different(1.0))


def test_info_nce_excludes_other_same_class_nodes():
    z = torch.tensor(Z3)
    # nodes 0 and 1 share a class: each loses the other as a negative; node 2 keeps both
    row01 = -math.log(math.e / (math.e + math.exp(R)))
    row2 = -math.log(math.e / (math.e + 2 * math.exp(R)))
    expected = (2 * row01 + row2) / 3
    got = info_nce(z, z, torch.tensor([4, 4, 7]), 1.0)
    _close(got, expected)
    assert abs(got.item() - _nce_all_different(1.0)) > 1e-3


def test_info_nce_unknown_class_is_a_negative_for_everyone_else():
    z = torch.tensor(Z3)
    all_diff = _nce_all_different(1.0)
    _close(info_nce(z, z, torch.tensor([-1, -1, -1]), 1.0), all_diff)  # unknowns never share a class
    _close(info_nce(z, z, torch.tensor([-1, -1, 0]), 1.0), all_diff)
    same01 = info_nce(z, z, torch.tensor([0, 0, 1]), 1.0).item()
    _close(info_nce(z, z, torch.tensor([0, 0, -1]), 1.0), same01)


def test_info_nce_rows_are_student_columns_teacher():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    f = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # sim = [[1, r], [0, r]]
    row0 = -math.log(math.e / (math.e + math.exp(R)))
    row1 = -math.log(math.exp(R) / (1 + math.exp(R)))
    _close(info_nce(z, f, torch.tensor([0, 1]), 1.0), (row0 + row1) / 2)


def test_info_nce_gradient_reaches_student_only_rows():
    z = torch.tensor(Z3, requires_grad=True)
    info_nce(z, torch.tensor(Z3), torch.tensor([0, 1, 2]), 0.5).backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


# -- empty selections ------------------------------------------------------------------------------


def test_every_loss_returns_connected_zero_on_empty_selection():
    none = torch.zeros(3, dtype=torch.bool)

    x = torch.randn(3, 4, requires_grad=True)
    _assert_connected_zero(cross_entropy(x, torch.tensor([0, 1, 2]), none), x)

    x = torch.randn(3, 4, requires_grad=True)
    _assert_connected_zero(kd_kl(x, torch.zeros(3, 4), 2.0, none), x)

    x = torch.randn(3, 4, requires_grad=True)
    loss, n_used = pseudo_label_ce(x, torch.full((3, 4), 0.25), 0.9, torch.ones(3, dtype=torch.bool))
    assert n_used == 0
    _assert_connected_zero(loss, x)

    z = torch.randn(0, 4, requires_grad=True)
    _assert_connected_zero(info_nce(z, torch.randn(0, 4), torch.zeros(0, dtype=torch.long)), z)

    x = torch.randn(3, 4, requires_grad=True)
    _assert_connected_zero(output_mse(x, torch.randn(3, 4), none), x)

    a = torch.randn(3, 4, requires_grad=True)
    _assert_connected_zero(feature_alignment(a, torch.randn(3, 4), torch.zeros(3)), a)


def test_empty_selection_zero_does_not_leak_nan_from_unused_rows():
    x = torch.tensor([[float("inf"), 0.0], [float("nan"), 1.0]], requires_grad=True)
    none = torch.zeros(2, dtype=torch.bool)
    _assert_connected_zero(cross_entropy(x, torch.tensor([0, 1]), none), x)


# -- LayerAdaptiveAlignment ------------------------------------------------------------------------


def _alignment_inputs():
    torch.manual_seed(0)
    n = 6
    reps = [torch.randn(n, 5, requires_grad=True), torch.randn(n, 3, requires_grad=True)]
    feats = [torch.randn(n, 4), torch.randn(n, 4)]
    classes = torch.tensor([0, 1, 1, 2, -1, 0])
    mask = torch.tensor([True, True, False, True, True, True])
    return reps, feats, classes, mask


def test_layer_alignment_init_uniform_and_equals_mean_of_projected_info_nce():
    torch.manual_seed(1)
    mod = LayerAdaptiveAlignment([5, 3], teacher_dim=4, temperature=0.1)
    assert torch.allclose(mod.layer_weights(), torch.tensor([0.5, 0.5]))
    assert torch.allclose(mod.mix_weights(), torch.tensor([0.5, 0.5]))
    reps, feats, classes, mask = _alignment_inputs()
    per_layer = []
    for proj, z, f in zip(mod.projectors, reps, feats):
        projected = z[mask] @ proj.weight.T + proj.bias  # student -> teacher space
        per_layer.append(info_nce(projected, f[mask], classes[mask], 0.1).item())
    _close(mod(reps, feats, classes, mask), sum(per_layer) / 2, tol=1e-5)
    _close(mod.mix(torch.tensor(2.0), torch.tensor(4.0)), 3.0)


def test_layer_alignment_gradients_reach_projectors_and_both_weight_vectors():
    torch.manual_seed(2)
    mod = LayerAdaptiveAlignment([5, 3], teacher_dim=4)
    reps, feats, classes, mask = _alignment_inputs()
    distill = mod(reps, feats, classes, mask)
    ce = torch.tensor(0.1) + reps[0].sum() * 0.0
    mod.mix(ce, distill).backward()
    for proj in mod.projectors:
        assert proj.weight.grad.abs().sum() > 0
    assert mod.layer_logits.grad.abs().sum() > 0  # per-layer losses differ
    assert mod.mix_logits.grad.abs().sum() > 0  # ce != distill
    # a step moves the layer weights off uniform
    with torch.no_grad():
        mod.layer_logits -= mod.layer_logits.grad
    assert not torch.allclose(mod.layer_weights(), torch.tensor([0.5, 0.5]))


def test_layer_alignment_fixed_mix_and_empty_mask():
    mod = LayerAdaptiveAlignment([5, 3], teacher_dim=4, mix="fixed")
    assert "mix_logits" not in dict(mod.named_parameters())
    assert torch.allclose(mod.mix_weights(), torch.tensor([0.5, 0.5]))
    reps, feats, classes, _ = _alignment_inputs()
    loss = mod(reps, feats, classes, torch.zeros(6, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    for p in mod.parameters():  # every parameter still gets a (zero) gradient: DDP-safe
        assert p.grad is not None and torch.all(p.grad == 0)


def test_layer_alignment_rejects_mismatched_layer_counts():
    mod = LayerAdaptiveAlignment([5, 3], teacher_dim=4)
    reps, feats, classes, mask = _alignment_inputs()
    with pytest.raises(ValueError, match="2 projectors"):
        mod(reps[:1], feats, classes, mask)


# -- Pan et al. ------------------------------------------------------------------------------------


def test_output_mse_hand_computed():
    student = torch.tensor([[0.0, 0.0], [math.log(4.0), 0.0], [9.0, 0.0]])  # p = [.5,.5], [.8,.2]
    interp = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0], [0.0, 9.0]])  # p = [.75,.25], [.5,.5]
    mask = torch.tensor([True, True, False])
    expected = ((0.25**2 + 0.25**2) + (0.3**2 + 0.3**2)) / 2
    _close(output_mse(student, interp, mask), expected)


def test_feature_alignment_weighted_mean_and_zero_weight_rows_ignored():
    a = torch.tensor([[1.0, 0.0], [float("inf"), 0.0], [2.0, 2.0]], requires_grad=True)
    b = torch.tensor([[0.0, 0.0], [0.0, 3.0], [0.0, 0.0]])
    w = torch.tensor([1.0, 0.0, 3.0])
    loss = feature_alignment(a, b, w)
    _close(loss, (1 * 1.0 + 3 * 8.0) / 4)
    loss.backward()
    assert torch.all(torch.isfinite(a.grad))


# -- top_fraction_mask -----------------------------------------------------------------------------


def _picked(mask):
    return mask.nonzero().squeeze(1).tolist()


def test_top_fraction_mask_ties_invalid_and_rounding():
    scores = torch.tensor([0.5, 0.9, 0.95, 0.1, 0.7, 0.9])
    valid = torch.tensor([True, True, False, True, True, True])  # 5 valid; index 2 is the top but invalid
    assert _picked(top_fraction_mask(scores, valid, 0.2)) == [1]  # tie 1 vs 5: lower index
    assert _picked(top_fraction_mask(scores, valid, 0.3)) == [1, 5]  # ceil(1.5) = 2
    assert _picked(top_fraction_mask(scores, valid, 0.5)) == [1, 4, 5]  # ceil(2.5) = 3
    assert _picked(top_fraction_mask(scores, valid, 1.0)) == [0, 1, 3, 4, 5]
    assert _picked(top_fraction_mask(scores, valid, 0.0)) == []
    assert top_fraction_mask(scores, valid, 0.01).sum() == 1  # any positive fraction picks at least one
    assert top_fraction_mask(scores, valid, 0.5).dtype == torch.bool


def test_top_fraction_mask_float_noise_does_not_round_up():
    scores = torch.arange(100, dtype=torch.float32)
    valid = torch.ones(100, dtype=torch.bool)
    assert 0.07 * 100 > 7  # the float trap: a bare ceil would pick 8
    assert _picked(top_fraction_mask(scores, valid, 0.07)) == list(range(93, 100))
    assert top_fraction_mask(scores[:10], valid[:10], 0.3).sum() == 3


def test_top_fraction_mask_all_ties_pick_lowest_valid_indices():
    scores = torch.ones(6)
    valid = torch.tensor([False, True, True, False, True, True])
    assert _picked(top_fraction_mask(scores, valid, 0.5)) == [1, 2]
    assert not top_fraction_mask(scores, torch.zeros(6, dtype=torch.bool), 0.5).any()
    with pytest.raises(ValueError, match="fraction"):
        top_fraction_mask(scores, valid, 1.5)


def test_uncertainty_mix_is_weighted_plus_log_variances_and_keeps_ce_alive():
    mod = LayerAdaptiveAlignment([3], teacher_dim=2, mix="uncertainty")
    with torch.no_grad():
        mod.mix_logits.copy_(torch.tensor([math.log(2.0), 0.0]))
    # exp(-ln 2) * 4 + exp(0) * 1 + ln 2 + 0
    _close(mod.mix(torch.tensor(4.0), torch.tensor(1.0)), 0.5 * 4 + 1 + math.log(2.0))
    assert torch.allclose(mod.mix_weights(), torch.tensor([0.5, 1.0]))
    # the optimum of exp(-s) * L + s is s = ln L: the weight of a loss never goes to zero while it is finite
    mod = LayerAdaptiveAlignment([3], teacher_dim=2, mix="uncertainty")
    opt = torch.optim.SGD(mod.parameters(), lr=0.1)
    for _ in range(500):
        opt.zero_grad()
        mod.mix(torch.tensor(4.0), torch.tensor(0.5)).backward()
        opt.step()
    np.testing.assert_allclose(mod.mix_weights().numpy(), [0.25, 2.0], rtol=1e-3)
    with pytest.raises(ValueError, match="mix must be one of"):
        LayerAdaptiveAlignment([3], teacher_dim=2, mix="learned")


def test_weighted_kd_and_pseudo_scale_each_row_and_keep_the_mean_over_rows():
    torch.manual_seed(0)
    logits = torch.randn(4, 3)
    probs = torch.softmax(torch.randn(4, 3), -1)
    mask = torch.tensor([True, True, False, True])
    w = torch.tensor([1.0, 0.5, 9.0, 0.0])
    per_row = [L.kd_kl(logits[i : i + 1], probs[i : i + 1], 2.0, torch.tensor([True])) for i in range(4)]
    want = (per_row[0] * 1.0 + per_row[1] * 0.5 + per_row[3] * 0.0) / 3  # row 2 is masked: its weight is unused
    assert torch.allclose(L.kd_kl(logits, probs, 2.0, mask, w), want, atol=1e-6)
    assert torch.allclose(L.kd_kl(logits, probs, 2.0, mask, torch.ones(4)), L.kd_kl(logits, probs, 2.0, mask))
    conf = torch.tensor([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.05, 0.05, 0.9]])
    loss, used = L.pseudo_label_ce(logits, conf, 0.7, mask, w)
    ce = torch.nn.functional.cross_entropy(logits, conf.argmax(1), reduction="none")
    assert used == 3 and torch.allclose(loss, (ce[0] + 0.5 * ce[1] + 0.0 * ce[3]) / 3, atol=1e-6)


def test_info_nce_strict_negatives_only_between_known_different_classes():
    torch.manual_seed(0)
    z, f = torch.randn(4, 8), torch.randn(4, 8)
    classes = torch.tensor([0, 1, -1, 0])
    zn, fn = torch.nn.functional.normalize(z, dim=-1), torch.nn.functional.normalize(f, dim=-1)
    sim = zn @ fn.T / 0.5
    # strict: row 0's negatives are node 1 only (2 unknown, 3 same class); row 1's are 0 and 3; row 2 has none;
    # row 3's is node 1
    negs = {0: [1], 1: [0, 3], 2: [], 3: [1]}
    rows = [torch.logsumexp(sim[i, [i, *negs[i]]], 0) - sim[i, i] for i in range(4)]
    want = torch.stack(rows).mean()
    assert torch.allclose(L.info_nce(z, f, classes, 0.5, strict=True), want, atol=1e-5)
    assert not torch.allclose(L.info_nce(z, f, classes, 0.5), want, atol=1e-5)  # loose: node 2 is a negative
