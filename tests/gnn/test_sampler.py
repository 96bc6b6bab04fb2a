import warnings

import numpy as np
import pytest
import torch
import torch_geometric.typing
from torch_geometric.loader import NodeLoader
from torch_geometric.sampler import NeighborSampler, NodeSamplerInput

from gkd.data.store import build_csr
from gkd.errors import GraphStoreError
from gkd.gnn.sampler import CSRSampler, make_sampler, node_data, sample_neighbors


@pytest.fixture(scope="module")
def hub_csr():
    """3,000 nodes, ~12k random undirected edges, nodes 0..2 are hubs with ~1,500 neighbours each."""
    rng = np.random.default_rng(7)
    n = 3000
    src = rng.integers(0, n, 12_000)
    dst = rng.integers(0, n, 12_000)
    hubs = np.repeat(np.arange(3), 1500)
    src = np.concatenate([src, hubs])
    dst = np.concatenate([dst, rng.integers(3, n, len(hubs))])
    indptr, indices = build_csr(src, dst, n)
    assert np.diff(indptr)[:3].min() > 1000
    return indptr, indices


@pytest.fixture
def small_csr():
    """Hand-made directed CSR: 0->{1,2,3}, 1->{0,4}, 2->{5}, 3->{}, 4->{0,1,2,3,5}, 5->{4}."""
    rows = [[1, 2, 3], [0, 4], [5], [], [0, 1, 2, 3, 5], [4]]
    indptr = np.cumsum([0] + [len(r) for r in rows]).astype(np.int64)
    indices = np.array([v for r in rows for v in r], dtype=np.int64)
    return indptr, indices


def rows_of(indptr, indices, v):
    return indices[indptr[v] : indptr[v + 1]]


def reference_full(indptr, indices, seeds, hops):
    """pyg-lib's non-disjoint directional loop (neighbor_kernel.cpp) for fanout -1, in plain Python."""
    node = list(seeds)
    local = {}
    for i, s in enumerate(seeds):
        local.setdefault(s, i)
    row, col, edge, nse = [], [], [], []
    nsn = [len(seeds)]
    begin, end = 0, len(seeds)
    for _ in range(hops):
        before = len(edge)
        for i in range(begin, end):
            for e in range(indptr[node[i]], indptr[node[i] + 1]):
                u = int(indices[e])
                if u not in local:
                    local[u] = len(node)
                    node.append(u)
                row.append(local[u])
                col.append(i)
                edge.append(e)
        nse.append(len(edge) - before)
        begin, end = end, len(node)
        nsn.append(end - begin)
    return node, row, col, edge, nsn, nse


def sample(sampler, seeds):
    seeds = torch.as_tensor(seeds, dtype=torch.int64)
    return sampler.sample_from_nodes(NodeSamplerInput(input_id=torch.arange(len(seeds)), node=seeds))


def check_output(out, indptr, indices, seeds, fanouts):
    """Every value-level invariant of a non-disjoint directional SamplerOutput."""
    seeds = torch.as_tensor(seeds)
    node, row, col, edge = out.node, out.row, out.col, out.edge
    assert torch.equal(node[: len(seeds)], seeds)
    assert len(torch.unique(node)) == len(node)
    assert sum(out.num_sampled_nodes) == len(node)
    assert sum(out.num_sampled_edges) == len(row) == len(col) == len(edge)
    assert len(out.num_sampled_nodes) == len(fanouts) + 1 and len(out.num_sampled_edges) == len(fanouts)
    # each edge is a CSR entry: indices[edge] is the neighbour, edge lies in the destination's row
    g_row, g_col = node[row].numpy(), node[col].numpy()
    e = edge.numpy()
    assert np.array_equal(indices[e], g_row)
    assert np.all((indptr[g_col] <= e) & (e < indptr[g_col + 1]))
    deg = np.diff(indptr)
    n_begin, e_begin = 0, 0
    for hop, fanout in enumerate(fanouts):
        n_end = n_begin + out.num_sampled_nodes[hop]
        e_end = e_begin + out.num_sampled_edges[hop]
        c = col[e_begin:e_end].numpy()
        assert np.all((n_begin <= c) & (c < n_end))  # hop h draws for hop h-1's new nodes
        want = deg[node[n_begin:n_end].numpy()]
        if fanout >= 0:
            want = np.minimum(want, fanout)
        assert np.array_equal(np.bincount(c - n_begin, minlength=n_end - n_begin), want)
        pairs = c * len(node) + row[e_begin:e_end].numpy()
        assert len(np.unique(pairs)) == len(pairs)  # without replacement
        n_begin, e_begin = n_end, e_end


