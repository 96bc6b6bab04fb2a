"""Neighbour-sampling throughput: gkd's CSRSampler (NodeLoader) vs PyG's NeighborLoader on torch-sparse.

  python -m gkd.bench.sampler --out bench/results/sampler.json

Same graph, seeds, fan-outs and batch size; each side in its own subprocess with one torch thread.
The PyG side imports torch-sparse from ~/.cache/gkd-bench-wheels/site (wheels built from source,
installed there once), so the project venv never sees it. Graphs: (a) 200k nodes / 4M random
undirected edges (DESIGN's orientation number), (b) the store under --graph-dir when it exists.
One side alone (prints its JSON): python -m gkd.bench.sampler --side ours --graph <csr.npz>
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from gkd.bench.report import write_result

log = logging.getLogger("gkd.bench.sampler")

WHEEL_DIR = Path("~/.cache/gkd-bench-wheels").expanduser()
BUILD_COMMANDS = [
    "MAX_JOBS=2 .venv/bin/pip wheel --no-build-isolation --no-deps torch-scatter==2.1.2 -w ~/.cache/gkd-bench-wheels",
    "MAX_JOBS=2 .venv/bin/pip wheel --no-build-isolation --no-deps torch-sparse==0.6.18 -w ~/.cache/gkd-bench-wheels",
]


def orientation_csr(path: Path, num_nodes: int = 200_000, num_edges: int = 4_000_000, seed: int = 0) -> Path:
    """DESIGN's orientation graph (random edges, made undirected) as csr.npz, built once."""
    from gkd.data.store import build_csr, save_csr

    if not path.is_file():
        rng = np.random.default_rng(seed)
        src, dst = rng.integers(0, num_nodes, num_edges), rng.integers(0, num_nodes, num_edges)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_csr(path, *build_csr(src, dst, num_nodes))
    return path


def torch_sparse_site(wheel_dir: Path = WHEEL_DIR) -> Path | None:
    """The --target dir holding torch-sparse/-scatter (installed from the wheels once), or None."""
    site = wheel_dir / "site"
    if (site / "torch_sparse").is_dir():
        return site
    wheels = sorted(wheel_dir.glob("torch_scatter-2.1.2-*.whl")) + sorted(wheel_dir.glob("torch_sparse-0.6.18-*.whl"))
    if len(wheels) < 2:
        return None
    log.info("installing %s into %s", [w.name for w in wheels], site)
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), *map(str, wheels)],
                   check=True)
    return site


def make_loader(side: str, indptr: np.ndarray, indices: np.ndarray, seeds, fanouts: list[int], batch_size: int):
    """'ours': CSRSampler in NodeLoader; 'pyg': NeighborLoader over edge_index (torch-sparse backend)."""
    import torch

    if side == "ours":
        from torch_geometric.loader import NodeLoader

        from gkd.gnn.sampler import CSRSampler, node_data

        sampler = CSRSampler(indptr, indices, fanouts, seed=0)
        return NodeLoader(node_data(num_nodes=len(indptr) - 1), node_sampler=sampler, input_nodes=seeds,
                          batch_size=batch_size, shuffle=False), "gkd CSRSampler"
    import torch_geometric.typing
    from torch_geometric.data import Data
    from torch_geometric.loader import NeighborLoader

    if not torch_geometric.typing.WITH_TORCH_SPARSE or torch_geometric.typing.WITH_PYG_LIB:
        raise SystemExit(
            f"--side pyg needs torch-sparse importable and pyg-lib absent (WITH_TORCH_SPARSE="
            f"{torch_geometric.typing.WITH_TORCH_SPARSE}, WITH_PYG_LIB={torch_geometric.typing.WITH_PYG_LIB}); "
            f"run it through `python -m gkd.bench.sampler`, which puts {WHEEL_DIR / 'site'} on PYTHONPATH"
        )
    import torch_sparse

    n = len(indptr) - 1
    col = torch.repeat_interleave(torch.arange(n), torch.from_numpy(np.diff(indptr)))
    data = Data(edge_index=torch.stack([torch.from_numpy(indices).long(), col]), num_nodes=n)
    loader = NeighborLoader(data, num_neighbors=fanouts, input_nodes=seeds, batch_size=batch_size, shuffle=False)
    return loader, f"PyG NeighborLoader, torch-sparse {torch_sparse.__version__}"


