"""Stream suite: rationale generation through Ray Data (1 and 2 LLM actors) vs a plain single-process loop,
on the same nodes, model and prompts; tokens/s and nodes/s.

  python -m gkd.bench.stream --profile full --out bench/results/stream.json --workdir bench/work/quality

The loop is `RationaleGenerator.run` over batches in this process with torch on every core; Ray Data is
`gkd.llm.stream.stream_nodes` with `RationaleActor`s, one CPU and `llm.torch_threads` threads each. Every
wall includes loading the model (the loop once, each actor once) and, for Ray, starting the Data pipeline.
Full: the Debian graph of the quality suite with the embedded SmolLM2; quick: its 300-node synthetic graph
and tiny Llama.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from gkd.bench.quality import world_graph
from gkd.bench.report import suite_main, write_result
from gkd.config import ExperimentConfig

PROFILES = {"full": {"nodes": 48}, "quick": {"nodes": 8}}


def _rates(nodes: int, tokens: int, wall: float) -> dict:
    return {"wall_s": round(wall, 1), "nodes_per_s": round(nodes / wall, 3), "tokens_per_s": round(tokens / wall, 1),
            "tokens": tokens}


def loop(cfg: ExperimentConfig, nodes: np.ndarray) -> dict:
    """One process, one model, torch on every core."""
    import torch

    from gkd.llm.rationale import build_generator

    threads = os.cpu_count()
    torch.set_num_threads(threads)
    t0 = time.time()
    gen = build_generator(cfg.graph_dir, cfg.llm.model_copy(update={"torch_threads": threads}), cfg.prompt,
                          cfg.rationale)
    b = cfg.rationale.batch_size
    tokens = sum(sum(gen.run(list(map(int, nodes[a:a + b])))["tokens"]) for a in range(0, len(nodes), b))
    return _rates(len(nodes), int(tokens), time.time() - t0) | {"torch_threads": threads}


def ray_data(cfg: ExperimentConfig, nodes: np.ndarray, actors: int) -> dict:
    """The rationale stage's own Ray Data path with `actors` actors."""
    from gkd.llm.rationale import RationaleActor
    from gkd.llm.stream import stream_nodes
    from gkd.runtime import init_ray

    init_ray(cfg.ray)
    r = cfg.rationale
    ctor = {"graph_dir": str(cfg.graph_dir.resolve()), "llm": cfg.llm.model_dump(mode="json"),
            "prompt": cfg.prompt.model_dump(mode="json"), "rationale": r.model_dump(mode="json")}
    t0, tokens = time.time(), 0
    for batch in stream_nodes(nodes, RationaleActor, ctor, batch_size=r.batch_size, num_actors=actors,
                              num_cpus=r.num_cpus_per_actor, num_gpus=r.num_gpus_per_actor,
                              what=f"rationale stream ({actors} actor(s))"):
        tokens += int(sum(batch["tokens"].to_pylist()))
    return _rates(len(nodes), tokens, time.time() - t0) | {"actors": actors,
                                                            "torch_threads_per_actor": cfg.llm.torch_threads}


def run(profile: str, out: Path, workdir: Path, overrides: list | None = None, argv: list[str] | None = None) -> dict:
    from gkd.data.store import TAG
    from gkd.llm.teacher import eval_nodes

    t0 = time.time()
    cfg = world_graph(profile, workdir, overrides)
    tag = TAG.load(cfg.graph_dir, features=False)
    nodes = eval_nodes(tag.labels, tag.split, PROFILES[profile]["nodes"], cfg.rationale.seed)
    base = loop(cfg, nodes)
    ray = {str(a): ray_data(cfg, nodes, a) for a in (1, 2)}
    result = {
        "profile": profile, "model": cfg.llm.model, "graph": tag.name, "nodes": int(len(nodes)),
        "batch_size": cfg.rationale.batch_size, "max_new_tokens": cfg.rationale.max_new_tokens,
        "loop": base, "ray": ray,
        "ray_vs_loop_tokens_per_s_ratio": round(ray["2"]["tokens_per_s"] / base["tokens_per_s"], 3),
        "two_vs_one_actor_ratio": round(ray["2"]["tokens_per_s"] / ray["1"]["tokens_per_s"], 3),
        "note": "walls include loading the model (the loop once, each actor once) and starting Ray Data; "
                "the loop uses torch on every core, each actor one CPU",
        "wall_s": round(time.time() - t0, 1),
    }
    return write_result(out, result, "gkd.bench.stream", argv)


def main(argv: list[str] | None = None) -> int:
    return suite_main(__doc__, "stream", PROFILES, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
