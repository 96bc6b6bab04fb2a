"""Source loaders: each `load(cfg) -> RawGraph`, Ray-free; ingest shards and encodes the result.

`synthetic` also has a shard-parallel Ray Data path (see gkd.data.ingest) for ogbn-products scale.
"""

from __future__ import annotations

from gkd.data.raw import RawGraph


def load_source(cfg) -> RawGraph:
    """Dispatch on cfg.kind to the source's loader (imported lazily: each has its own deps)."""
    if cfg.kind == "byo":
        from gkd.data.sources.byo import load_byo as load
    elif cfg.kind == "debian":
        from gkd.data.sources.debian import load_debian as load
    elif cfg.kind == "synthetic":
        from gkd.data.sources.synthetic import load_synthetic as load
    elif cfg.kind == "ogbn-products":
        from gkd.data.sources.ogb import load_ogbn_products as load
    elif cfg.kind == "ogbn-arxiv":
        from gkd.data.sources.ogb import load_ogbn_arxiv as load
    elif cfg.kind == "cora":
        from gkd.data.sources.tape import load_cora as load
    elif cfg.kind == "pubmed":
        from gkd.data.sources.tape import load_pubmed as load
    else:  # pragma: no cover - the config's tagged union rejects other kinds first
        raise ValueError(f"unknown source kind {cfg.kind!r}")
    return load(cfg)
