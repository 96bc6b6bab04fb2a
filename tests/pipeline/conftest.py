"""A tiny end-to-end experiment: 100 synthetic nodes, hashing features, a tiny random Llama teacher."""

import pytest


DISTILL = {"hidden": 16, "num_layers": 2, "fanouts": [5, 5], "batch_size": 32, "epochs": 6, "patience": 6,
           "num_workers": 2, "unlabeled_seeds": 32, "method": "all", "checkpoint_every": 3}


def tiny_config(root, **over) -> dict:
    """The experiment as a YAML-able mapping; `over` merges into its sections."""
    d = {
        "name": "tiny", "workdir": str(root / "w"),
        "llm": {"model": str(root / "tiny-llama")},
        "prompt": {"hops": 1, "neighbors_per_hop": 2, "max_tokens": 128, "node_tokens": 24, "neighbor_tokens": 8},
        "rationale": {"splits": ["train"], "unlabeled_budget": 4, "batch_size": 4, "num_actors": 1,
                      "max_new_tokens": 8},
        "teacher": {"max_steps": 2, "batch_size": 2, "eval_budget": 8, "train_budget": 8, "num_workers": 2,
                    "checkpoint_every": 2},
        "ingest": {"source": {"kind": "synthetic", "num_nodes": 100, "num_edges": 300, "num_classes": 3,
                              "num_shards": 2, "words_per_node": 8},
                   "split": {"train_per_class": 4, "val_per_class": 3},
                   "encoder": {"name": "hashing", "dim": 16}, "num_shards": 2},
        "distill": dict(DISTILL),
    }
    for k, v in over.items():
        d[k] = {**d[k], **v}
    return d


@pytest.fixture(name="tiny_config")
def tiny_config_fixture():
    return tiny_config
