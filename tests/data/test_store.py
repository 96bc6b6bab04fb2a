import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gkd.data import store
from gkd.errors import GraphStoreError


def test_build_csr_symmetrises_dedupes_and_drops_self_loops():
    # 0-1 twice (once reversed), 1-2, 2-2 self loop, 3 isolated
    indptr, indices = store.build_csr(np.array([0, 1, 1, 2]), np.array([1, 0, 2, 2]), 4)
    assert indptr.tolist() == [0, 1, 3, 4, 4]
    assert indices.tolist() == [1, 0, 2, 1]
    assert indptr.dtype == np.int64 and indices.dtype == np.int64


def test_build_csr_directed_keeps_direction():
    indptr, indices = store.build_csr(np.array([0, 0, 2]), np.array([1, 2, 0]), 3, directed=True)
    assert indptr.tolist() == [0, 2, 2, 3]
    assert indices.tolist() == [1, 2, 0]


def test_homophily_and_stats_by_hand():
    # path 0-1-2-3, labels 0,0,1,-1: CSR entries among labelled pairs: 0-1 (x2 same), 1-2 (x2 differ)
    indptr, indices = store.build_csr(np.array([0, 1, 2]), np.array([1, 2, 3]), 5)
    labels = np.array([0, 0, 1, -1, 1])
    split = np.array(["train", "val", "test", "unlabeled", "test"], dtype=object)
    stats = store.graph_stats(indptr, indices, labels, split)
    assert stats["label_homophily"] == 0.5
    assert stats["isolated_nodes"] == 1
    assert stats["split_sizes"] == {"train": 1, "val": 1, "test": 2, "unlabeled": 1, "holdout": 0}
    assert stats["num_csr_entries"] == 6
    assert store.edge_homophily(indptr, indices, np.full(5, -1)) is None


def write_store(d, n=4, dim=3, **meta_over):
    """A valid 4-node store written by hand."""
    (d / "nodes").mkdir(parents=True)
    (d / "edges").mkdir()
    pq.write_table(
        pa.table(
            {
                "node_id": pa.array(range(n), pa.int64()),
                "key": [f"k{i}" for i in range(n)],
                "text": [f"text {i}" for i in range(n)],
                "label": pa.array([0, 1, 0, -1], pa.int32()),
                "split": ["train", "val", "test", "unlabeled"],
            }
        ),
        d / "nodes" / "part-00000.parquet",
    )
    pq.write_table(pa.table({"src": pa.array([0, 1], pa.int64()), "dst": pa.array([1, 2], pa.int64())}),
                   d / "edges" / "part-00000.parquet")
    store.save_csr(d / "csr.npz", *store.build_csr(np.array([0, 1]), np.array([1, 2]), n))
    np.save(d / "x.npy", np.ones((n, dim), dtype=np.float32))
    meta = {"name": "t", "source": {"kind": "byo"}, "num_nodes": n, "num_edges": 2, "num_classes": 2,
            "class_names": ["a", "b"], "split_sizes": {}, "encoder": {"dim": dim}, "schema_version": 1,
            "directed": False, **meta_over}
    store.write_meta(d, meta)
    return d


def test_valid_store_loads_as_tag(tmp_path):
    d = write_store(tmp_path / "g")
    assert store.validate_store(d)["num_nodes"] == 4
    tag = store.TAG.load(d)
    assert tag.num_nodes == 4 and tag.num_classes == 2
    assert tag.index("train").tolist() == [0] and tag.mask("unlabeled").tolist() == [False, False, False, True]
    assert tag.neighbors(1).tolist() == [0, 2]
    assert tag.degree().tolist() == [1, 2, 1, 0]
    assert tag.texts() == ["text 0", "text 1", "text 2", "text 3"]
    assert tag.x.shape == (4, 3)


def _corrupt_nodes(d, **cols):
    t = pq.read_table(d / "nodes" / "part-00000.parquet")
    for name, values in cols.items():
        t = t.set_column(t.schema.get_field_index(name), name, pa.array(values, t.schema.field(name).type))
    pq.write_table(t, d / "nodes" / "part-00000.parquet")


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda d: (d / "meta.json").unlink(), "meta.json is missing"),
        (lambda d: (d / "meta.json").write_text("{"), "not valid JSON"),
        (lambda d: (d / "meta.json").write_text(json.dumps({**json.loads((d / "meta.json").read_text()),
                                                             "schema_version": 99})), "schema_version 99"),
        (lambda d: _corrupt_nodes(d, node_id=[0, 1, 1, 3]), "node_id is not exactly 0..3"),
        (lambda d: _corrupt_nodes(d, label=[0, 5, 0, -1]), "label outside -1..1"),
        (lambda d: _corrupt_nodes(d, split=["train", "dev", "test", "unlabeled"]), "split 'dev'"),
        (lambda d: _corrupt_nodes(d, label=[0, 1, 0, -1], split=["train", "val", "test", "test"]),
         "node_id 3 has split 'test' and label -1"),
        (lambda d: pq.write_table(pa.table({"src": pa.array([0, 9], pa.int64()), "dst": pa.array([1, 2], pa.int64())}),
                                  d / "edges" / "part-00000.parquet"), "src outside 0..3"),
        (lambda d: store.save_csr(d / "csr.npz", np.array([0, 2, 1, 0, 0]), np.array([1, 0])), "indptr is not a valid"),
        (lambda d: np.save(d / "x.npy", np.ones((3, 3), np.float32)), r"shape \(3, 3\), expected \(4, 3\)"),
        (lambda d: np.save(d / "x.npy", np.full((4, 3), np.nan, np.float32)), "non-finite"),
        (lambda d: [p.unlink() for p in (d / "nodes").glob("*.parquet")], "holds no .parquet shards"),
    ],
)
def test_validate_store_names_the_problem(tmp_path, corrupt, match):
    d = write_store(tmp_path / "g")
    corrupt(d)
    with pytest.raises(GraphStoreError, match=match):
        store.validate_store(d)


def test_write_meta_refuses_incomplete_meta(tmp_path):
    with pytest.raises(GraphStoreError, match="would miss keys"):
        store.write_meta(tmp_path, {"name": "x"})
