"""The ingest stage's record: a source -> the canonical graph store in <workdir>/graph."""

from __future__ import annotations

from pathlib import Path

from gkd.stages import Stage


def _run(cfg) -> dict:
    from gkd.data import ingest

    return ingest.run(cfg)


def format_summary(meta: dict) -> str:
    """A graph store's meta.json, for people."""
    s = meta.get("stats", {})
    sizes = meta["split_sizes"]
    enc = meta["encoder"]
    lines = [
        f"graph {meta['name']!r} from {meta['source']['kind']}" + (" (unchanged, ingest skipped)" if meta.get("skipped") else ""),
        f"  nodes            {meta['num_nodes']:,}",
        f"  edges            {meta['num_edges']:,} rows, {s.get('num_csr_entries', 0):,} CSR entries"
        + (" (directed)" if meta["directed"] else " (undirected)"),
        f"  classes          {meta['num_classes']}",
        "  splits           " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()),
        f"  isolated nodes   {s.get('isolated_nodes', 0):,}",
        f"  mean degree      {s.get('mean_degree', 0):.2f} (max {s.get('max_degree', 0):,})",
        f"  label homophily  {s.get('label_homophily')}",
        f"  features         {meta['num_nodes']:,} x {enc['dim']} {enc['dtype']} ({enc['id']}; "
        f"{enc.get('encoded', 0):,} encoded, {enc.get('from_cache', 0):,} from cache)",
    ]
    held = meta.get("holdout") or {}
    if held.get("nodes"):
        lines.append(f"  held out         {held['nodes']:,} test nodes, {held['edges']:,} edges into the graph "
                     "(holdout_edges.npz)")
    if meta.get("partition"):
        p = meta["partition"]
        lines.append(f"  partition        METIS {p['num_parts']} parts, edge cut {p['edge_cut']:,}")
    for note in meta.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def _line(s: dict) -> str:
    return f"{s.get('num_nodes', 0):,} nodes, {s.get('num_edges', 0):,} edges, {s.get('num_classes')} classes"


def _report(cfg, meta: dict) -> str:
    return f"{format_summary(meta)}\n  store            {cfg.graph_dir}"


def _artifacts(cfg, summary: dict, tmp: Path) -> list:
    return [cfg.graph_dir / "meta.json"]


INGEST = Stage(
    name="ingest", dir="graph", sections=("ingest",), inputs=(), run=_run, line=_line, report=_report,
    artifacts=_artifacts, wipe_on_change=False, help="source -> canonical graph store (Ray Data)")
