"""Held-out test nodes (ingest.split.holdout_fraction): the draw, the CSR cut, holdout_edges.npz, read_holdout."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gkd.config import ByoSource, SplitConfig, build_config
from gkd.data import store
from gkd.data.encode import make_encoder
from gkd.data.raw import draw_holdout, draw_split
from gkd.data.sources import synthetic
from gkd.data.sources.byo import load_byo
from gkd.errors import GraphStoreError

# ----------------------------------------------------------------------------- the draw (Ray-free)


def test_draw_holdout_takes_round_fraction_of_labelled_test_nodes():
    labels = np.array([0, 1] * 20 + [-1, -1])
    split = np.array(["train"] * 6 + ["val"] * 6 + ["test"] * 28 + ["test", "unlabeled"], dtype=object)
    cfg = SplitConfig(holdout_fraction=0.25, seed=4)
    out = draw_holdout(labels, split, cfg)
    held = np.flatnonzero(out == "holdout")
    assert len(held) == round(0.25 * 28) == 7  # node 40 is 'test' but unlabelled: never held out
    assert (split[held] == "test").all() and (labels[held] >= 0).all()
    assert (out[out != "holdout"] == split[out != "holdout"]).all() and (split == "test").sum() == 29
    assert np.array_equal(draw_holdout(labels, split, cfg), out)  # same seed, same draw
    assert not np.array_equal(draw_holdout(labels, split, cfg.model_copy(update={"seed": 5})), out)
    assert np.array_equal(draw_holdout(labels, split, SplitConfig(holdout_fraction=0)), split)


def test_holdout_fraction_bounds():
    with pytest.raises(ValueError):
        SplitConfig(holdout_fraction=1.0)
    with pytest.raises(ValueError):
        SplitConfig(holdout_fraction=-0.1)
    assert SplitConfig().holdout_fraction == 0.1


# ----------------------------------------------------------------------------- the CSR cut (Ray-free)


def test_cut_holdout_by_hand():
    # 0-1, 1-2, 2-3, 3-4, 1-3, 2-4 undirected; hold out 2 and 4 (2-4 links two held-out nodes)
    indptr, indices = store.build_csr(np.array([0, 1, 2, 3, 1, 2]), np.array([1, 2, 3, 4, 3, 4]), 6)
    ip, ix, node, nbr, between = store.cut_holdout(indptr, indices, np.array([4, 2]))
    assert ip.tolist() == [0, 1, 3, 3, 4, 4, 4] and ix.tolist() == [1, 0, 3, 1]
    assert node.tolist() == [2, 2, 4] and nbr.tolist() == [1, 3, 3]
    assert between == 2  # 2->4 and 4->2
    # directed: a held-out node keeps its own row's entries; entries pointing at it are only dropped
    indptr, indices = store.build_csr(np.array([0, 1, 2, 2]), np.array([1, 2, 0, 3]), 4, directed=True)
    ip, ix, node, nbr, between = store.cut_holdout(indptr, indices, np.array([2]))
    assert ip.tolist() == [0, 1, 1, 1, 1] and ix.tolist() == [1]
    assert node.tolist() == [2, 2] and nbr.tolist() == [0, 3] and between == 0


def test_cut_holdout_nothing_held_is_identity():
    indptr, indices = store.build_csr(np.array([0, 1, 2]), np.array([1, 2, 0]), 4)
    ip, ix, node, nbr, between = store.cut_holdout(indptr, indices, np.array([], dtype=np.int64))
    assert np.array_equal(ip, indptr) and np.array_equal(ix, indices)
    assert len(node) == len(nbr) == between == 0 and node.dtype == nbr.dtype == np.int64


# ----------------------------------------------------------------------------- read_holdout (Ray-free)


def write_nodes(d, split, labels):
    (d / "nodes").mkdir(parents=True)
    n = len(split)
    pq.write_table(pa.table({"node_id": pa.array(range(n), pa.int64()), "key": [f"k{i}" for i in range(n)],
                             "text": [f"t{i}" for i in range(n)], "label": pa.array(labels, pa.int32()),
                             "split": split}), d / "nodes" / "part-00000.parquet")
    return d


SPLIT6 = ["train", "holdout", "test", "holdout", "val", "holdout"]


def test_read_holdout(tmp_path):
    d = write_nodes(tmp_path / "g", SPLIT6, [0, 1, 0, 2, 1, 0])
    store.save_holdout(d / "holdout_edges.npz", np.array([1, 1, 3]), np.array([0, 2, 4]))
    h = store.read_holdout(d)
    assert h.nodes.tolist() == [1, 3, 5] and h.nodes.dtype == np.int64
    assert h.labels.tolist() == [1, 2, 0] and h.labels.dtype == np.int32
    assert [v.tolist() for v in h.neighbors] == [[0, 2], [4], []] and len(h) == 3


def test_read_holdout_empty_for_stores_without_any(tmp_path):
    d = write_nodes(tmp_path / "g", ["train", "test"], [0, 1])
    h = store.read_holdout(d)  # an older store: no file, no held-out node
    assert len(h) == 0 and h.neighbors == [] and h.nodes.dtype == np.int64
    store.save_holdout(d / "holdout_edges.npz", np.array([], np.int64), np.array([], np.int64))
    assert len(store.read_holdout(d)) == 0


@pytest.mark.parametrize(
    "node, neighbor, match",
    [
        ([1, 7], [0, 2], "node id 7 outside 0..5"),
        ([1, 3], [0, -1], "neighbor id -1 outside 0..5"),
        ([1, 2], [0, 4], "node 2 is not a held-out node"),
        ([1, 3], [0, 5], "neighbor 5 is itself a held-out node"),
        ([3, 1], [0, 2], "not sorted"),
        ([1, 1], [0, 0], "not sorted"),
        ([1, 3], [0], "equal-length"),
        ([1.0], [0.0], "integer"),
    ],
)
def test_read_holdout_rejects_a_malformed_file(tmp_path, node, neighbor, match):
    d = write_nodes(tmp_path / "g", SPLIT6, [0, 1, 0, 2, 1, 0])
    np.savez(d / "holdout_edges.npz", node=np.array(node), neighbor=np.array(neighbor))
    with pytest.raises(GraphStoreError, match=match) as err:
        store.read_holdout(d)
    assert "holdout_edges.npz" in str(err.value)


def test_read_holdout_missing_or_unreadable_file(tmp_path):
    d = write_nodes(tmp_path / "g", SPLIT6, [0, 1, 0, 2, 1, 0])
    with pytest.raises(GraphStoreError, match="holdout_edges.npz is missing but 3 nodes"):
        store.read_holdout(d)
    np.savez(d / "holdout_edges.npz", nodes=np.array([1]))
    with pytest.raises(GraphStoreError, match="arrays node and neighbor"):
        store.read_holdout(d)
    (d / "holdout_edges.npz").write_bytes(b"not an npz")
    with pytest.raises(GraphStoreError, match="arrays node and neighbor"):
        store.read_holdout(d)


# ----------------------------------------------------------------------------- later stages never pick them


def test_later_stages_never_select_held_out_nodes():
    from gkd.config import RationaleConfig
    from gkd.gnn.inputs import HOLDOUT, TEST, TRAIN, UNLABELED, label_rate_split, split_codes
    from gkd.llm.rationale import select_budget
    from gkd.llm.teacher import eval_nodes, train_nodes

    split = np.array(["train", "val", "test", "unlabeled", "holdout"] * 20, dtype=object)
    labels = np.array([0, 1, 0, -1, 1] * 20)
    held = np.flatnonzero(split == "holdout")
    budget = select_budget(labels, split, RationaleConfig(splits=["train", "val"], unlabeled_budget=1000))
    assert len(budget) == 80 and not np.isin(held, budget).any()  # every other node, no held-out one
    assert not np.isin(held, eval_nodes(labels, split, 1000, 0)).any()
    assert not np.isin(held, train_nodes(labels, split, None, 0)).any()
    codes = split_codes(split)
    assert (codes[held] == HOLDOUT).all() and codes.tolist()[:5] == [TRAIN, 1, TEST, UNLABELED, HOLDOUT]
    out, _ = label_rate_split(codes, labels, 2, 4, 0)
    assert (out[held] == HOLDOUT).all() and not (out[split != "holdout"] == HOLDOUT).any()


# ----------------------------------------------------------------------------- through ingest (Ray Data)


def expected_cut(src, dst, held_ids, n, directed):
    """(CSR without held-out nodes, sorted unique (node, neighbor) rows, held-held entries), from the raw edges."""
    held = np.zeros(n, bool)
    held[held_ids] = True
    pairs = set(zip(src.tolist(), dst.tolist()))
    if not directed:
        pairs |= {(b, a) for a, b in pairs}
    pairs = {(a, b) for a, b in pairs if a != b}
    out = sorted((a, b) for a, b in pairs if held[a] and not held[b])
    between = sum(1 for a, b in pairs if held[a] and held[b])
    keep = [(a, b) for a, b in pairs if not held[a] and not held[b]]
    csr = store.build_csr(np.array([a for a, _ in keep], np.int64), np.array([b for _, b in keep], np.int64), n,
                          directed=True)
    return csr, out, between


def holdout_rows(graph_dir) -> list[tuple[int, int]]:
    with np.load(graph_dir / "holdout_edges.npz") as z:
        assert z["node"].dtype == z["neighbor"].dtype == np.int64
        return list(zip(z["node"].tolist(), z["neighbor"].tolist()))


def synthetic_cfg(workdir, **split):
    return build_config({
        "name": "syn", "workdir": str(workdir),
        "ingest": {
            "source": {"kind": "synthetic", "num_nodes": 600, "num_edges": 3000, "num_classes": 3, "num_shards": 2},
            "encoder": {"name": "hashing", "dim": 16, "num_actors": 1, "batch_size": 256},
            "split": {"train_per_class": 10, "val_per_class": 10, **split},
            "num_shards": 2,
        },
    })


@pytest.mark.ray
@pytest.mark.slow
def test_synthetic_ingest_holds_out_test_nodes(ray_local, tmp_path):
    from gkd.data import ingest

    cfg = synthetic_cfg(tmp_path / "w", holdout_fraction=0.2, seed=3)
    meta = ingest.run(cfg)
    store.validate_store(cfg.graph_dir)
    src_cfg, n = cfg.ingest.source, 600
    labels = synthetic.labels_of(src_cfg)
    n_test = int((draw_split(labels, None, cfg.ingest.split) == "test").sum())  # before the holdout
    tag = store.TAG.load(cfg.graph_dir)
    held = tag.index("holdout")
    assert n_test == 600 - 60 and len(held) == round(0.2 * n_test) == 108
    assert meta["split_sizes"] == {"train": 30, "val": 30, "test": n_test - 108, "unlabeled": 0, "holdout": 108}
    # the same seeded draw as the Ray-free core, on the nodes the ingest wrote
    codes = synthetic.split_codes(src_cfg, cfg.ingest.split)
    assert np.array_equal(held, np.flatnonzero(codes == synthetic.SPLIT_CODES.index("holdout")))
    # no CSR entry touches a held-out node; the rest of the graph is intact
    assert (tag.degree()[held] == 0).all() and not np.isin(tag.indices, held).any()
    ref = synthetic.load_synthetic(src_cfg).edges
    (ip, ix), out, between = expected_cut(ref["src"].to_numpy(), ref["dst"].to_numpy(), held, n, directed=False)
    assert np.array_equal(tag.indptr, ip) and np.array_equal(tag.indices, ix)
    assert holdout_rows(cfg.graph_dir) == out and len(out) > 100
    assert meta["holdout"] == {"fraction": 0.2, "nodes": 108, "edges": len(out),
                               "edges_between_holdout_nodes_dropped": between}
    assert json.loads((cfg.graph_dir / "meta.json").read_text())["holdout"] == meta["holdout"]
    # held-out nodes keep their label, text and feature row
    h = store.read_holdout(cfg.graph_dir)
    assert np.array_equal(h.nodes, held) and np.array_equal(h.labels, labels[held])
    assert [(int(v), int(w)) for v, nb in zip(h.nodes, h.neighbors) for w in nb] == out
    texts = tag.texts()
    assert np.allclose(tag.x[held[:3]], make_encoder(cfg.ingest.encoder).encode([texts[i] for i in held[:3]]))
    # a second run with the same seed draws the same nodes
    again = ingest.run(synthetic_cfg(tmp_path / "w2", holdout_fraction=0.2, seed=3))
    assert again["holdout"] == meta["holdout"]
    assert np.array_equal(store.read_holdout(tmp_path / "w2" / "graph").nodes, held)


@pytest.mark.ray
@pytest.mark.slow
def test_holdout_fraction_zero_keeps_the_graph(ray_local, tmp_path):
    from gkd.data import ingest

    cfg = synthetic_cfg(tmp_path / "w", holdout_fraction=0)
    meta = ingest.run(cfg)
    store.validate_store(cfg.graph_dir)
    assert meta["holdout"] == {"fraction": 0.0, "nodes": 0, "edges": 0, "edges_between_holdout_nodes_dropped": 0}
    assert meta["split_sizes"]["holdout"] == 0 and meta["split_sizes"]["test"] == 540
    ref = synthetic.load_synthetic(cfg.ingest.source).edges
    ip, ix = store.build_csr(ref["src"].to_numpy(), ref["dst"].to_numpy(), 600)
    tag = store.TAG.load(cfg.graph_dir, features=False)
    assert np.array_equal(tag.indptr, ip) and np.array_equal(tag.indices, ix)
    assert holdout_rows(cfg.graph_dir) == [] and len(store.read_holdout(cfg.graph_dir)) == 0


@pytest.mark.ray
@pytest.mark.slow
def test_byo_directed_ingest_holds_out_given_test_nodes(ray_local, tmp_path):
    """A source with given splits: the same draw (draw_split, then draw_holdout) and a directed CSR cut."""
    from gkd.data import ingest

    n, rng = 60, np.random.default_rng(0)
    folder = tmp_path / "byo"
    folder.mkdir()
    words = ["editor", "kernel", "python"]
    pq.write_table(pa.table({
        "node_id": [f"p{i}" for i in range(n)],
        "text": [f"a {words[i % 3]} package {i}" for i in range(n)],
        "label": [None if i % 10 == 9 else words[i % 3] for i in range(n)],
        "split": [None if i % 10 == 9 else ("test" if i < 30 else None) for i in range(n)],
    }), folder / "nodes.parquet")
    src, dst = rng.integers(0, n, 300), rng.integers(0, n, 300)
    pq.write_table(pa.table({"src": [f"p{i}" for i in src], "dst": [f"p{i}" for i in dst]}), folder / "edges.parquet")
    cfg = build_config({
        "name": "byo", "workdir": str(tmp_path / "w"),
        "ingest": {"source": {"kind": "byo", "path": str(folder), "directed": True},
                   "encoder": {"name": "hashing", "dim": 16, "num_actors": 1},
                   "split": {"train_per_class": 2, "val_per_class": 2, "holdout_fraction": 0.3}, "num_shards": 2},
    })
    meta = ingest.run(cfg)
    store.validate_store(cfg.graph_dir)
    raw = load_byo(ByoSource(path=folder, directed=True))
    labels = raw.nodes["label"].to_numpy(zero_copy_only=False)
    drawn = draw_split(labels, np.asarray(raw.nodes["split"].to_pylist(), dtype=object), cfg.ingest.split)
    n_test = int((drawn == "test").sum())
    held = np.flatnonzero(draw_holdout(labels, drawn, cfg.ingest.split) == "holdout")
    tag = store.TAG.load(cfg.graph_dir, features=False)
    assert np.array_equal(tag.index("holdout"), held) and len(held) == round(0.3 * n_test)
    assert meta["split_sizes"]["test"] == n_test - len(held) and meta["split_sizes"]["holdout"] == len(held)
    (ip, ix), out, between = expected_cut(src, dst, held, n, directed=True)
    assert np.array_equal(tag.indptr, ip) and np.array_equal(tag.indices, ix)
    assert holdout_rows(cfg.graph_dir) == out and len(out) > 0
    assert meta["holdout"]["edges"] == len(out) and meta["holdout"]["edges_between_holdout_nodes_dropped"] == between
