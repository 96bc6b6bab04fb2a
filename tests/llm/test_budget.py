"""The teaching budget: chosen where a first student is unsure, class-balanced, spread over hub regions."""

import numpy as np

from gkd.config import build_config
from gkd.data.store import build_csr
from gkd.llm.budget import choose_uncertain, hub_regions, teaching_budget


def _two_stars():
    """Hubs 0 and 5, each with 4 leaves; one edge 4 -> 6 between the stars; node 10 isolated."""
    src = np.array([1, 2, 3, 4, 6, 7, 8, 9, 4])
    dst = np.array([0, 0, 0, 0, 5, 5, 5, 5, 6])
    return build_csr(src, dst, 11)


def test_hub_regions_assign_each_node_to_its_nearest_hub():
    indptr, indices = _two_stars()
    reg = hub_regions(indptr, indices, regions=2)
    assert reg.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, -1]
    assert (hub_regions(indptr, indices, regions=1)[:10] == 0).all()


def test_choose_uncertain_balances_classes_prefers_low_margin_and_spreads_regions():
    # 12 candidates: predicted class 0 for rows 0-7, class 1 for rows 8-11; margins rise with the row index
    margin = np.linspace(0.0, 0.9, 12)
    probs = np.zeros((12, 2))
    cls = np.array([0] * 8 + [1] * 4)
    probs[np.arange(12), cls] = 0.5 + margin / 2
    probs[np.arange(12), 1 - cls] = 0.5 - margin / 2
    regions = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1])
    got = choose_uncertain(probs, np.arange(12), budget=4, regions=regions)
    # 2 per class; within class 0 the least certain of region 0 (row 0) and of region 1 (row 4), not rows 0, 1
    assert got.tolist() == [0, 4, 8, 10]
    # a class short of candidates passes its share on: class 1 has 4, budget 10 -> 6 from class 0
    got = choose_uncertain(probs, np.arange(12), budget=10, regions=regions)
    assert (cls[got] == 1).sum() == 4 and len(got) == 10 and len(set(got)) == 10
    assert choose_uncertain(probs, np.arange(12), budget=20, regions=regions).tolist() == list(range(12))
    assert choose_uncertain(probs, np.arange(12), budget=0, regions=regions).tolist() == []


def test_teaching_budget_never_takes_measured_or_held_out_nodes(tmp_path, monkeypatch):
    from gkd.llm import budget as B

    n = 40
    labels = np.arange(n) % 2
    split = np.array(["train"] * 4 + ["val"] * 4 + ["holdout"] * 4 + ["test"] * 28)
    cfg = build_config({"name": "b", "workdir": str(tmp_path), "rationale": {"splits": ["train"],
                                                                              "unlabeled_budget": 10}})
    probs = np.tile([0.6, 0.4], (n, 1))
    calls = []
    monkeypatch.setattr(B, "probe_probs", lambda graph_dir, seed, split: (calls.append(1), (probs, {"acc": 1.0}))[1])
    monkeypatch.setattr(B, "_csr", lambda cfg: build_csr(np.arange(1, n), np.zeros(n - 1, np.int64), n))
    exclude = np.array([4, 12, 13])  # a val node and two eval (test) nodes
    got = teaching_budget(cfg, labels, split, exclude)
    assert set(range(4)) <= set(got) and len(got) == 14
    assert not set(got) & {4, 8, 9, 10, 11, 12, 13}  # never measured or held-out nodes
    again = teaching_budget(cfg, labels, split, exclude)
    assert again.tolist() == got.tolist() and len(calls) == 1  # cached by content: no second probe
    rnd = teaching_budget(cfg.model_copy(update={"rationale": cfg.rationale.model_copy(
        update={"selector": "random"})}), labels, split, exclude)
    assert len(rnd) == 14 and not set(rnd) & {4, 8, 9, 10, 11, 12, 13}
