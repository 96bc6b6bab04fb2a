"""The student zoo: shapes, per-layer representations, trimming, and layer-wise inference = full-graph forward."""

import re

import numpy as np
import pytest
import torch

from gkd.data.store import build_csr
from gkd.errors import ConfigError
from gkd.gnn.infer import layerwise_inference
from gkd.gnn.models import CONVS, GNN, build_gnn
from gkd.gnn.sampler import CSRSampler, node_data


def small_graph(n=60, e=200, d=8, seed=0):
    rng = np.random.default_rng(seed)
    src, dst = rng.integers(0, n, e), rng.integers(0, n, e)
    keep = src != dst
    indptr, indices = build_csr(src[keep], dst[keep], n)
    return indptr, indices, torch.from_numpy(rng.normal(size=(n, d)).astype(np.float32))


@pytest.mark.parametrize("kind", sorted(CONVS))
def test_forward_returns_logits_and_every_layer(kind):
    indptr, indices, x = small_graph()
    gnn = GNN(kind, 8, 16, 5, num_layers=3, heads=4)
    row = torch.repeat_interleave(torch.arange(60), torch.from_numpy(np.diff(indptr)))
    logits, reps = gnn(x, torch.stack([torch.from_numpy(indices), row]))
    assert logits.shape == (60, 5) and len(reps) == 3 and all(r.shape == (60, 16) for r in reps)
    assert build_gnn(gnn.spec()).spec() == gnn.spec()


def test_unknown_kind_and_bad_gat_width_are_config_errors():
    with pytest.raises(ConfigError, match="distill.gnn"):
        GNN("gnn9000", 8, 16, 3, 2)
    with pytest.raises(ConfigError, match="multiple of distill.heads"):
        GNN("gat", 8, 10, 3, 2, heads=4)


@pytest.mark.parametrize("kind,jk", [(k, False) for k in sorted(CONVS)] + [("sage", True), ("gcn", True)])
def test_layerwise_inference_equals_full_graph_forward(kind, jk):
    from gkd.gnn.infer import inductive_logits, layer_inputs

    indptr, indices, x = small_graph(seed=1)
    torch.manual_seed(0)
    # GIN with neighbour caps that bite (mean degree ~3): the capped sum is the same on every path
    gnn = GNN(kind, 8, 16, 4, num_layers=2, root_weight=kind == "gcn", jk=jk, sum_caps=[2, 3]).eval()
    assert gnn.spec()["jk"] is jk and build_gnn(gnn.spec()).spec() == gnn.spec()
    row = torch.repeat_interleave(torch.arange(60), torch.from_numpy(np.diff(indptr)))
    with torch.no_grad():
        full, reps = gnn(x, torch.stack([torch.from_numpy(indices), row]))
    logits, h = layerwise_inference(gnn, lambda n_id: x[n_id], indptr, indices, batch_size=7)
    np.testing.assert_allclose(logits, full.numpy(), atol=1e-5)
    np.testing.assert_allclose(h, reps[-1].numpy(), atol=1e-5)
    # every layer kept (Serve's cache): the same logits; node 5 asked as a new node gets its own row back
    hidden, cached = layer_inputs(gnn, x.numpy(), indptr, indices, batch_size=7)
    np.testing.assert_allclose(cached, full.numpy(), atol=1e-5)
    nbrs = [indices[indptr[5] : indptr[6]]]
    np.testing.assert_allclose(inductive_logits(gnn, hidden, x[5:6].numpy(), nbrs)[0], full[5].numpy(), atol=1e-5)


