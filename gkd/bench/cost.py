"""Cost suite: the distilled student vs the teacher LLM on the same nodes and machine.

Both classify the same sample of labelled test nodes in this one process, with the same number of
torch threads:
- the teacher (the tuned checkpoint, else `llm.model`) exactly as the teacher stage scores a node:
  its K-hop classification prompt read by the checkpoint's read-out (`TeacherReadout.score`): the
  classification head of a `teacher.scoring: head` checkpoint, else every class name scored as a
  continuation (reported as `scoring`);
- the student exactly as Serve answers a node it has not cached: the full L-hop neighbourhood of the
  batch (fan-out -1, no sampling) and one forward pass.
Reported per model: nodes/s in batches, latency of a single node, parameters, the peak memory rise
of this process while it ran, and its accuracy on those nodes. The headline is
`student_vs_teacher_nodes_per_s_ratio`. The student's full-graph layer-wise inference rate is
reported too (every node at once, the cheapest way to label a whole graph).

  python -m gkd.bench.cost --config jobs/configs/demo.yaml --out bench/results/cost.json
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np

from gkd.bench.memory import PeakMemory
from gkd.bench.report import write_result

log = logging.getLogger("gkd.bench.cost")


def _rate(fn, items: list, batch: int, repeats: int = 1) -> tuple[float, list]:
    """nodes/s of fn over `items` in batches (after one warm-up batch), and fn's outputs."""
    fn(items[:batch])
    outs = []
    t = time.perf_counter()
    for _ in range(repeats):
        outs = []
        for s in range(0, len(items), batch):
            outs.append(fn(items[s : s + batch]))
    wall = time.perf_counter() - t
    return len(items) * repeats / wall, outs


def _latency_ms(fn, items: list) -> float:
    """Median wall time of classifying one node alone, in ms."""
    times = []
    for n in items:
        t = time.perf_counter()
        fn([n])
        times.append(time.perf_counter() - t)
    return round(1000 * float(np.median(times)), 2)


def student_side(cfg, tag, nodes: np.ndarray, batch: int, checkpoint: Path) -> dict:
    import torch
    from torch_geometric.sampler import NodeSamplerInput

    from gkd.gnn.distill import load_student
    from gkd.gnn.infer import layerwise_inference
    from gkd.gnn.sampler import CSRSampler

    gnn, info = load_student(checkpoint)
    x = torch.from_numpy(np.array(tag.x, dtype=np.float32))  # a writable copy of the memory-mapped features
    sampler = CSRSampler(tag.indptr, tag.indices, [-1] * gnn.num_layers)

    @torch.no_grad()
    def classify(ids: list[int]) -> np.ndarray:
        sub = sampler.sample_from_nodes(NodeSamplerInput(input_id=None, node=torch.as_tensor(ids)))
        logits, _ = gnn(x[sub.node], torch.stack([sub.row, sub.col]))
        return logits[: len(ids)].argmax(1).numpy()

    items = [int(n) for n in nodes]
    with PeakMemory(interval=0.05, tree=False) as mem:
        rate, outs = _rate(classify, items, batch, repeats=5)
        latency = _latency_ms(classify, items[:32])
        t = time.perf_counter()
        logits, _ = layerwise_inference(gnn, lambda ids: x[ids], tag.indptr, tag.indices,
                                        batch_size=cfg.distill.infer_batch_size)
        full_s = time.perf_counter() - t
    pred = np.concatenate(outs)
    return {"model": f"{info.get('gnn')}/{info.get('method')} student", "checkpoint": str(checkpoint),
            "parameters": int(sum(p.numel() for p in gnn.parameters())),
            "nodes_per_s": round(rate, 1), "latency_ms_one_node": latency, "peak_memory_rise_mib": mem.rise_mib,
            "acc": round(float((pred == tag.labels[nodes]).mean()), 4),
            "full_graph": {"nodes": tag.num_nodes, "wall_s": round(full_s, 3),
                           "nodes_per_s": round(tag.num_nodes / full_s, 1),
                           "matches_batched": bool((logits[nodes].argmax(1) == pred).all())}}


