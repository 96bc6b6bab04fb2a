"""Stream suite: rationale generation through Ray Data (1 and 2 LLM actors) vs a plain single-process loop,
on the same nodes, model and prompts; tokens/s and nodes/s. Then the teacher outputs (soft labels + per-hop
features F_0..F_K) of the same nodes with both readouts, one_pass vs three_pass: nodes/s and accuracy.

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


def teacher_outputs(cfg: ExperimentConfig, nodes: np.ndarray, labels: np.ndarray) -> dict:
    """TeacherReadout.run over `nodes` in batches of rationale.batch_size, one process, torch on every core,
    the model loaded once (outside the walls) and warmed up on one batch; per readout: nodes/s and the
    accuracy of its soft labels on the nodes.

    three_pass / one_pass: class-name scoring (the base model; three_pass is the readout gkd had before),
    both on the same K-hop prompt, so their predictions agree. head_one_pass: a classifier teacher (the
    teacher stage's tuned one when it has a head, else the base model with an untrained head, timed only:
    acc None), one pass, its prompt without the class list; the node and neighbour budget is the same."""
    import torch

    from gkd.data.store import TAG
    from gkd.llm.features import TeacherReadout, evaluate
    from gkd.llm.models import load_teacher
    from gkd.llm.prompts import NodePromptBuilder

    threads = os.cpu_count()
    torch.set_num_threads(threads)
    tag = TAG.load(cfg.graph_dir, features=False)
    model, tok = load_teacher(cfg.llm.model_copy(update={"torch_threads": threads}))
    builder = NodePromptBuilder(tag, tag.texts(), tag.class_names, tok, cfg.prompt)
    head, trained = _head_teacher(cfg, tag.num_classes, tok)
    head_builder = NodePromptBuilder(tag, tag.texts(), tag.class_names, tok, cfg.prompt, class_list=False)
    b = cfg.rationale.batch_size
    out = {}
    for readout, m, bld in (("three_pass", model, builder), ("one_pass", model, builder),
                            ("head_one_pass", head, head_builder)):
        r = TeacherReadout(m, tok, bld, cfg.prompt.hops, cfg.teacher.feature_dim, m.device,
                           readout=readout.removeprefix("head_"))
        r.run(list(map(int, nodes[:b])))  # warm-up, not timed
        t0, preds = time.time(), []
        for a in range(0, len(nodes), b):
            preds.append(r.run(list(map(int, nodes[a:a + b])))["pred"])
        wall = time.time() - t0
        out[readout] = {"wall_s": round(wall, 3), "nodes_per_s": round(len(nodes) / wall, 3),
                        **evaluate(np.concatenate(preds), labels[nodes])}
    if not trained:
        out["head_one_pass"].update(acc=None, macro_f1=None, untrained_head=True)
    return out | {"torch_threads": threads, "batch_size": b, "hops": cfg.prompt.hops}


def _head_teacher(cfg: ExperimentConfig, num_classes: int, tok):
    """(classifier teacher, trained?): the teacher stage's tuned model if it has a head, else the base model
    with a new (untrained) head, which costs the same forward pass."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from gkd.llm.models import load_teacher, resolve_model
    from gkd.llm.score import is_classifier
    from gkd.llm.stage import tuned_teacher

    tuned = tuned_teacher(cfg)
    if tuned is not None:
        m, _ = load_teacher(cfg.llm.model_copy(update={"model": str(tuned)}))
        if is_classifier(m):
            return m, True
    m = AutoModelForSequenceClassification.from_pretrained(resolve_model(cfg.llm.model, cfg.llm.cache_dir),
                                                           num_labels=num_classes, dtype=getattr(torch, cfg.llm.dtype))
    m.config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    return m.eval(), False


def run(profile: str, out: Path, workdir: Path, overrides: list | None = None, argv: list[str] | None = None) -> dict:
    from gkd.data.store import TAG
    from gkd.llm.teacher import eval_nodes

    t0 = time.time()
    cfg = world_graph(profile, workdir, overrides)
    tag = TAG.load(cfg.graph_dir, features=False)
    nodes = eval_nodes(tag.labels, tag.split, PROFILES[profile]["nodes"], cfg.rationale.seed)
    base = loop(cfg, nodes)
    ray = {str(a): ray_data(cfg, nodes, a) for a in (1, 2)}
    outputs = teacher_outputs(cfg, nodes, tag.labels)
    result = {
        "profile": profile, "model": cfg.llm.model, "graph": tag.name, "nodes": int(len(nodes)),
        "batch_size": cfg.rationale.batch_size, "max_new_tokens": cfg.rationale.max_new_tokens,
        "loop": base, "ray": ray,
        "ray_vs_loop_tokens_per_s_ratio": round(ray["2"]["tokens_per_s"] / base["tokens_per_s"], 3),
        "two_vs_one_actor_ratio": round(ray["2"]["tokens_per_s"] / ray["1"]["tokens_per_s"], 3),
        "teacher_outputs": outputs,
        # gkd's default teacher outputs (head read-out, one pass) vs the three-pass class-name scoring it replaced
        "one_pass_vs_three_pass_nodes_per_s_ratio": round(outputs["head_one_pass"]["nodes_per_s"]
                                                          / outputs["three_pass"]["nodes_per_s"], 3),
        # the same class-name scoring, one pass vs three
        "names_one_pass_vs_three_pass_nodes_per_s_ratio": round(outputs["one_pass"]["nodes_per_s"]
                                                                / outputs["three_pass"]["nodes_per_s"], 3),
        "note": "walls include loading the model (the loop once, each actor once) and starting Ray Data; "
                "the loop uses torch on every core, each actor one CPU",
        "wall_s": round(time.time() - t0, 1),
    }
    return write_result(out, result, "gkd.bench.stream", argv)