def run_side(side: str, graph: Path, fanouts: list[int], batch_size: int, num_seeds: int, min_seconds: float) -> dict:
    """In this process: load, warm up one epoch, time whole epochs for >= min_seconds."""
    import torch

    torch.set_num_threads(1)
    import torch_geometric.loader  # noqa: F401  (imports before the baseline: both sides pay them)

    import gkd.gnn.sampler  # noqa: F401

    with np.load(graph) as z:
        indptr, indices = z["indptr"], z["indices"]
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = len(indptr) - 1
    seeds = torch.from_numpy(np.random.default_rng(0).permutation(n)[: min(num_seeds, n)])
    t_build = time.perf_counter()
    loader, backend = make_loader(side, indptr, indices, seeds, fanouts, batch_size)
    build_s = time.perf_counter() - t_build
    for _ in loader:  # warm-up epoch
        pass
    batches = seen = nodes = edges = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < min_seconds:
        for b in loader:
            batches += 1
            seen += b.batch_size
            nodes += b.num_nodes
            edges += b.edge_index.size(1)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "backend": backend,
        "seeds_per_s": round(seen / wall, 1),
        "seeds_per_cpu_s": round(seen / cpu, 1),
        "timed_s": round(wall, 2),
        "timed_batches": batches,
        "seeds_per_epoch": len(seeds),
        "mean_sampled_nodes_per_batch": round(nodes / batches, 1),
        "mean_sampled_edges_per_batch": round(edges / batches, 1),
        "peak_rss_rise_mib": round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kib) / 1024, 1),
        "loader_build_s": round(build_s, 2),
        "loadavg_1m_after": round(os.getloadavg()[0], 2),
    }