# ----------------------------------------------------------------------------- sample_neighbors


@pytest.mark.parametrize("fanout", [0, 1, 3, 10, 40])
def test_sample_neighbors_draws_min_deg_fanout_distinct_csr_neighbours(hub_csr, fanout):
    indptr, indices = hub_csr
    ip, ix = torch.from_numpy(indptr), torch.from_numpy(indices)
    nodes = torch.arange(len(indptr) - 1)
    nbr, dst_pos, edge_pos = sample_neighbors(ip, ix, nodes, fanout, torch.Generator().manual_seed(0))
    deg = np.diff(indptr)
    assert np.array_equal(np.bincount(dst_pos.numpy(), minlength=len(nodes)), np.minimum(deg, fanout))
    assert torch.equal(ix[edge_pos], nbr)
    assert torch.all((ip[dst_pos] <= edge_pos) & (edge_pos < ip[dst_pos + 1]))
    assert len(torch.unique(edge_pos)) == len(edge_pos)
    assert torch.all(dst_pos[1:] >= dst_pos[:-1])  # grouped by node, in `nodes` order


def test_sample_neighbors_fanout_minus_one_is_the_full_row_in_csr_order(hub_csr):
    indptr, indices = hub_csr
    nodes = torch.tensor([0, 5, 2, 5, 2999])
    nbr, dst_pos, edge_pos = sample_neighbors(torch.from_numpy(indptr), torch.from_numpy(indices), nodes, -1)
    want = np.concatenate([rows_of(indptr, indices, v) for v in nodes.numpy()])
    assert np.array_equal(nbr.numpy(), want)
    assert np.array_equal(np.bincount(dst_pos.numpy()), np.diff(indptr)[nodes.numpy()])


def test_sample_neighbors_cost_does_not_grow_with_degree():
    """A hub of degree 1e9 (indices stride-0, nothing allocated) samples 5 distinct edges at once."""
    indptr = torch.tensor([0, 10**9], dtype=torch.int64)
    indices = torch.zeros(1, dtype=torch.int64).expand(10**9)
    gen = torch.Generator().manual_seed(1)
    nbr, dst_pos, edge_pos = sample_neighbors(indptr, indices, torch.tensor([0, 0]), 5, gen)
    assert dst_pos.tolist() == [0] * 5 + [1] * 5
    assert len(torch.unique(edge_pos[:5])) == 5 and len(torch.unique(edge_pos[5:])) == 5
    assert int(edge_pos.min()) >= 0 and int(edge_pos.max()) < 10**9
    assert not torch.equal(edge_pos[:5], edge_pos[5:])


def test_sample_neighbors_is_uniform():
    """Degree 10, fan-out 2, 20k draws: each neighbour is in a draw with probability 0.2."""
    indptr = torch.tensor([0, 10])
    indices = torch.arange(100, 110)
    nbr, dst_pos, _ = sample_neighbors(indptr, indices, torch.zeros(20_000, dtype=torch.int64), 2,
                                       torch.Generator().manual_seed(3))
    assert len(nbr) == 40_000
    freq = np.bincount(nbr.numpy() - 100, minlength=10) / 20_000
    assert np.all(np.abs(freq - 0.2) < 0.015), freq  # sd 0.0028
    first, second = nbr[0::2], nbr[1::2]
    assert torch.all(first != second)


# ----------------------------------------------------------------------------- CSRSampler


def test_sampler_invariants_on_hub_graph(hub_csr):
    indptr, indices = hub_csr
    seeds = torch.tensor([0, 17, 1, 2998, 2, 450, 451])
    for fanouts in ([15, 10], [3, 3, 3], [-1, 2], [0, 5]):
        out = sample(CSRSampler(indptr, indices, fanouts, seed=0), seeds)
        check_output(out, indptr, indices, seeds, fanouts)
        assert out.batch is None


