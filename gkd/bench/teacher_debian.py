"""Teacher on the real Debian graph with the real SmolLM2: zero-shot vs tuned accuracy, rationale
throughput, and the Ray Data pipeline vs a plain single-process loop on the same nodes.

  python -m gkd.bench.teacher_debian --config jobs/configs/debian.yaml --out bench/results/teacher_debian.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from gkd.bench.report import write_result

from gkd.config import load_config, parse_overrides
from gkd.runtime import setup_logging


def loop_vs_ray(cfg, nodes: np.ndarray) -> dict:
    """Rationales for the same nodes: one process, one model, torch on every core vs the actor pool."""
    import torch

    from gkd.llm import rationale

    torch.set_num_threads(os.cpu_count())
    t0 = time.time()
    gen = rationale.build_generator(cfg.graph_dir, cfg.llm.model_copy(update={"torch_threads": os.cpu_count()}),
                                    cfg.prompt, cfg.rationale)
    rows = [gen.run(list(map(int, nodes[a:a + cfg.rationale.batch_size])))
            for a in range(0, len(nodes), cfg.rationale.batch_size)]
    loop_wall = time.time() - t0
    loop_tokens = sum(sum(r["tokens"]) for r in rows)
    del gen

    from gkd.llm.stream import stream_nodes

    t0 = time.time()
    ctor = {"graph_dir": str(cfg.graph_dir.resolve()), "llm": cfg.llm.model_dump(mode="json"),
            "prompt": cfg.prompt.model_dump(mode="json"), "rationale": cfg.rationale.model_dump(mode="json")}
    ray_tokens = 0
    for batch in stream_nodes(nodes, rationale.RationaleActor, ctor, batch_size=cfg.rationale.batch_size,
                              num_actors=cfg.rationale.num_actors, num_cpus=cfg.rationale.num_cpus_per_actor,
                              num_gpus=cfg.rationale.num_gpus_per_actor, what="rationale (ray, bench)"):
        ray_tokens += int(sum(batch["tokens"].to_pylist()))
    ray_wall = time.time() - t0
    return {"nodes": int(len(nodes)),
            "loop": {"wall_s": round(loop_wall, 1), "nodes_per_s": round(len(nodes) / loop_wall, 3),
                     "tokens_per_s": round(loop_tokens / loop_wall, 1), "torch_threads": os.cpu_count()},
            "ray": {"wall_s": round(ray_wall, 1), "nodes_per_s": round(len(nodes) / ray_wall, 3),
                    "tokens_per_s": round(ray_tokens / ray_wall, 1), "actors": cfg.rationale.num_actors,
                    "torch_threads_per_actor": cfg.llm.torch_threads},
            "note": "both walls include loading the model (the loop once, each actor once)"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="jobs/configs/debian.yaml")
    ap.add_argument("--out", default="bench/results/teacher_debian.json")
    ap.add_argument("--workdir", default="bench/work/teacher_debian")
    ap.add_argument("--compare-nodes", type=int, default=48, help="nodes for the loop-vs-Ray comparison")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    setup_logging()
    cfg = load_config(args.config, [("workdir", args.workdir), *parse_overrides(args.set)])

    from gkd.data import ingest
    from gkd.llm import rationale, teacher

    t0 = time.time()
    ingest.run(cfg)
    metrics = teacher.run(cfg)
    summary = rationale.run(cfg)
    table = rationale.read_rationales(cfg.workdir)
    nodes = table["node_id"].to_numpy()[: args.compare_nodes]
    cmp = loop_vs_ray(cfg, nodes)
    result = {
        "zero_shot_acc": metrics["zero_shot"]["acc"], "zero_shot_macro_f1": metrics["zero_shot"]["macro_f1"],
        "tuned_acc": metrics["tuned"]["acc"], "tuned_macro_f1": metrics["tuned"]["macro_f1"],
        "test_nodes": metrics["test_nodes"],
        "teacher": metrics,
        "rationale_nodes_per_s": summary["nodes_per_s"], "rationale_tokens_per_s": summary["tokens_per_s"],
        "rationale": summary,
        "ray_vs_loop_ratio": round(cmp["ray"]["nodes_per_s"] / cmp["loop"]["nodes_per_s"], 3),
        "ray_vs_loop": cmp,
        "total_wall_s": round(time.time() - t0, 1),
    }
    from gkd.data.store import read_meta

    result["num_classes"] = read_meta(cfg.graph_dir)["num_classes"]
    write_result(args.out, result, "gkd.bench.teacher_debian", argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
