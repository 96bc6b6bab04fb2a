"""A small synthetic graph store and a tiny random Llama whose vocabulary covers its texts."""

import pytest

from gkd.config import build_config
from gkd.data import ingest
from gkd.data.store import TAG
from gkd.llm.models import make_tiny_llama


@pytest.fixture(scope="session")
def world(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("rat")
    cfg = build_config({
        "name": "rat", "workdir": str(root / "w"),
        "llm": {"model": str(root / "tiny")},
        "prompt": {"hops": 2, "neighbors_per_hop": 2, "max_tokens": 160, "node_tokens": 24, "neighbor_tokens": 8},
        "rationale": {"splits": ["train"], "unlabeled_budget": 6, "batch_size": 4, "num_actors": 2,
                      "max_new_tokens": 12},
        "ingest": {"source": {"kind": "synthetic", "num_nodes": 120, "num_edges": 400, "num_classes": 3,
                              "num_shards": 2, "words_per_node": 8},
                   "split": {"train_per_class": 4, "val_per_class": 2},
                   "encoder": {"name": "hashing", "dim": 16}, "num_shards": 2},
    })
    ingest.run(cfg)
    tag = TAG.load(cfg.graph_dir, features=False)
    make_tiny_llama(root / "tiny", texts=tag.texts())
    return cfg, tag