def test_sampler_full_fanout_equals_pyg_lib_reference(hub_csr, small_csr):
    for (indptr, indices), seeds in ((small_csr, [2, 0]), (small_csr, [3]), (hub_csr, [5, 1, 900, 42])):
        out = sample(CSRSampler(indptr, indices, [-1, -1]), seeds)
        node, row, col, edge, nsn, nse = reference_full(indptr, indices, seeds, 2)
        assert out.node.tolist() == node
        assert out.row.tolist() == row and out.col.tolist() == col and out.edge.tolist() == edge
        assert out.num_sampled_nodes == nsn and out.num_sampled_edges == nse


def test_sampler_one_hop_full_fanout_edge_set_is_the_seeds_csr_rows(small_csr):
    indptr, indices = small_csr
    out = sample(CSRSampler(indptr, indices, [-1]), [4, 1])
    got = set(zip(out.node[out.col].tolist(), out.node[out.row].tolist()))
    want = {(v, int(u)) for v in (4, 1) for u in rows_of(indptr, indices, v)}
    assert got == want
    assert out.node.tolist() == [4, 1, 0, 2, 3, 5]
    assert out.num_sampled_nodes == [2, 4] and out.num_sampled_edges == [7]


def test_sampler_same_seed_same_batches_other_seed_others(hub_csr):
    indptr, indices = hub_csr
    seeds = torch.arange(0, 3000, 7)
    a, b, c = (sample(CSRSampler(indptr, indices, [5, 5], seed=s), seeds) for s in (11, 11, 12))
    for f in ("node", "row", "col", "edge"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert not torch.equal(a.edge, c.edge)
    s = CSRSampler(indptr, indices, [5, 5], seed=11)
    first, second = sample(s, seeds), sample(s, seeds)
    assert not torch.equal(first.edge, second.edge)  # the stream moves on between batches
    s.reset(11)
    assert torch.equal(sample(s, seeds).edge, first.edge)


def test_sampler_forked_worker_gets_its_own_stream(hub_csr):
    indptr, indices = hub_csr
    seeds = torch.arange(0, 3000, 7)
    parent = sample(CSRSampler(indptr, indices, [5], seed=4), seeds)
    s = CSRSampler(indptr, indices, [5], seed=4)
    s._pid = -1  # as after a fork into a DataLoader worker
    assert not torch.equal(sample(s, seeds).edge, parent.edge)


def test_sampler_duplicate_seeds_keep_their_places(small_csr):
    indptr, indices = small_csr
    out = sample(CSRSampler(indptr, indices, [-1]), [0, 0, 2])
    assert out.node.tolist() == [0, 0, 2, 1, 3, 5]  # seeds as given (as pyg-lib), hop nodes unique
    assert out.col.tolist() == [0, 0, 0, 1, 1, 1, 2]  # each copy draws its own neighbours
    assert out.row.tolist() == [3, 2, 4, 3, 2, 4, 5]
    assert out.num_sampled_nodes == [3, 3]
    out = sample(CSRSampler(indptr, indices, [2, 2]), [4, 4, 4, 1])
    assert out.node[:4].tolist() == [4, 4, 4, 1] and len(torch.unique(out.node[4:])) == len(out.node) - 4
    assert not set(out.node[4:].tolist()) & {4, 1}


def test_sampler_reads_read_only_numpy_without_copying(hub_csr):
    indptr, indices = hub_csr
    seeds = torch.tensor([0, 1, 2, 100])
    want = sample(CSRSampler(torch.from_numpy(indptr), torch.from_numpy(indices), [4, 3], seed=5), seeds)
    for dtype in (np.int64, np.int32):
        ip, ix = indptr.copy(), indices.astype(dtype)
        ip.setflags(write=False)
        ix.setflags(write=False)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            s = CSRSampler(ip, ix, [4, 3], seed=5)
            out = sample(s, seeds)
        assert s.indptr.data_ptr() == ip.ctypes.data and s.indices.data_ptr() == ix.ctypes.data
        assert np.shares_memory(s.indices.numpy(), ix)
        assert s.indices.dtype == torch.from_numpy(np.zeros(1, dtype)).dtype
        for f in ("node", "row", "col", "edge"):
            assert torch.equal(getattr(out, f), getattr(want, f))
            assert getattr(out, f).dtype == torch.int64


def test_sampler_rejects_bad_inputs(small_csr):
    indptr, indices = small_csr
    with pytest.raises(GraphStoreError, match="int32 or int64"):
        CSRSampler(indptr.astype(np.float32), indices, [2])
    with pytest.raises(GraphStoreError, match="does not match"):
        CSRSampler(indptr, indices[:-1], [2])
    with pytest.raises(GraphStoreError, match="6 nodes"):
        sample(CSRSampler(indptr, indices, [2]), [0, 6])
    with pytest.raises(NotImplementedError, match="seed nodes only"):
        CSRSampler(indptr, indices, [2]).sample_from_edges(None)
    assert CSRSampler(indptr, indices, [2]).edge_permutation is None


def test_node_loader_batches(hub_csr):
    indptr, indices = hub_csr
    n = len(indptr) - 1
    x = torch.randn(n, 8)
    y = torch.arange(n) % 5
    data = node_data(x, y)
    seed_tensor = torch.arange(1, n, 2)
    sampler = CSRSampler(indptr, indices, [15, 10], seed=0)
    loader = NodeLoader(data, node_sampler=sampler, input_nodes=seed_tensor, batch_size=256, shuffle=False)
    batches = list(loader)
    assert len(batches) == -(-len(seed_tensor) // 256)
    for i, b in enumerate(batches):
        seeds = seed_tensor[i * 256 : (i + 1) * 256]
        assert b.batch_size == len(seeds)
        assert torch.equal(b.input_id, torch.arange(i * 256, i * 256 + len(seeds)))
        assert torch.equal(b.n_id[: b.batch_size], seeds)
        assert torch.equal(b.x, x[b.n_id]) and torch.equal(b.y, y[b.n_id])
        assert b.num_nodes == len(b.n_id) and b.edge_index.shape == (2, len(b.e_id))
        assert sum(b.num_sampled_nodes) == b.num_nodes and sum(b.num_sampled_edges) == len(b.e_id)
        src, dst = b.n_id[b.edge_index[0]].numpy(), b.n_id[b.edge_index[1]].numpy()
        assert np.array_equal(indices[b.e_id.numpy()], src)  # messages flow neighbour -> sampled-for node
        assert np.all((indptr[dst] <= b.e_id.numpy()) & (b.e_id.numpy() < indptr[dst + 1]))


def test_node_loader_full_fanout_matches_pyg_lib_reference(small_csr):
    indptr, indices = small_csr
    data = node_data(torch.arange(6.0)[:, None], torch.arange(6))
    sampler = CSRSampler(indptr, indices, [-1, -1])
    loader = NodeLoader(data, node_sampler=sampler, input_nodes=torch.tensor([5, 3, 1, 0]), batch_size=2)
    for b, seeds, first in zip(loader, ([5, 3], [1, 0]), (0, 2)):
        node, row, col, edge, nsn, nse = reference_full(indptr, indices, seeds, 2)
        assert b.n_id.tolist() == node and b.e_id.tolist() == edge
        assert b.edge_index.tolist() == [row, col]
        assert b.input_id.tolist() == [first, first + 1] and b.batch_size == 2
        assert b.num_sampled_nodes == nsn and b.num_sampled_edges == nse


def test_make_sampler_picks_pyg_lib_when_importable(small_csr, monkeypatch):
    indptr, indices = small_csr
    monkeypatch.setattr(torch_geometric.typing, "WITH_PYG_LIB", False)
    assert isinstance(make_sampler(indptr, indices, [2, 2], seed=3), CSRSampler)
    monkeypatch.setattr(torch_geometric.typing, "WITH_PYG_LIB", True)
    s = make_sampler(indptr, indices, [2, 2])
    assert isinstance(s, NeighborSampler)
    # same neighbours: PyG's CSC over the built edge_index is our CSR
    assert torch.equal(s.colptr, torch.from_numpy(indptr)) and torch.equal(s.row, torch.from_numpy(indices))
