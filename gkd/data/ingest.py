"""Ingest stage: a source -> the canonical graph store, sharded and encoded with Ray Data.

  source (Ray-free loader, or shard-parallel synthetic generation on Ray Data)
  -> splits drawn, holdout_fraction of the test nodes marked 'holdout' (raw.draw_holdout)
  -> edges/*.parquet -> csr.npz without the held-out nodes' edges (+ holdout_edges.npz) -> [METIS partition.npy]
  -> nodes/*.parquet (shards follow partition order when enabled)
  -> x.npy via map_batches over an ActorPoolStrategy of encoder actors (cached by content hash)
  -> meta.json (written last; its config_hash (gkd.config.content_hash) lets a rerun skip a finished ingest)
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from ray.data import SaveMode
from ray.data.datasource import FilenameProvider

import gkd
from gkd.config import EncoderConfig, ExperimentConfig, IngestConfig, PartitionConfig, content_hash
from gkd.data import store
from gkd.data.encode import FeatureCache, default_cache_dir, encoder_id, text_hashes
from gkd.data.raw import draw_holdout, draw_split
from gkd.data.sources import load_source
from gkd.data.sources import synthetic
from gkd.errors import DataError, GkdError
from gkd.runtime import init_ray

log = logging.getLogger(__name__)

def truncate_text(table: pa.Table, max_chars: int) -> pa.Table:
    i = table.schema.get_field_index("text")
    text = pc.utf8_slice_codeunits(pc.fill_null(table["text"], ""), 0, max_chars)
    return table.set_column(i, "text", text)


def _batch_bounds(n: int, rows: int):
    return [(a, min(a + rows, n)) for a in range(0, n, rows)]


# ----------------------------------------------------------------------------- Ray Data pieces


def _synthetic_nodes(batch: dict, cfg: dict, codes, max_chars: int) -> pa.Table:
    import ray

    codes = ray.get(codes) if isinstance(codes, ray.ObjectRef) else codes
    src = synthetic.SyntheticSource.model_validate(cfg)
    return truncate_text(synthetic.generate_nodes(src, int(batch["id"][0]), codes), max_chars)


def _synthetic_edges(batch: dict, cfg: dict) -> pa.Table:
    return synthetic.generate_edges(synthetic.SyntheticSource.model_validate(cfg), int(batch["id"][0]))


def _add_part(table: pa.Table, part) -> pa.Table:
    import ray

    part = ray.get(part) if isinstance(part, ray.ObjectRef) else part
    return table.append_column("part", pa.array(part[table["node_id"].to_numpy()], type=pa.int32()))


def source_datasets(icfg: IngestConfig):
    """(nodes Dataset, edges Dataset, info) for the configured source; nodes carry node_id and their final
    split; info["holdout"] holds the sorted ids of the held-out nodes."""
    import ray

    src = icfg.source
    if src.kind == "synthetic":
        codes = synthetic.split_codes(src, icfg.split)
        holdout = np.flatnonzero(codes == synthetic.SPLIT_CODES.index("holdout"))
        codes = ray.put(codes)
        shards = ray.data.range(src.num_shards, override_num_blocks=src.num_shards)
        nodes = shards.map_batches(
            _synthetic_nodes, batch_size=1, fn_kwargs={"cfg": src.model_dump(), "codes": codes,
                                                       "max_chars": icfg.max_text_chars}
        )
        edges = shards.map_batches(_synthetic_edges, batch_size=1, fn_kwargs={"cfg": src.model_dump()})
        info = {"num_nodes": src.num_nodes, "class_names": synthetic.class_names(src), "directed": False,
                "notes": [], "stats": {}, "holdout": holdout}
        return nodes, edges, info
    t0 = time.time()
    raw = load_source(src)
    log.info("read %s: %d nodes, %d edge rows in %.1fs", src.kind, raw.num_nodes, raw.edges.num_rows, time.time() - t0)
    if raw.num_nodes == 0:
        raise DataError(f"source {src.kind} produced no nodes")
    labels = raw.nodes["label"].to_numpy(zero_copy_only=False)
    split = draw_split(labels, np.asarray(raw.nodes["split"].to_pylist(), dtype=object), icfg.split)
    split = draw_holdout(labels, split, icfg.split)
    nodes = raw.nodes.set_column(raw.nodes.schema.get_field_index("split"), "split", pa.array(split, pa.string()))
    nodes = truncate_text(nodes, icfg.max_text_chars)
    nodes = nodes.add_column(0, "node_id", pa.array(np.arange(raw.num_nodes, dtype=np.int64)))
    blocks = lambda t: [t.slice(a, b - a) for a, b in _batch_bounds(t.num_rows, max(1, -(-t.num_rows // icfg.num_shards)))]
    info = {"num_nodes": raw.num_nodes, "class_names": raw.class_names, "directed": raw.directed,
            "notes": raw.notes, "stats": raw.stats, "holdout": np.flatnonzero(split == "holdout")}
    edges = blocks(raw.edges) if raw.edges.num_rows else [raw.edges]
    return ray.data.from_arrow(blocks(nodes)), ray.data.from_arrow(edges), info


class ShardNames(FilenameProvider):
    """part-00000.parquet, part-00001.parquet, ... in write-task order."""

    def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
        return f"part-{task_index:05d}.parquet"


def write_shards(ds, folder: Path, num_shards: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ds.repartition(num_shards).write_parquet(
        str(folder), filename_provider=ShardNames(file_format="parquet"), mode=SaveMode.OVERWRITE
    )


def partition_graph(indptr: np.ndarray, indices: np.ndarray, cfg: PartitionConfig) -> tuple[np.ndarray, int]:
    """METIS k-way partition of the (symmetric) CSR: (part (N,) int32, edge cut)."""
    import pymetis

    opts = pymetis.Options(seed=cfg.seed)
    adjacency = pymetis.CSRAdjacency(indptr, indices)
    cut, part = pymetis.part_graph(cfg.num_parts, adjacency=adjacency, options=opts)
    return np.asarray(part, dtype=np.int32), int(cut)


def encode_nodes(graph_dir: Path, ecfg: EncoderConfig, num_nodes: int) -> dict:
    """Write graph_dir/x.npy (N, d) by streaming node texts through an actor pool of encoders."""
    import ray

    from gkd.data.encode import EncodeActor

    nodes = store.read_table(graph_dir / "nodes", ["node_id", "text"])
    nodes = nodes.take(pc.sort_indices(nodes["node_id"]))
    enc_id = encoder_id(ecfg)
    use_cache = ecfg.cache and ecfg.name != "hashing"  # hashing is cheaper than a cache lookup
    todo = np.ones(num_nodes, dtype=bool)
    cache = hashes = None
    if use_cache:
        cache = FeatureCache(ecfg.cache_dir or default_cache_dir(), enc_id)
        hashes = text_hashes(nodes["text"].to_pylist(), enc_id)
        todo = ~sorted_contains(cache.known_hashes(), hashes)
    n_todo = int(todo.sum())
    log.info("encoding %d of %d texts with %s (%d cached) on %d actor(s)", n_todo, num_nodes, enc_id,
             num_nodes - n_todo, ecfg.num_actors)
    x = None
    tmp = graph_dir / "x.npy.partial"
    t0, done, last = time.time(), 0, 0.0
    if n_todo:
        sub = nodes.take(pa.array(np.flatnonzero(todo)))
        # one batch per block: results stream back (and into the cache) batch by batch
        blocks = [sub.slice(a, b - a) for a, b in _batch_bounds(sub.num_rows, ecfg.batch_size)]
        ds = ray.data.from_arrow(blocks).map_batches(
            EncodeActor,
            fn_constructor_kwargs={"cfg_dict": ecfg.model_dump(mode="json")},
            compute=ray.data.ActorPoolStrategy(size=ecfg.num_actors),
            batch_size=ecfg.batch_size,
            batch_format="numpy",
            num_cpus=ecfg.num_cpus_per_actor,
            num_gpus=ecfg.num_gpus_per_actor or None,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            ids, emb = batch["node_id"], np.asarray(batch["emb"])
            if x is None:
                x = np.lib.format.open_memmap(tmp, mode="w+", dtype=ecfg.dtype, shape=(num_nodes, emb.shape[1]))
            x[ids] = emb
            if cache is not None:
                cache.add(hashes[ids], emb)  # persisted per batch: a kill loses only batches in flight
            done += len(ids)
            if time.time() - last > 15 or done == n_todo:
                last = time.time()
                rate = done / max(last - t0, 1e-9)
                log.info("encoded %d/%d texts (%.0f/s, eta %.0fs)", done, n_todo, rate, (n_todo - done) / max(rate, 1e-9))
    if n_todo < num_nodes:
        if x is None:
            dim = _cached_dim(cache)
            x = np.lib.format.open_memmap(tmp, mode="w+", dtype=ecfg.dtype, shape=(num_nodes, dim))
        filled = cache.fill(hashes, ~todo, x)
        if filled != num_nodes - n_todo:
            raise GkdError(f"feature cache {cache.dir} lost rows during ingest ({filled} of {num_nodes - n_todo})")
    x.flush()
    dim = x.shape[1]
    del x
    tmp.replace(graph_dir / "x.npy")
    if cache is not None:
        cache.compact()
    wall = time.time() - t0
    return {"name": ecfg.name, "id": enc_id, "dim": int(dim), "dtype": ecfg.dtype,
            "max_seq_length": ecfg.max_seq_length if ecfg.name != "hashing" else None,
            "encoded": n_todo, "from_cache": num_nodes - n_todo, "wall_s": round(wall, 2),
            "texts_per_s": round(n_todo / wall, 1) if n_todo and wall > 0 else None}


def sorted_contains(sorted_values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(q,) bool: queries found in sorted_values (searchsorted; np.isin is slow on millions)."""
    if len(sorted_values) == 0:
        return np.zeros(len(queries), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_values, queries), len(sorted_values) - 1)
    return sorted_values[pos] == queries