def test_layerwise_inference_reports_progress_within_a_layer(caplog):
    indptr, indices, x = small_graph(seed=1)
    gnn = GNN("sage", 8, 16, 4, num_layers=2).eval()
    with caplog.at_level("INFO", logger="gkd.gnn.infer"):
        layerwise_inference(gnn, lambda n_id: x[n_id], indptr, indices, batch_size=25, progress_every_s=0)
    lines = [r.getMessage() for r in caplog.records]
    # 60 nodes in chunks of 25: progress before the chunks at 25 and 50, on each of the 2 layers, then the layer
    progress = [re.search(r"layer (\d)/2, (\d+)/60 nodes", line).groups() for line in lines if "nodes/s" in line]
    assert progress == [("1", "25"), ("1", "50"), ("2", "25"), ("2", "50")]
    assert sum("for 60 nodes" in line for line in lines) == 2


@pytest.mark.parametrize("kind,jk", [("sage", False), ("gat", False), ("sage", True)])
def test_trimmed_sampled_forward_matches_untrimmed_at_the_seeds(kind, jk):
    from torch_geometric.loader import NodeLoader

    indptr, indices, x = small_graph(seed=2)
    gnn = GNN(kind, 8, 16, 3, num_layers=2, jk=jk).eval()
    loader = NodeLoader(node_data(x, torch.zeros(60, dtype=torch.long), 60),
                        node_sampler=CSRSampler(indptr, indices, [4, 3], seed=0),
                        input_nodes=torch.arange(20), batch_size=10)
    for batch in loader:
        with torch.no_grad():
            a, ra = gnn(batch.x, batch.edge_index, batch.num_sampled_nodes, batch.num_sampled_edges)
            b, rb = gnn(batch.x, batch.edge_index)
        bs = batch.batch_size
        np.testing.assert_allclose(a[:bs].numpy(), b[:bs].numpy(), atol=1e-5)
        np.testing.assert_allclose(ra[1][:bs].numpy(), rb[1][:bs].numpy(), atol=1e-5)


def test_gin_sum_cap_is_exact_under_the_cap_and_the_sampled_expectation_over_it():
    """A capped GIN layer sums neighbours exactly when a node has <= cap of them (every sampled batch), and
    over full neighbourhoods gives the expected sum of a uniform cap-sample: what training saw."""
    from gkd.gnn.distill import gin_sum_caps
    from gkd.config import DistillConfig

    torch.manual_seed(0)
    plain, capped = GNN("gin", 4, 8, 3, num_layers=1), GNN("gin", 4, 8, 3, num_layers=1, sum_caps=[3])
    capped.load_state_dict(plain.state_dict())
    assert capped.spec()["sum_caps"] == [3] and build_gnn(capped.spec()).sum_caps == [3]
    conv, base = capped.convs[0], plain.convs[0]
    x = torch.randn(11, 4)
    few = torch.tensor([[1, 2, 3], [0, 0, 0]])  # node 0 has 3 neighbours = cap
    np.testing.assert_allclose(conv(x, few).detach(), base(x, few).detach(), atol=1e-6)
    many = torch.stack([torch.arange(1, 11), torch.zeros(10, dtype=torch.long)])  # node 0 has 10 > cap
    mean_sum = x[1:11].mean(0) * 3  # E[sum of 3 of the 10]
    expected = conv.nn(mean_sum + (1 + conv.eps) * x[0])
    np.testing.assert_allclose(conv(x, many)[0].detach(), expected.detach(), atol=1e-5)
    # a Monte Carlo check of that expectation: the plain sum over random 3-samples, averaged
    sums = torch.stack([x[1 + torch.randperm(10)[:3]].sum(0) for _ in range(4000)]).mean(0)
    np.testing.assert_allclose(sums, mean_sum, atol=0.08)
    # the caps come from the fanouts, last layer <- the seeds' hop; all-neighbour hops have nothing to match
    d = DistillConfig(gnn="gin", fanouts=[15, 10], num_layers=2)
    assert gin_sum_caps(d) == [10, 15]
    assert gin_sum_caps(d.model_copy(update={"fanouts": [15, -1]})) is None
    assert gin_sum_caps(d.model_copy(update={"gnn": "sage"})) is None