def teacher_side(cfg, tag, nodes: np.ndarray, batch: int, model_path: str) -> dict:
    from gkd.llm.score import is_classifier
    from gkd.llm.teacher import TeacherActor

    with PeakMemory(interval=0.05, tree=False) as mem:
        actor = TeacherActor(str(cfg.graph_dir.resolve()),
                             cfg.llm.model_copy(update={"model": model_path}).model_dump(mode="json"),
                             cfg.prompt.model_dump(mode="json"), cfg.prompt.hops, None, features=False)
        items = [int(n) for n in nodes]
        rate, outs = _rate(lambda ids: actor({"node_id": ids})["pred"], items, batch)
        latency = _latency_ms(lambda ids: actor({"node_id": ids}), items[:4])
    pred = np.concatenate(outs)
    model = actor.readout.model
    return {"model": model_path, "scoring": "head" if is_classifier(model) else "names",
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "nodes_per_s": round(rate, 3), "latency_ms_one_node": latency, "peak_memory_rise_mib": mem.rise_mib,
            "acc": round(float((pred == tag.labels[nodes]).mean()), 4)}


def run(cfg, num_nodes: int, student_batch: int, teacher_batch: int, threads: int,
        checkpoint: Path | None = None) -> dict:
    import torch

    from gkd.data.store import TAG
    from gkd.errors import GkdError
    from gkd.llm.models import resolve_model
    from gkd.llm.teacher import eval_nodes

    torch.set_num_threads(threads)
    from gkd.gnn.stage import student_checkpoint
    from gkd.llm.stage import tuned_teacher

    checkpoint = Path(checkpoint or student_checkpoint(cfg))
    if not checkpoint.is_dir():
        raise GkdError(f"{checkpoint} is missing: run `gkd run --config ...` (or make demo) first")
    tuned = tuned_teacher(cfg)
    model_path = str(tuned) if tuned is not None else str(resolve_model(cfg.llm.model, cfg.llm.cache_dir))
    tag = TAG.load(cfg.graph_dir)
    nodes = eval_nodes(tag.labels, tag.split, num_nodes, cfg.teacher.seed)
    log.info("cost: %d test nodes, %d torch thread(s)", len(nodes), threads)
    student = student_side(cfg, tag, nodes, student_batch, checkpoint)
    log.info("student: %s", student)
    teacher = teacher_side(cfg, tag, nodes, teacher_batch, model_path)
    log.info("teacher: %s", teacher)
    return {
        "graph": tag.name, "nodes": int(len(nodes)), "torch_threads": threads,
        "student_batch": student_batch, "teacher_batch": teacher_batch,
        "student": student, "teacher": teacher,
        "student_vs_teacher_nodes_per_s_ratio": round(student["nodes_per_s"] / teacher["nodes_per_s"], 1),
        "student_full_graph_vs_teacher_nodes_per_s_ratio":
            round(student["full_graph"]["nodes_per_s"] / teacher["nodes_per_s"], 1),
        "teacher_vs_student_latency_ratio": round(teacher["latency_ms_one_node"] / student["latency_ms_one_node"], 1),
        "teacher_vs_student_parameters_ratio": round(teacher["parameters"] / student["parameters"], 1),
    }


