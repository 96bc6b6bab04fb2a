import numpy as np

from gkd.config import SplitConfig
from gkd.data.raw import draw_split


def test_per_class_split_counts_and_unlabeled():
    labels = np.array([0] * 50 + [1] * 50 + [-1] * 10)
    split = draw_split(labels, None, SplitConfig(train_per_class=20, val_per_class=10, seed=1))
    for c in (0, 1):
        s = split[labels == c]
        assert (s == "train").sum() == 20 and (s == "val").sum() == 10 and (s == "test").sum() == 20
    assert (split[labels == -1] == "unlabeled").all()


def test_given_splits_are_kept_and_seed_is_deterministic():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    given = np.array(["test", None, None, None, None, "", None, "train"], dtype=object)
    cfg = SplitConfig(train_per_class=1, val_per_class=1, seed=3)
    a = draw_split(labels, given, cfg)
    assert a[0] == "test" and a[7] == "train"
    assert list(a) == list(draw_split(labels, given, cfg))
    # class 0 had 3 nodes to draw: 1 train, 1 val, 1 test
    assert sorted(a[1:4]) == ["test", "train", "val"]


def test_tiny_class_keeps_a_test_node():
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    split = draw_split(labels, None, SplitConfig(train_per_class=20, val_per_class=30))
    assert list(split[:2]).count("test") == 1 and list(split[:2]).count("train") == 1


def test_fraction_split():
    labels = np.zeros(1000, dtype=int)
    split = draw_split(labels, None, SplitConfig(train_fraction=0.6, val_fraction=0.2, train_per_class=None))
    assert (split == "train").sum() == 600 and (split == "val").sum() == 200 and (split == "test").sum() == 200
