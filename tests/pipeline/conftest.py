"""A tiny end-to-end experiment: 100 synthetic nodes, hashing features, a tiny random Llama teacher."""

import pytest


from gkd.bench.quality import quick_config

DISTILL = {"hidden": 16, "num_layers": 2, "fanouts": [5, 5], "batch_size": 32, "epochs": 6, "patience": 6,
           "num_workers": 2, "unlabeled_seeds": 32, "method": "all", "checkpoint_every": 3}


def tiny_config(root, **over) -> dict:
    """The bench's quick experiment, smaller (100 nodes), in <root>/w, as a YAML-able mapping; `over` merges
    into its sections."""
    d = quick_config(root)
    d.update(name="tiny", workdir=str(root / "w"), distill=dict(DISTILL))
    d["rationale"]["unlabeled_budget"] = 4
    d["teacher"]["eval_budget"] = 8
    d["ingest"]["source"].update(num_nodes=100, num_edges=300)
    d["ingest"]["split"]["val_per_class"] = 3
    for k, v in over.items():
        d[k] = {**d[k], **v}
    return d


@pytest.fixture(name="tiny_config")
def tiny_config_fixture():
    return tiny_config
