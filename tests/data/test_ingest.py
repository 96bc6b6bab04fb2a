"""The Ray Data path end to end on a local cluster: source -> shards -> CSR -> METIS -> encoder pool -> store."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gkd.config import build_config
from gkd.data import ingest, store
from gkd.data.encode import FeatureCache, encoder_id, make_encoder, text_hashes
from gkd.data.sources import synthetic
from gkd.errors import GkdError

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def synthetic_cfg(workdir, **ingest_over):
    return build_config({
        "name": "syn", "workdir": str(workdir),
        "ingest": {
            "source": {"kind": "synthetic", "num_nodes": 1200, "num_edges": 6000, "num_classes": 4, "num_shards": 3},
            "encoder": {"name": "hashing", "dim": 32, "num_actors": 2, "batch_size": 256},
            "split": {"train_per_class": 10, "val_per_class": 10},
            "num_shards": 4,
            **ingest_over,
        },
    })


def test_synthetic_ingest_with_partition(ray_local, tmp_path):
    cfg = synthetic_cfg(tmp_path / "w", partition={"enabled": True, "num_parts": 4})
    meta = ingest.run(cfg)
    assert store.validate_store(cfg.graph_dir)["num_nodes"] == 1200
    assert meta["num_edges"] == 6000 and meta["num_classes"] == 4
    # 1120 test nodes, of which the default holdout_fraction 0.1 takes 112 out of the graph
    assert meta["split_sizes"] == {"train": 40, "val": 40, "test": 1008, "unlabeled": 0, "holdout": 112}
    assert meta["encoder"]["dim"] == 32 and meta["encoder"]["encoded"] == 1200
    assert len(list((cfg.graph_dir / "nodes").glob("*.parquet"))) == 4
    # the store holds exactly the graph the Ray-free core generates
    ref = synthetic.load_synthetic(cfg.ingest.source)
    edges = store.read_table(cfg.graph_dir / "edges")
    assert sorted(zip(edges["src"].to_pylist(), edges["dst"].to_pylist())) == sorted(
        zip(ref.edges["src"].to_pylist(), ref.edges["dst"].to_pylist()))
    tag = store.TAG.load(cfg.graph_dir)
    assert np.array_equal(tag.labels, ref.nodes["label"].to_numpy())
    assert tag.texts()[7] == ref.nodes["text"][7].as_py()
    # features are the hashing encoder's output, row i = node i
    assert np.allclose(tag.x[[0, 500, 1199]], make_encoder(cfg.ingest.encoder).encode([tag.texts()[i] for i in (0, 500, 1199)]))
    # METIS partition recorded, and node shards follow it
    part = np.load(cfg.graph_dir / "partition.npy")
    assert meta["partition"]["num_parts"] == 4 and sum(meta["partition"]["part_sizes"]) == 1200
    nodes = store.read_table(cfg.graph_dir / "nodes")
    assert np.all(np.diff(nodes["part"].to_numpy()) >= 0)
    assert np.array_equal(part[nodes["node_id"].to_numpy()], nodes["part"].to_numpy())
    # homophily 0.8 generator -> label homophily near 0.8 + 0.2/4
    assert abs(meta["stats"]["label_homophily"] - 0.85) < 0.03


def test_rerun_skips_and_changed_config_needs_overwrite(ray_local, tmp_path):
    cfg = synthetic_cfg(tmp_path / "w")
    first = ingest.run(cfg)
    assert not first.get("skipped")
    again = ingest.run(synthetic_cfg(tmp_path / "w", encoder={"name": "hashing", "dim": 32, "num_actors": 1}))
    assert again["skipped"] and again["created_at"] == first["created_at"]  # actor count is not part of the hash
    with pytest.raises(GkdError, match="set ingest.overwrite=true"):
        ingest.run(synthetic_cfg(tmp_path / "w", max_text_chars=50))
    meta = ingest.run(synthetic_cfg(tmp_path / "w", max_text_chars=50, overwrite=True))
    assert not meta.get("skipped") and max(len(t) for t in store.TAG.load(cfg.graph_dir).texts()) <= 50


def write_byo(folder: Path, n=40):
    folder.mkdir(parents=True)
    words = ["editor", "kernel", "python", "font", "game"]
    pq.write_table(pa.table({
        "node_id": [f"pkg{i}" for i in range(n)],
        "text": [f"a {words[i % 5]} package number {i}" for i in range(n)],
        "label": [None if i % 10 == 9 else words[i % 5] for i in range(n)],
    }), folder / "nodes.parquet")
    pq.write_table(pa.table({"src": [f"pkg{i}" for i in range(n - 1)], "dst": [f"pkg{i + 1}" for i in range(n - 1)]}),
                   folder / "edges.parquet")


def byo_cfg(workdir, path):
    return build_config({
        "name": "byo", "workdir": str(workdir),
        "ingest": {"source": {"kind": "byo", "path": str(path)},
                   "encoder": {"name": "minilm", "max_seq_length": 32, "batch_size": 8, "num_actors": 2},
                   "split": {"train_per_class": 2, "val_per_class": 2}, "num_shards": 2},
    })


def test_byo_with_minilm_pool_then_resume_from_cache(ray_local, tmp_path):
    write_byo(tmp_path / "byo")
    cfg = byo_cfg(tmp_path / "w1", tmp_path / "byo")
    texts = [f"a {['editor', 'kernel', 'python', 'font', 'game'][i % 5]} package number {i}" for i in range(40)]
    # a killed earlier run left the first 16 embeddings in the cache
    enc = make_encoder(cfg.ingest.encoder)
    ref = enc.encode(texts)
    cache = FeatureCache(Path(__import__("os").environ["GKD_CACHE_DIR"]) / "features", encoder_id(cfg.ingest.encoder))
    cache.add(text_hashes(texts[:16], encoder_id(cfg.ingest.encoder)), ref[:16])
    meta = ingest.run(cfg)
    assert meta["encoder"]["from_cache"] == 16 and meta["encoder"]["encoded"] == 24
    assert meta["num_nodes"] == 40 and meta["num_classes"] == 5 and meta["split_sizes"]["unlabeled"] == 4
    x = np.load(cfg.graph_dir / "x.npy")
    assert np.allclose(x, ref, atol=1e-5)
    # a fresh work dir reuses every embedding
    meta2 = ingest.run(byo_cfg(tmp_path / "w2", tmp_path / "byo"))
    assert meta2["encoder"]["encoded"] == 0 and meta2["encoder"]["from_cache"] == 40
    assert np.array_equal(np.load(tmp_path / "w2" / "graph" / "x.npy"), x)
    assert json.loads((tmp_path / "w2" / "graph" / "meta.json").read_text())["config_hash"] == meta["config_hash"]


APT = Path("/var/lib/apt/lists")


@pytest.mark.skipif(not list(APT.glob("*_Packages*")), reason="no apt lists on this machine")
def test_real_debian_subset_through_ray(ray_local, tmp_path):
    cfg = build_config({
        "name": "deb", "workdir": str(tmp_path / "w"),
        "ingest": {"source": {"kind": "debian", "max_nodes": 3000, "min_class_size": 30},
                   "encoder": {"name": "hashing", "dim": 64}, "num_shards": 2},
    })
    meta = ingest.run(cfg)
    store.validate_store(cfg.graph_dir)
    assert meta["num_nodes"] == 3000 and meta["num_classes"] >= 5
    assert meta["split_sizes"]["train"] == 20 * meta["num_classes"]
    assert meta["stats"]["num_csr_entries"] > 2000
    assert 0 < meta["stats"]["label_homophily"] < 1