def measure(side: str, graph: Path, args, site: Path | None) -> dict:
    """run_side in a fresh `python -m gkd.bench.sampler --side ...` subprocess; its JSON back."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if side == "pyg":
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH", "")) if p)
    cmd = [sys.executable, "-m", "gkd.bench.sampler", "--side", side, "--graph", str(graph),
           "--fanouts", args.fanouts, "--batch-size", str(args.batch_size), "--num-seeds", str(args.num_seeds),
           "--min-seconds", str(args.min_seconds)]
    log.info("%s side on %s", side, graph)
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode} (see its stderr above)")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="bench/results/sampler.json")
    ap.add_argument("--workdir", default="bench/work/sampler", help="where graph (a) is cached")
    ap.add_argument("--graph-dir", default="bench/work/quality/graph", help="graph store for graph (b)")
    ap.add_argument("--profile", choices=["full", "quick"], default="full",
                    help="quick: graph (b) only (the quality suite's quick graph when --graph-dir has none), "
                         "2,048 seeds, 1 s per side, PyG only if its wheels are built (a smoke test)")
    ap.add_argument("--fanouts", default="15,10")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--num-seeds", type=int, default=16_384, help="seeds per epoch (a seeded random subset)")
    ap.add_argument("--min-seconds", type=float, default=10.0)
    ap.add_argument("--side", choices=["ours", "pyg"], help="run one side in this process, print its JSON")
    ap.add_argument("--graph", type=Path, help="csr.npz for --side (default: graph (a))")
    args = ap.parse_args(argv)
    from gkd.runtime import setup_logging

    setup_logging()
    fanouts = [int(f) for f in args.fanouts.split(",")]

    if args.side:
        graph = args.graph or orientation_csr(Path(args.workdir) / "orientation.npz")
        print(json.dumps(run_side(args.side, graph, fanouts, args.batch_size, args.num_seeds, args.min_seconds)))
        return 0

    site = torch_sparse_site()
    if args.profile == "quick":
        return quick(args, site, argv)
    if site is None:
        print(f"torch-sparse wheels are not in {WHEEL_DIR} yet (torch_scatter-2.1.2-*.whl and "
              f"torch_sparse-0.6.18-*.whl). Build them (about 40 min on 2 cores) with:\n  "
              + "\n  ".join(BUILD_COMMANDS) + "\nthen rerun this command.", file=sys.stderr)
        return 2

    graphs = [("orientation-200k-4M", orientation_csr(Path(args.workdir) / "orientation.npz"))]
    debian = Path(args.graph_dir) / "csr.npz"
    if debian.is_file():
        meta = Path(args.graph_dir) / "meta.json"
        graphs.append((json.loads(meta.read_text())["name"] if meta.is_file() else str(args.graph_dir), debian))
    else:
        log.info("no graph store at %s: graph (b) skipped", args.graph_dir)

    result = {"profile": "full", "torch_threads": 1, "graphs": [compare(name, path, args, site) for name, path in graphs]}
    result["seeds_per_s_ratio_vs_pyg"] = result["graphs"][0]["seeds_per_s_ratio_vs_pyg"]
    write_result(args.out, result, "gkd.bench.sampler", argv)
    return 0


def compare(name: str, path: Path, args, site: Path | None) -> dict:
    """Both sides on one CSR (PyG recorded as skipped without its wheels)."""
    with np.load(path) as z:
        num_nodes, num_edges = len(z["indptr"]) - 1, len(z["indices"])
    ours = measure("ours", path, args, site)
    pyg = measure("pyg", path, args, site) if site else {"skipped": f"torch-sparse wheels not built in {WHEEL_DIR}"}
    return {"name": name, "csr": str(path), "num_nodes": num_nodes, "num_edges": num_edges,  # CSR entries
            "fanouts": [int(f) for f in args.fanouts.split(",")], "batch_size": args.batch_size, "ours": ours,
            "pyg": pyg, "seeds_per_s_ratio_vs_pyg": round(ours["seeds_per_s"] / pyg["seeds_per_s"], 2) if site else None}


def quick(args, site: Path | None, argv) -> int:
    """The smoke test: graph (b) only, small and short."""
    graph_dir = Path(args.graph_dir)
    if not (graph_dir / "csr.npz").is_file():
        from gkd.bench.quality import world_graph

        graph_dir = world_graph("quick", Path(args.workdir) / "quick").graph_dir
    args.num_seeds, args.min_seconds, args.batch_size = min(args.num_seeds, 2048), 1.0, min(args.batch_size, 256)
    g = compare(json.loads((graph_dir / "meta.json").read_text())["name"], graph_dir / "csr.npz", args, site)
    result = {"profile": "quick", "torch_threads": 1, "graphs": [g],
              "seeds_per_s_ratio_vs_pyg": g["seeds_per_s_ratio_vs_pyg"]}
    write_result(args.out, result, "gkd.bench.sampler", argv)
    return 0


# ---------------------------------------------------------------- BENCHMARKS.md section (gkd.bench.markdown)


MARKDOWN_TITLE = "Sampler: gkd vs PyG neighbour sampling"


def _pyg(g: dict) -> dict | None:
    """The PyG measurement of a graph, None when it was not run or skipped."""
    pyg = g.get("pyg")
    return pyg if pyg and "seeds_per_s" in pyg else None


def markdown_headline(r: dict) -> tuple[str, str]:
    from gkd.bench.markdown import num, ratio

    measured = [g for g in r["graphs"] if _pyg(g)]
    if not measured or "seeds_per_s_ratio_vs_pyg" not in r:
        return "–", "gkd CSRSampler vs PyG NeighborLoader: PyG not run"
    g = next((g for g in measured if g.get("seeds_per_s_ratio_vs_pyg") == r["seeds_per_s_ratio_vs_pyg"]), measured[0])
    return (ratio(r["seeds_per_s_ratio_vs_pyg"]),
            f"seeds/s of gkd's CSRSampler vs PyG's NeighborLoader on {g['name']} ({num(g['num_nodes'])} nodes, "
            f"{num(g['num_edges'])} edges, fanouts {g['fanouts']}, batch {g['batch_size']})")


def markdown_section(r: dict, plot) -> list[str]:
    from gkd.bench.markdown import bars, bold, num, ratio, seconds, table
    from gkd.plots import pyplot

    out = [f"Neighbour sampling for one epoch of seed batches, {r.get('torch_threads', '?')} torch thread; "
           "memory is the peak RSS rise while sampling.", ""]
    rows = []
    for g in r["graphs"]:
        graph = f"{g['name']} ({num(g['num_nodes'])} nodes, {num(g['num_edges'])} edges, fanouts {g['fanouts']}, " \
                f"batch {g['batch_size']})"
        pyg = g.get("pyg")
        for key, m in (("ours", g["ours"]), ("pyg", pyg)):
            if key == "pyg" and not _pyg(g):
                why = (pyg or {}).get("skipped", "not run")
                rows.append(["", f"PyG: skipped ({why})", "–", "–", "–", "–", "–", "–"])
                continue
            rows.append([graph if key == "ours" else "", m["backend"], num(m["seeds_per_s"]),
                         num(m["peak_rss_rise_mib"]), num(m["mean_sampled_nodes_per_batch"]),
                         num(m["mean_sampled_edges_per_batch"]), seconds(m.get("loader_build_s", 0.0)),
                         bold(ratio(g.get("seeds_per_s_ratio_vs_pyg", m["seeds_per_s"] / pyg["seeds_per_s"])))
                         if key == "ours" and _pyg(g) else ""])
    out += table(["graph", "backend", "seeds/s", "peak RSS rise (MiB)", "sampled nodes / batch",
                  "sampled edges / batch", "loader build", "ours vs PyG"], rows)
    plt = pyplot()
    names = [g["name"] for g in r["graphs"]]
    fig, ax = plt.subplots(figsize=(max(5.0, 2.2 * len(names)), 3.6))
    bars(ax, names, {"gkd CSRSampler": [g["ours"]["seeds_per_s"] for g in r["graphs"]],
                     "PyG NeighborLoader": [_pyg(g)["seeds_per_s"] if _pyg(g) else np.nan for g in r["graphs"]]})
    ax.set_ylabel("seeds/s")
    ax.set_title("neighbour sampling throughput")
    ax.legend()
    out.append(plot(fig, "sampler_seeds_per_s.png", "seeds/s, gkd vs PyG"))
    return out


def markdown_losses(r: dict) -> list[str]:
    from gkd.bench.markdown import num, ratio

    out = []
    for g in r["graphs"]:
        pyg = _pyg(g)
        if not pyg:
            continue
        ours = g["ours"]
        if ours["seeds_per_s"] < pyg["seeds_per_s"]:
            out.append(f"On {g['name']} gkd's sampler is slower than PyG: {num(ours['seeds_per_s'])} vs "
                       f"{num(pyg['seeds_per_s'])} seeds/s ({ratio(ours['seeds_per_s'] / pyg['seeds_per_s'])}).")
        if ours["peak_rss_rise_mib"] > pyg["peak_rss_rise_mib"]:
            out.append(f"On {g['name']} gkd's sampler uses more memory than PyG: peak RSS rise "
                       f"{num(ours['peak_rss_rise_mib'])} vs {num(pyg['peak_rss_rise_mib'])} MiB.")
    return out


if __name__ == "__main__":
    sys.exit(main())
