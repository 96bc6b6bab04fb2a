import numpy as np

from gkd.config import SplitConfig, SyntheticSource
from gkd.data.sources import synthetic


def cfg(**kw):
    base = dict(num_nodes=4000, num_edges=40000, num_classes=8, homophily=0.9, num_shards=3, seed=5)
    return SyntheticSource(**{**base, **kw})


def test_same_seed_same_graph_other_seed_other_graph():
    a, b, c = synthetic.load_synthetic(cfg()), synthetic.load_synthetic(cfg()), synthetic.load_synthetic(cfg(seed=6))
    assert a.nodes.equals(b.nodes) and a.edges.equals(b.edges)
    assert not a.edges.equals(c.edges)


def test_sizes_labels_and_ranges():
    g = synthetic.load_synthetic(cfg())
    assert g.num_nodes == 4000 and g.edges.num_rows == 40000
    labels = g.nodes["label"].to_numpy()
    assert np.bincount(labels).tolist() == [500] * 8  # classes are balanced
    src, dst = g.edges["src"].to_numpy(), g.edges["dst"].to_numpy()
    assert src.min() >= 0 and max(src.max(), dst.max()) < 4000
    assert g.class_names[0] == "class_00"


def test_homophily_is_tunable():
    for h in (0.9, 0.2):
        g = synthetic.load_synthetic(cfg(homophily=h))
        labels = g.nodes["label"].to_numpy()
        same = (labels[g.edges["src"].to_numpy()] == labels[g.edges["dst"].to_numpy()]).mean()
        expected = h + (1 - h) / 8  # the random far end hits the own class 1/C of the time
        assert abs(same - expected) < 0.02, (h, same)


def test_degree_skew_concentrates_in_degree():
    flat = synthetic.load_synthetic(cfg(degree_skew=0.0))
    skewed = synthetic.load_synthetic(cfg(degree_skew=1.2))
    top = lambda g: np.sort(np.bincount(g.edges["dst"].to_numpy(), minlength=4000))[-40:].sum() / 40000
    assert top(skewed) > 3 * top(flat)


def test_text_uses_class_vocabulary():
    c = cfg(class_word_fraction=0.5)
    g = synthetic.load_synthetic(c)
    _, class_words = synthetic.vocabulary(c)
    labels = g.nodes["label"].to_numpy()
    texts = g.nodes["text"].to_pylist()
    own = [sum(w in set(class_words[labels[i]]) for w in texts[i].split()) for i in range(200)]
    other = [sum(w in set(class_words[(labels[i] + 1) % 8]) for w in texts[i].split()) for i in range(200)]
    assert np.mean(own) > 8 and np.mean(other) == 0
    assert all(len(t.split()) == c.words_per_node for t in texts[:50])


def test_shards_partition_nodes_and_edges_exactly():
    c = cfg(num_nodes=1001, num_edges=999, num_shards=7)
    bounds = [synthetic.shard_bounds(1001, 7, s) for s in range(7)]
    assert bounds[0][0] == 0 and bounds[-1][1] == 1001
    assert all(bounds[i][1] == bounds[i + 1][0] for i in range(6))
    assert sum(synthetic.generate_edges(c, s).num_rows for s in range(7)) == 999


def test_split_codes_follow_split_config():
    c = cfg()
    codes = synthetic.split_codes(c, SplitConfig(train_per_class=10, val_per_class=5))
    # the default holdout_fraction 0.1 takes round(0.1 * 3880) = 388 test nodes out of the graph
    assert np.bincount(codes, minlength=5).tolist() == [80, 40, 4000 - 120 - 388, 0, 388]
    nodes = synthetic.generate_nodes(c, 0, codes)
    assert set(nodes["split"].to_pylist()) <= {"train", "val", "test", "holdout"}
    none = synthetic.split_codes(c, SplitConfig(train_per_class=10, val_per_class=5, holdout_fraction=0))
    assert np.bincount(none, minlength=5).tolist() == [80, 40, 4000 - 120, 0, 0]
    # holding out only renames test nodes of the same draw
    assert (none[codes == 4] == 2).all() and np.array_equal(codes[codes != 4], none[codes != 4])