def main(argv: list[str] | None = None) -> int:
    return suite_main(__doc__, "stream", PROFILES, run, argv)


# ---------------------------------------------------------------- BENCHMARKS.md section (gkd.bench.markdown)


MARKDOWN_TITLE = "Stream: teacher generation, plain loop vs Ray actors"


def _stream_rows(r: dict) -> list[tuple[str, dict]]:
    rows = [("plain loop", r["loop"])]
    for k in sorted(r["ray"], key=int):
        rows.append((f"Ray, {k} actor" + ("s" if int(k) > 1 else ""), r["ray"][k]))
    return rows


def markdown_headline(r: dict) -> tuple[str, str]:
    from gkd.bench.markdown import num, ratio

    most = max(r["ray"], key=int)
    return (ratio(r["ray_vs_loop_tokens_per_s_ratio"]),
            f"teacher generation tokens/s, Ray ({most} actors) vs one plain loop, {num(r['nodes'])} nodes of "
            f"{r['model']}; 2 vs 1 actor: {ratio(r['two_vs_one_actor_ratio'])}")


def markdown_section(r: dict, plot) -> list[str]:
    from gkd.bench.markdown import num, ratio, seconds, table, value_bars

    out = [f"The teacher ({r['model']}) generates for {num(r['nodes'])} nodes in batches of {r['batch_size']}, "
           f"once in a plain loop and once sharded over Ray actors. Ray vs loop: "
           f"**{ratio(r['ray_vs_loop_tokens_per_s_ratio'])}** tokens/s; 2 actors vs 1: "
           f"**{ratio(r['two_vs_one_actor_ratio'])}**.", ""]
    if r.get("note"):
        out += [f"Note: {r['note'].rstrip('.')}.", ""]
    rows = []
    for name, m in _stream_rows(r):
        threads = m.get("torch_threads", m.get("torch_threads_per_actor"))
        rows.append([name, num(threads), num(m["tokens_per_s"]), num(m["nodes_per_s"]), seconds(m["wall_s"])])
    out += table(["runner", "torch threads (per actor)", "tokens/s", "nodes/s", "wall"], rows)
    names = [n for n, _ in _stream_rows(r)]
    values = [m["tokens_per_s"] for _, m in _stream_rows(r)]
    fig = value_bars(names, values, ["tab:gray"] + ["tab:blue"] * (len(values) - 1), "tokens/s",
                     f"teacher generation, {num(r['nodes'])} nodes")
    out.append(plot(fig, "stream_tokens_per_s.png", "teacher tokens/s, loop vs Ray"))
    t = r.get("teacher_outputs")
    if t:
        out += ["", f"Teacher outputs (soft labels + per-hop features F_0..F_{t['hops']}) for the same nodes, one "
                f"process with {num(t['torch_threads'])} torch threads, batches of {t['batch_size']}: one_pass reads "
                f"every F_k from the one {t['hops']}-hop prompt, three_pass runs a prompt per hop. The default "
                "read-out (the tuned head teacher, one pass) vs three-pass class names: "
                f"**{ratio(r['one_pass_vs_three_pass_nodes_per_s_ratio'])}** nodes/s"
                + (f"; class names one vs three passes: {ratio(r['names_one_pass_vs_three_pass_nodes_per_s_ratio'])}"
                   if r.get("names_one_pass_vs_three_pass_nodes_per_s_ratio") else "")
                + ". The class-name rows score with the base model.", ""]
        label = {"three_pass": "class names, three passes", "one_pass": "class names, one pass",
                 "head_one_pass": "head, one pass"}
        out += table(["readout", "nodes/s", "wall", "teacher acc on these nodes"],
                     [[label[k], num(t[k]["nodes_per_s"]), seconds(t[k]["wall_s"]),
                       "– (untrained head, timed only)" if t[k].get("untrained_head") else
                       "–" if t[k]["acc"] is None else f"{t[k]['acc']:.3f}"]
                      for k in ("three_pass", "one_pass", "head_one_pass") if k in t])
    return out


def markdown_losses(r: dict) -> list[str]:
    from gkd.bench.markdown import num, ratio

    cpus = (r.get("machine") or {}).get("cpus", "?")
    out = []
    if r["ray_vs_loop_tokens_per_s_ratio"] < 1.1:
        verdict = "barely helps" if r["ray_vs_loop_tokens_per_s_ratio"] >= 1 else "slows down"
        out.append(f"Ray {verdict} teacher generation on this {cpus}-CPU machine: "
                   f"{ratio(r['ray_vs_loop_tokens_per_s_ratio'])} the plain loop's tokens/s "
                   f"({num(r['ray'][max(r['ray'], key=int)]['tokens_per_s'])} vs {num(r['loop']['tokens_per_s'])}).")
    if r["two_vs_one_actor_ratio"] < 1.5 and "1" in r["ray"] and "2" in r["ray"]:
        out.append(f"A second teacher actor adds little on this {cpus}-CPU machine: 2 actors give "
                   f"{ratio(r['two_vs_one_actor_ratio'])} the tokens/s of one "
                   f"({num(r['ray']['2']['tokens_per_s'])} vs {num(r['ray']['1']['tokens_per_s'])}).")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
