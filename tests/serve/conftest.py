"""A small synthetic graph store (gkd's own ingest, hashing features), a random student registered in a SQLite
MLflow store with alias champion, and a tiny random Llama as the cascade's teacher."""


import numpy as np
import pytest
import torch

from gkd.config import build_config
from gkd.data import ingest
from gkd.data.store import TAG
from gkd.gnn.distill import save_student
from gkd.gnn.models import GNN
from gkd.llm.models import make_tiny_llama

HIDDEN = 16


def random_student(tag: TAG, kind: str = "sage", seed: int = 0) -> GNN:
    """A seeded, untrained student whose logits are spread enough for confident and unsure answers."""
    torch.manual_seed(seed)
    gnn = GNN(kind, tag.x.shape[1], HIDDEN, tag.num_classes, num_layers=2, dropout=0.5, heads=2)
    with torch.no_grad():
        gnn.head.weight.mul_(6.0)
    return gnn.eval()


@pytest.fixture(scope="session")
def serve_world(ray_local, tmp_path_factory):
    """(cfg, tag, gnn): 300 nodes, 3 classes, 32-d hashing features; the student is registered as
    serve-student v1 (alias champion, val_acc 0.61) in <workdir>/mlflow.db; the teacher is a tiny Llama."""
    import mlflow

    from gkd.tracking.registry import log_student, promote
    from gkd.tracking.tracker import ensure_experiment, tracking_uri

    root = tmp_path_factory.mktemp("serve")
    data = {
        "name": "serve", "workdir": str(root / "w"),
        "llm": {"model": str(root / "tiny")},
        "prompt": {"hops": 1, "neighbors_per_hop": 2, "max_tokens": 120, "node_tokens": 24, "neighbor_tokens": 8},
        "ingest": {"source": {"kind": "synthetic", "num_nodes": 300, "num_edges": 1200, "num_classes": 3,
                              "words_per_node": 10, "num_shards": 2, "seed": 5},
                   "split": {"train_per_class": 5, "val_per_class": 5},
                   "encoder": {"name": "hashing", "dim": 32}, "num_shards": 2},
        "serve": {"num_cpus_per_replica": 0.5, "max_nodes_per_request": 16, "max_text_chars": 500,
                  "max_neighbors_per_node": 64,
                  "cascade": {"num_cpus_per_replica": 0.5, "max_batch_size": 4, "max_ongoing_requests": 8}},
    }
    cfg = build_config(data)
    ingest.run(cfg)
    tag = TAG.load(cfg.graph_dir)
    make_tiny_llama(root / "tiny", texts=tag.texts())
    gnn = random_student(tag)
    ckpt = root / "student" / "checkpoint"
    save_student(gnn, ckpt, {"class_names": tag.class_names, "encoder": tag.meta["encoder"], "graph": tag.name,
                             "gnn": "sage", "method": "vanilla", "val_acc": 0.61, "test_acc": 0.55})
    uri = tracking_uri(cfg.workdir)
    mlflow.set_tracking_uri(uri)
    try:
        ensure_experiment("serve", cfg.workdir)
        with mlflow.start_run():
            log_student(ckpt, "serve-student", {"val_acc": 0.61, "test_acc": 0.55})
        assert promote("serve-student")["promoted"]
    finally:
        mlflow.set_tracking_uri(None)
    return cfg, tag, gnn, ckpt, data


def reference_probs(gnn: GNN, tag: TAG) -> np.ndarray:
    """Softmax of a full-graph forward pass (every node sees all its neighbours): (N, C)."""
    deg = np.diff(tag.indptr)
    edge_index = torch.stack([torch.from_numpy(tag.indices), torch.from_numpy(np.repeat(np.arange(tag.num_nodes), deg))])
    with torch.no_grad():
        logits, _ = gnn.eval()(torch.from_numpy(np.asarray(tag.x, dtype=np.float32)), edge_index.long())
    return torch.softmax(logits, 1).numpy()
