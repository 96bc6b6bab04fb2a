"""Ingest an ogbn-products-sized synthetic graph and record wall time and peak memory.

  python -m gkd.bench.ingest_scale --config jobs/configs/synthetic_products.yaml \
      --out bench/results/ingest_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import psutil

from gkd.bench.memory import GIB, PeakMemory
from gkd.config import load_config, parse_overrides
from gkd.runtime import setup_logging


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="jobs/configs/synthetic_products.yaml")
    ap.add_argument("--out", default="bench/results/ingest_scale.json")
    ap.add_argument("--workdir", default="bench/work/ingest_scale")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    setup_logging()
    overrides = [("workdir", args.workdir), ("ingest.overwrite", True), *parse_overrides(args.set)]
    cfg = load_config(args.config, overrides)

    from gkd.data import ingest

    t0 = time.time()
    with PeakMemory() as mem:
        meta = ingest.run(cfg)
    wall = time.time() - t0
    result = {
        "num_nodes": meta["num_nodes"],
        "num_edges": meta["num_edges"],
        "num_classes": meta["num_classes"],
        "wall_s": round(wall, 1),
        **mem.as_dict(),
        "stage_timings_s": meta["timings"],
        "num_csr_entries": meta["stats"]["num_csr_entries"],
        "encoder": meta["encoder"]["id"],
        "feature_shape": [meta["num_nodes"], meta["encoder"]["dim"]],
        "store_bytes": sum(f.stat().st_size for f in cfg.graph_dir.rglob("*") if f.is_file()),
        "command": "python -m gkd.bench.ingest_scale " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "machine": {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
                    "platform": platform.platform(), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