def _cached_dim(cache: FeatureCache) -> int:
    import pyarrow.parquet as pq

    return pq.read_schema(cache.parts()[0]).field("emb").type.list_size


# ----------------------------------------------------------------------------- the stage


def clear_store(graph_dir: Path) -> None:
    for name in ("meta.json", "nodes", "edges", "csr.npz", "holdout_edges.npz", "x.npy", "x.npy.partial",
                 "partition.npy"):
        p = graph_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def run(cfg: ExperimentConfig) -> dict:
    """Ingest cfg.ingest.source into cfg.workdir/graph; returns meta.json's content."""
    icfg = cfg.ingest
    graph_dir = cfg.graph_dir
    fingerprint = content_hash(cfg, "ingest")
    if (graph_dir / "meta.json").is_file():
        meta = store.read_meta(graph_dir)
        if meta.get("config_hash") == fingerprint and not icfg.overwrite:
            log.info("graph store %s is up to date (config %s): skipping ingest", graph_dir, fingerprint)
            meta["skipped"] = True
            return meta
        if not icfg.overwrite:
            raise GkdError(
                f"{graph_dir} holds a graph ingested with another config ({meta.get('config_hash')} != "
                f"{fingerprint}): set ingest.overwrite=true (or --set ingest.overwrite=true) or use another workdir"
            )
    graph_dir.mkdir(parents=True, exist_ok=True)
    clear_store(graph_dir)
    init_ray(cfg.ray)
    timings, t = {}, time.time()

    nodes_ds, edges_ds, info = source_datasets(icfg)
    n = info["num_nodes"]
    write_shards(edges_ds, graph_dir / "edges", icfg.num_shards)
    timings["source_and_edges_s"] = round(time.time() - t, 2)

    t = time.time()
    edges = store.read_table(graph_dir / "edges")
    src, dst = edges["src"].to_numpy(), edges["dst"].to_numpy()
    num_edges = len(src)
    if num_edges and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n):
        raise DataError(f"source {icfg.source.kind}: an edge names a node outside 0..{n - 1}")
    del edges
    indptr, indices = store.build_csr(src, dst, n, directed=info["directed"])
    del src, dst
    indptr, indices, node, neighbor, between = store.cut_holdout(indptr, indices, info["holdout"])
    store.save_holdout(graph_dir / "holdout_edges.npz", node, neighbor)
    holdout = {"fraction": icfg.split.holdout_fraction, "nodes": int(len(info["holdout"])), "edges": int(len(node)),
               "edges_between_holdout_nodes_dropped": between}
    store.save_csr(graph_dir / "csr.npz", indptr, indices)
    timings["csr_s"] = round(time.time() - t, 2)
    log.info("CSR: %d nodes, %d entries; %d held-out nodes with %d edges into the graph (%.1fs)", n, len(indices),
             holdout["nodes"], holdout["edges"], timings["csr_s"])

    partition = None
    if icfg.partition.enabled:
        t = time.time()
        sym = (indptr, indices) if not info["directed"] else store.build_csr(
            *_csr_to_coo(indptr, indices), n, directed=False)
        part, cut = partition_graph(*sym, icfg.partition)
        np.save(graph_dir / "partition.npy", part)
        timings["partition_s"] = round(time.time() - t, 2)
        partition = {"method": "metis", "num_parts": icfg.partition.num_parts, "edge_cut": cut,
                     "part_sizes": np.bincount(part, minlength=icfg.partition.num_parts).tolist()}
        log.info("METIS: %d parts, edge cut %d (%.1fs)", icfg.partition.num_parts, cut, timings["partition_s"])
        import ray

        nodes_ds = nodes_ds.map_batches(_add_part, batch_format="pyarrow", fn_kwargs={"part": ray.put(part)})
        nodes_ds = nodes_ds.sort(["part", "node_id"])

    t = time.time()
    write_shards(nodes_ds, graph_dir / "nodes", icfg.num_shards)
    timings["nodes_s"] = round(time.time() - t, 2)

    enc = encode_nodes(graph_dir, icfg.encoder, n)
    timings["encode_s"] = enc["wall_s"]

    labels, split = store.node_arrays(graph_dir)
    stats = store.graph_stats(indptr, indices, labels, split)
    meta = {
        "name": cfg.name,
        "source": icfg.source.model_dump(mode="json"),
        "num_nodes": n,
        "num_edges": num_edges,
        "num_classes": len(info["class_names"]),
        "class_names": info["class_names"],
        "split_sizes": stats.pop("split_sizes"),
        "holdout": holdout,
        "encoder": enc,
        "schema_version": store.SCHEMA_VERSION,
        "directed": info["directed"],
        "num_shards": icfg.num_shards,
        "partition": partition,
        "stats": {**stats, **info["stats"]},
        "notes": info["notes"],
        "config_hash": fingerprint,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gkd_version": gkd.__version__,
        "timings": timings,
    }
    store.write_meta(graph_dir, meta)
    return meta


def _csr_to_coo(indptr: np.ndarray, indices: np.ndarray):
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr)), indices