def main(argv: list[str] | None = None) -> dict:
    from gkd.cli import config_from_args
    from gkd.runtime import setup_logging

    p = argparse.ArgumentParser(prog="python -m gkd.bench.cost", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="an experiment with graph/, teacher/ and student/ in its work dir "
                   "(e.g. jobs/configs/demo.yaml after make demo); default: the quality suite's world of --profile")
    p.add_argument("--profile", choices=["full", "quick"], default="full",
                   help="without --config: the Debian world of the quality suite (full) or its 300-node one (quick)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--out", dest="result", default="bench/results/cost.json")
    p.add_argument("--workdir", help="work dir with graph/, teacher/ and student/ (default: the config's)")
    p.add_argument("--nodes", type=int, default=64, help="test nodes both models classify")
    p.add_argument("--student-batch", type=int, default=64)
    p.add_argument("--teacher-batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1, help="torch threads for each model")
    args = p.parse_args(argv)
    setup_logging("INFO")
    checkpoint = None
    if args.config:
        args.out = args.workdir
        cfg = config_from_args(args)
    else:
        from gkd.bench.quality import world_student

        cfg, checkpoint = world_student(args.profile, args.workdir or "bench/work/quality")
        if args.profile == "quick":
            args.nodes = min(args.nodes, 16)
    result = {"profile": args.profile if not args.config else "full",
              **run(cfg, args.nodes, args.student_batch, args.teacher_batch, args.threads, checkpoint)}
    return write_result(args.result, result, "gkd.bench.cost", argv)


# ---------------------------------------------------------------- BENCHMARKS.md section (gkd.bench.markdown)


MARKDOWN_TITLE = "Cost: student vs teacher inference"


def markdown_headline(r: dict) -> tuple[str, str]:
    from gkd.bench.markdown import num, ratio

    return (ratio(r["student_vs_teacher_nodes_per_s_ratio"]),
            f"student nodes/s vs the tuned teacher LLM's, classifying the same {num(r['nodes'])} nodes of "
            f"{r['graph']} (batches of {r['student_batch']} and {r['teacher_batch']}, "
            f"{r['torch_threads']} torch thread each)")


def markdown_section(r: dict, plot) -> list[str]:
    from gkd.bench.markdown import bold, num, ratio, seconds, table, value_bars

    s, t = r["student"], r["teacher"]

    def vs(key: str, stored: str | None = None, student_first: bool = False) -> str:
        """'teacher 997x the student's' from the stored ratio when there is one, else from the two values."""
        a, b = (s, t) if student_first else (t, s)
        value = r[stored] if stored in r else (a[key] / b[key] if b.get(key) else None)
        if value is None:
            return "–"
        who, other = ("student", "teacher") if student_first else ("teacher", "student")
        return f"{who} {ratio(value)} the {other}'s"

    out = [f"Both models classify the same {num(r['nodes'])} nodes of **{r['graph']}** "
           f"(student batches of {r['student_batch']}, teacher batches of {r['teacher_batch']}, "
           f"{r['torch_threads']} torch thread each). Student: {s['model']}; teacher: `{t['model']}`.", ""]
    out += table(["", "student", "teacher", "ratio"], [
        ["parameters", num(s["parameters"]), num(t["parameters"]),
         vs("parameters", "teacher_vs_student_parameters_ratio")],
        ["nodes/s", num(s["nodes_per_s"]), num(t["nodes_per_s"]),
         bold(vs("nodes_per_s", "student_vs_teacher_nodes_per_s_ratio", student_first=True))],
        ["latency, one node (ms)", num(s["latency_ms_one_node"]), num(t["latency_ms_one_node"]),
         vs("latency_ms_one_node", "teacher_vs_student_latency_ratio")],
        ["peak memory rise (MiB)", num(s["peak_memory_rise_mib"]), num(t["peak_memory_rise_mib"]),
         vs("peak_memory_rise_mib")],
        [f"accuracy on the {num(r['nodes'])} nodes", f"{s['acc']:.3f}", f"{t['acc']:.3f}",
         vs("acc", student_first=True)],
    ])
    fg = s.get("full_graph")
    if fg:
        out += [f"Full-graph layer-wise inference: the student labels all {num(fg['nodes'])} nodes in "
                f"{seconds(fg['wall_s'])}, {num(fg['nodes_per_s'])} nodes/s"
                + (f", **{ratio(r['student_full_graph_vs_teacher_nodes_per_s_ratio'])}** the teacher's"
                   if "student_full_graph_vs_teacher_nodes_per_s_ratio" in r else "")
                + f"; same predictions as the batched path: {num(fg.get('matches_batched'))}.", ""]
    names = ["teacher LLM", f"student (batches of {r['student_batch']})"]
    values = [t["nodes_per_s"], s["nodes_per_s"]]
    if fg:
        names.append("student (full graph)")
        values.append(fg["nodes_per_s"])
    fig = value_bars(names, values, ["tab:red"] + ["tab:blue"] * (len(values) - 1), "nodes/s (log scale)",
                     f"{r['graph']}: inference throughput", log=True)
    out.append(plot(fig, "cost_nodes_per_s.png", "nodes/s, student vs teacher"))
    return out


def markdown_losses(r: dict) -> list[str]:
    from gkd.bench.markdown import num, ratio

    s, t = r["student"], r["teacher"]
    out = []
    if s["acc"] < t["acc"]:
        out.append(f"The student is less accurate than the teacher on the same {num(r['nodes'])} nodes "
                   f"({s['acc']:.3f} vs {t['acc']:.3f}): its {ratio(r['student_vs_teacher_nodes_per_s_ratio'])} "
                   "speed is bought with accuracy.")
    if s["peak_memory_rise_mib"] > t["peak_memory_rise_mib"]:
        out.append(f"The student's peak memory rise ({num(s['peak_memory_rise_mib'])} MiB) exceeds the teacher's "
                   f"({num(t['peak_memory_rise_mib'])} MiB).")
    return out


if __name__ == "__main__":
    main()
