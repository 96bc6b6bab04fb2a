"""Ingest an ogbn-products-sized synthetic graph and record wall time and peak memory.

  python -m gkd.bench.ingest_scale --config jobs/configs/synthetic_products.yaml \
      --out bench/results/ingest_scale.json
"""

from __future__ import annotations

import argparse
import sys
import time

from gkd.bench.memory import PeakMemory
from gkd.bench.report import write_result
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
    }
    write_result(args.out, result, "gkd.bench.ingest_scale", argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
