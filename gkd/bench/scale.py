"""Scale suite: ingest -> METIS partition -> teacher outputs for a node budget -> one 2-worker distillation
epoch (+ full-graph inference) on an ogbn-products-sized synthetic graph, with wall time and peak memory per
stage, then a projection of the whole pipeline onto a GPU cluster with its arithmetic written out.

  python -m gkd.bench.scale --profile full --out bench/results/scale.json --workdir bench/work/scale

Profiles: full (2,449,029 nodes, 61,859,140 edges, 47 classes, hashing-d128, the embedded SmolLM2-135M as
the untuned teacher, 64 nodes) and quick (the same code path on 20,000 nodes / 200,000 edges, hashing-d32,
a tiny random Llama, 8 nodes). Every stage runs through `gkd.pipeline.run_stage` (ingest and distill are
the pipeline's own records; METIS and the untuned teacher's outputs are records of this suite), so reuse
follows the content hashes and stage.json markers of `gkd run`. A measured stage leaves its figures in
<workdir>/stages/<stage>.json under its content hash; a rerun reuses a finished stage and says so
("reused", with the earlier "measured" entry), so a killed run loses at most the stage in flight (an
unfinished stage starts over: a measurement never resumes). --fresh measures every stage again.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import psutil

from gkd.bench.memory import GIB, PeakMemory
from gkd.bench.report import suite_parser, write_result
from gkd.config import ExperimentConfig, PartitionConfig, content_hash, load_config, parse_overrides
from gkd.errors import GkdError
from gkd.pipeline import MARKER, run_stage
from gkd.llm.stage import TEACHER
from gkd.stages import Stage, stage_record
from gkd.runtime import init_ray, setup_logging

log = logging.getLogger("gkd.bench.scale")

CONFIG = "jobs/configs/synthetic_products.yaml"
SMOLLM2 = "smollm2-135m-instruct"
TINY = "tiny-llama"  # quick profile: a random Llama built under <workdir>/tiny-llama
PROFILES = {
    "full": {"overrides": {}, "budget": 64, "teacher": SMOLLM2},
    "quick": {"overrides": {"ingest.source.num_nodes": 20_000, "ingest.source.num_edges": 200_000,
                            "ingest.source.num_shards": 4, "ingest.num_shards": 4, "ingest.encoder.dim": 32},
              "budget": 8, "teacher": TINY},
}
# stage 4: one epoch of 2-worker LinguGKD distillation with GraphSAGE-style fan-outs
# the untuned base teacher's outputs have no val calibration: its targets weigh 1 (teacher_weighting uniform)
DISTILL = {"distill.method": "lingugkd", "distill.epochs": 1, "distill.num_workers": 2,
           "distill.fanouts": [15, 10], "distill.batch_size": 1024, "distill.checkpoint_every": 1,
           "distill.teacher_weighting": "uniform"}
STAGES = ("ingest", "partition", "teacher_outputs", "distill_epoch")

# Projection inputs that this suite does not measure: (default, what it is and where the default comes from).
ASSUMPTIONS = {
    "target_nodes": (2_449_029, "nodes of the projected graph (ogbn-products)"),
    "target_edges": (61_859_140, "edges of the projected graph (ogbn-products)"),
    "gpus": (8, "GPUs in the cluster; each runs one LLM actor or one Ray Train worker"),
    "llm_gpu_speedup": (100.0, "nodes/s of one GPU LLM actor over one 1-thread CPU actor here (not measured)"),
    "rationale_cost": (1.0, "cost of a rationale node (scoring + up to 96 generated tokens) in teacher-output "
                            "nodes; the Debian teacher of the quality suite's work dir: 0.549 output vs 0.576 "
                            "rationale nodes/s on the same 2 CPU actors (teacher/metrics.json, rationale summary)"),
    "tune_examples_per_s_per_cpu_worker": (0.377, "teacher tuning on one 1-thread CPU worker: 424 examples / "
                                                  "562.8 s / 2 workers (bench/results/quality.json teacher.tuning) "
                                                  "(Debian graph; this suite does not tune)"),
    "tune_gpu_speedup": (100.0, "tuning examples/s of one GPU worker over one 1-thread CPU worker (not measured)"),
    "tune_epochs": (1, "teacher-tuning passes over the train nodes"),
    "tune_examples": (None, "tuning examples per pass; default: this graph's train fraction x target_nodes"),
    "gnn_gpu_speedup": (10.0, "seeds/s of one GPU distillation worker, and nodes/s of GPU layer-wise inference, "
                              "over one 1-thread CPU worker / the CPU driver here (not measured)"),
    "epochs": (20, "distillation epochs"),
    "seeds_per_epoch": (None, "distillation seeds per epoch; default target_nodes (the teacher covers every "
                              "node and lingugkd trains on every covered node)"),
    "ingest_speedup": (1.0, "ingest throughput of the cluster's head node over this machine (CPU work)"),
}


def read_record(workdir: Path, stage: str, key: str) -> dict | None:
    """The entry a finished run of `stage` with the same inputs (`key`) left, else None."""
    path = workdir / "stages" / f"{stage}.json"
    rec = json.loads(path.read_text()) if path.is_file() else None
    return rec if rec and rec.get("key") == key else None


def write_record(workdir: Path, stage: str, entry: dict) -> None:
    path = workdir / "stages" / f"{stage}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(entry, indent=2))
    tmp.replace(path)


def budget_nodes(split: np.ndarray, budget: int, seed: int = 0) -> np.ndarray:
    """Sorted teacher budget: budget // 2 train nodes, the rest from nodes without a training label (not val)."""
    rng = np.random.default_rng([seed, 59])
    train = np.flatnonzero(split == "train")
    rest = np.flatnonzero((split != "train") & (split != "val"))
    k = min(budget // 2, len(train))
    picked = [rng.choice(train, k, replace=False), rng.choice(rest, min(budget - k, len(rest)), replace=False)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


# ----------------------------------------------------------------------------- stages


def ingest_stage(cfg: ExperimentConfig) -> dict:
    """The pipeline's ingest stage; a store already ingested with this config is reused."""
    res = run_stage(cfg, "ingest", track=False, resume=False)
    meta = res["summary"]
    info = {"reused": res["skipped"] or bool(meta.get("skipped")), "key": meta["config_hash"],
            "num_nodes": meta["num_nodes"],
            "num_edges": meta["num_edges"], "num_csr_entries": meta["stats"]["num_csr_entries"],
            "timings_s": meta["timings"],
            "store_bytes": sum(f.stat().st_size for f in cfg.graph_dir.rglob("*") if f.is_file())}
    if info["reused"]:
        info["measured"] = read_record(cfg.workdir, "ingest", meta["config_hash"]) or {
            "wall_s": round(sum(meta["timings"].values()), 2), "num_edges": meta["num_edges"],
            "source": f"meta.json timings of the ingest that wrote {cfg.graph_dir} (without Ray start-up)"}
    return info


def _metis_child(csr_path: str, pcfg: dict, out_dir: str) -> None:
    """Child process: METIS on the stored CSR -> out_dir/partition.npy + metis.json."""
    from gkd.data.ingest import partition_graph
    from gkd.data.store import load_csr

    t = time.time()
    indptr, indices = load_csr(Path(csr_path))
    load_s = time.time() - t
    t = time.time()
    part, cut = partition_graph(indptr, indices, PartitionConfig.model_validate(pcfg))
    metis_s = time.time() - t
    np.save(Path(out_dir) / "partition.npy", part)
    (Path(out_dir) / "metis.json").write_text(json.dumps({"edge_cut": cut, "load_s": round(load_s, 2),
                                                          "metis_s": round(metis_s, 2)}))


class StageFailed(GkdError):
    """A measured stage that did not finish (METIS killed past its memory limit): its figures so far in `info`."""

    def __init__(self, info: dict):
        super().__init__(info["status"])
        self.info = info


def partition_record(num_parts: int, memory_limit_gib: float | None, timeout_s: float) -> Stage:
    """METIS of the ingested graph into <workdir>/partition: a stage of this suite, not of the pipeline."""
    return Stage(name="partition", dir="partition", sections=("ingest.partition.seed",), inputs=("ingest",),
                 extra={"num_parts": num_parts},
                 run=lambda cfg: _partition(cfg, num_parts, memory_limit_gib, timeout_s))


def partition_stage(cfg: ExperimentConfig, num_parts: int, memory_limit_gib: float | None, timeout_s: float) -> dict:
    """METIS (pymetis via gkd.data.ingest.partition_graph) on csr.npz in a child process, which is killed past
    the memory limit (default 90% of the memory available at the start) or the timeout."""
    rec = partition_record(num_parts, memory_limit_gib, timeout_s)
    key = content_hash(cfg, rec)
    try:
        res = run_stage(cfg, rec, track=False, resume=False)
    except StageFailed as err:
        return {"reused": False, "key": key, **err.info}
    return _measured(cfg, rec, key, res)


def _measured(cfg: ExperimentConfig, rec: Stage, key: str, res: dict) -> dict:
    """A run_stage result as a suite entry: reused (with the earlier measurement) or the fresh summary."""
    if res["skipped"]:
        return {"reused": True, "key": key, "measured": read_record(cfg.workdir, rec.name, key) or res["summary"]}
    return {"reused": False, "key": key, **res["summary"]}


def _partition(cfg: ExperimentConfig, num_parts: int, memory_limit_gib: float | None, timeout_s: float) -> dict:
    meta = json.loads((cfg.graph_dir / "meta.json").read_text())
    pcfg = PartitionConfig(enabled=True, num_parts=num_parts, seed=cfg.ingest.partition.seed)
    out = cfg.stage_dir(partition_record(num_parts, memory_limit_gib, timeout_s))
    out.mkdir(parents=True, exist_ok=True)
    available = psutil.virtual_memory().available / GIB
    limit = memory_limit_gib or 0.9 * available
    # a child process: METIS's C code can be neither interrupted nor capped in memory from inside this one
    proc = multiprocessing.get_context("spawn").Process(
        target=_metis_child, args=(str(cfg.graph_dir / "csr.npz"), pcfg.model_dump(), str(out)), daemon=True)
    t0, last, peak, status = time.time(), time.time(), 0, None
    proc.start()
    child = psutil.Process(proc.pid)
    while proc.is_alive():
        try:
            rss = child.memory_info().rss
        except psutil.NoSuchProcess:
            break
        peak = max(peak, rss)
        if rss > limit * GIB:
            status = f"killed: child RSS {rss / GIB:.1f} GiB passed the {limit:.1f} GiB limit"
        elif time.time() - t0 > timeout_s:
            status = f"killed: still running after the {timeout_s:.0f} s timeout"
        if status:
            proc.kill()
            log.warning("partition: %s", status)
            break
        if time.time() - last > 30:
            last = time.time()
            log.info("partition: METIS %d parts running %.0f s, child RSS %.1f GiB (peak %.1f)", num_parts,
                     last - t0, rss / GIB, peak / GIB)
        proc.join(0.5)
    proc.join()
    wall = time.time() - t0
    info = {"num_parts": num_parts, "method": "metis (pymetis.part_graph, "
            f"{'recursive bisection' if num_parts <= 8 else 'k-way'})", "child_wall_s": round(wall, 2),
            "metis_peak_rss_gib": round(peak / GIB, 2), "memory_limit_gib": round(limit, 2),
            "available_gib_at_start": round(available, 2), "timeout_s": timeout_s}
    if status is None and proc.exitcode != 0:
        status = f"failed: the METIS child exited with code {proc.exitcode}"
    if status is not None:
        raise StageFailed({**info, "status": status})
    part = np.load(out / "partition.npy")
    sizes = np.bincount(part, minlength=num_parts)
    edges = meta["stats"]["num_csr_entries"] // 2
    got = json.loads((out / "metis.json").read_text())
    log.info("partition: %d parts, edge cut %d of %d edges (%.1f s METIS)", num_parts, got["edge_cut"], edges,
             got["metis_s"])
    return {**info, "status": "done", "edge_cut": got["edge_cut"],
            "edge_cut_fraction": round(got["edge_cut"] / edges, 4), "part_sizes": sizes.tolist(), "balance": round(float(sizes.max() / sizes.mean()), 4),
            "load_s": got["load_s"], "metis_s": got["metis_s"]}


def teacher_model(cfg: ExperimentConfig, teacher: str) -> str:
    """The teacher's model directory: the embedded SmolLM2 (unpacked on first use) or a tiny random Llama."""
    from gkd.llm.models import make_tiny_llama, resolve_model

    if teacher != TINY:
        return str(resolve_model(teacher, cfg.llm.cache_dir))
    path = cfg.workdir / TINY
    if not (path / "config.json").is_file():
        from gkd.data.store import TAG

        make_tiny_llama(path, texts=TAG.load(cfg.graph_dir, features=False).texts())
    return str(path.resolve())


def teacher_config(cfg: ExperimentConfig, teacher: str, budget: int) -> ExperimentConfig:
    """The suite's teacher (llm.model) and node budget (rationale.unlabeled_budget) in the config, so that the
    content hashes of the teacher outputs and of the distillation that reads them follow both."""
    model = teacher_model(cfg, TINY) if teacher == TINY else teacher  # the embedded alias, not its cache path
    return cfg.model_copy(update={"llm": cfg.llm.model_copy(update={"model": model}),
                                  "rationale": cfg.rationale.model_copy(update={"unlabeled_budget": budget})})


# The untuned teacher's outputs for the suite's budget, into the pipeline teacher stage's folder (where distill
# reads them): a stage of this suite whose content is the teacher-side config the pipeline's teacher reads.
TEACHER_OUTPUTS = Stage(name="teacher_outputs", dir=TEACHER.dir,
                        sections=("llm", "prompt", "rationale.unlabeled_budget", "rationale.seed", "teacher.feature_dim"),
                        inputs=("ingest",), run=lambda cfg: _teacher_outputs(cfg))


def teacher_stage(cfg: ExperimentConfig, teacher: str, budget: int) -> dict:
    """The base teacher's soft labels + per-hop features for `budget` nodes -> the teacher folder (gkd.llm.teacher)."""
    res = run_stage(cfg, TEACHER_OUTPUTS, track=False, resume=False)
    return _measured(cfg, TEACHER_OUTPUTS, content_hash(cfg, TEACHER_OUTPUTS), res) | (
        {} if res["skipped"] else {"model": teacher})


def _teacher_outputs(cfg: ExperimentConfig) -> dict:
    from gkd.data.store import node_arrays
    from gkd.llm.models import resolve_model
    from gkd.llm.teacher import write_outputs

    meta = json.loads((cfg.graph_dir / "meta.json").read_text())
    _, split = node_arrays(cfg.graph_dir)
    nodes = budget_nodes(split, cfg.rationale.unlabeled_budget, cfg.rationale.seed)
    model = str(resolve_model(cfg.llm.model, cfg.llm.cache_dir))
    init_ray(cfg.ray)
    out = write_outputs(cfg, model, nodes, meta["num_nodes"], meta["num_classes"])
    r = cfg.rationale
    after = out["written"] - r.batch_size  # nodes that arrived after the first batch
    if after > 0 and out["wall_s"] > out["first_batch_s"]:
        out["nodes_per_s_after_first_batch"] = round(after / (out["wall_s"] - out["first_batch_s"]), 3)
    return {"tuned": False, **out,
            "train_nodes": int((split[nodes] == "train").sum()), "actors": r.num_actors,
            "torch_threads_per_actor": cfg.llm.torch_threads, "batch_size": r.batch_size, "hops": cfg.prompt.hops,
            "max_prompt_tokens": cfg.prompt.max_tokens, "tokens": None,
            "note": "wall_s and nodes_per_s include starting the actors (each loads the graph's texts and the "
                    "model) before the first batch (first_batch_s); nodes_per_s_after_first_batch leaves most of "
                    "that out; tokens: not counted by TeacherReadout"}


def distill_stage(cfg: ExperimentConfig) -> dict:
    """gkd.gnn.distill.run: one epoch on 2 Ray Train workers, then driver-side layer-wise inference on every node."""
    from gkd.data.store import node_arrays
    from gkd.gnn.inputs import split_codes
    from gkd.gnn.train import METHOD_LOSSES, seed_nodes

    d = cfg.distill
    key = content_hash(cfg, "distill")
    # resume=False: no half-finished Ray Train run to "resume" into a fake measurement
    res = run_stage(cfg, "distill", track=False, resume=False)
    if res["skipped"]:
        return {"reused": True, "key": key, "measured": read_record(cfg.workdir, "distill_epoch", key) or res["summary"]}
    m = res["summary"]
    labels, split = node_arrays(cfg.graph_dir)
    covered = np.load(cfg.stage_dir(TEACHER) / "covered.npy")
    t_pos = np.where(covered, np.cumsum(covered) - 1, -1)
    seeds = len(seed_nodes(labels.astype(np.int64), split_codes(split), METHOD_LOSSES[d.method], d.unlabeled_seeds,
                           d.seed, teacher_pos=t_pos))
    trained = math.ceil(seeds / d.num_workers) * d.num_workers  # epoch_shard wraps so every rank runs as many
    epoch_s = m["history"][-1]["train_s"]
    return {"reused": False, "key": key, "method": d.method, "gnn": d.gnn, "epochs": m["epochs_run"],
            "workers": m["num_workers"], "fanouts": d.fanouts, "batch_size": d.batch_size, "seeds": seeds,
            "seeds_trained": trained, "epoch_s": epoch_s, "seeds_per_s": round(trained / epoch_s, 2),
            "train_wall_s": m["train_wall_s"], "seeds_per_s_wall": round(trained / m["train_wall_s"], 2),
            "infer_wall_s": m["infer_wall_s"], "num_nodes": int(len(labels)),
            "val_acc": m["val"]["acc"], "test_acc": m["test"]["acc"],
            "note": "epoch_s: the workers' own time for the epoch (sampled training + sampled validation); "
                    "train_wall_s adds Ray Train start-up and shipping the arrays; infer_wall_s: full-neighbourhood "
                    "layer-wise inference over every node on the driver"}


# ----------------------------------------------------------------------------- projection


def _num(v: float) -> str:
    return f"{int(v)}" if float(v).is_integer() else f"{v:.4g}"


def projected(work: list[tuple[float, str]], rate: list[tuple[float, str]]) -> dict:
    """hours = prod(work) / prod(rate) / 3600, with the arithmetic written out."""
    hours = math.prod(v for v, _ in work) / math.prod(v for v, _ in rate) / 3600
    show = lambda terms: " x ".join(f"{_num(v)} {what}" for v, what in terms)
    return {"hours": hours, "formula": f"{show(work)} / ({show(rate)}) / 3600 s/h = {hours:.3g} h"}


def measured_rates(stages: dict) -> tuple[dict, dict]:
    """Per-unit rates of this machine from the stage entries (the earlier measurement for a reused stage)."""
    m = {k: v["measured"] if v.get("reused") else v for k, v in stages.items()}
    ing, tea, dis = m["ingest"], m["teacher_outputs"], m["distill_epoch"]
    rates = {"ingest_edges_per_s": ing["num_edges"] / ing["wall_s"],
             "teacher_nodes_per_s_per_actor": tea["nodes_per_s"] / tea["actors"],
             "distill_seeds_per_s_per_worker": dis["seeds_per_s"] / dis["workers"],
             "infer_nodes_per_s": dis["num_nodes"] / dis["infer_wall_s"]}
    sources = {
        "ingest_edges_per_s": f"{ing['num_edges']} edges / {ing['wall_s']} s ingest wall",
        "teacher_nodes_per_s_per_actor": f"{tea['nodes_per_s']} nodes/s / {tea['actors']} CPU actors "
                                         f"({tea['torch_threads_per_actor']} torch thread each, {tea['model']}, "
                                         f"untuned, {tea['hops'] + 1} prompts + 1 class-scoring pass per node)",
        "distill_seeds_per_s_per_worker": f"{dis['seeds_per_s']} seeds/s / {dis['workers']} CPU workers "
                                          f"({dis['seeds_trained']} seeds / {dis['epoch_s']} s epoch)",
        "infer_nodes_per_s": f"{dis['num_nodes']} nodes / {dis['infer_wall_s']} s layer-wise inference wall",
    }
    return rates, sources


def projection(stages: dict, graph: dict, assumptions: dict, profile: str) -> dict:
    """Projected hours of the whole pipeline on a GPU cluster: measured rates here x assumed speed-ups."""
    a = dict(assumptions)
    if a["tune_examples"] is None:
        a["tune_examples"] = round(graph["train_nodes"] / graph["num_nodes"] * a["target_nodes"])
    if a["seeds_per_epoch"] is None:
        a["seeds_per_epoch"] = a["target_nodes"]
    r, sources = measured_rates(stages)
    gpus = (a["gpus"], "GPUs (assumed)")
    llm = [(r["teacher_nodes_per_s_per_actor"], "nodes/s per CPU LLM actor (measured)"),
           (a["llm_gpu_speedup"], "llm_gpu_speedup (assumed)"), gpus]
    out = {
        "ingest": projected([(a["target_edges"], "edges")],
                            [(r["ingest_edges_per_s"], "edges/s (measured)"),
                             (a["ingest_speedup"], "ingest_speedup (assumed)")]),
        "rationale": projected([(a["target_nodes"], "nodes"), (a["rationale_cost"], "rationale_cost (assumed)")], llm),
        "teacher_tuning": projected([(a["tune_examples"], "examples"), (a["tune_epochs"], "tune_epochs (assumed)")],
                                    [(a["tune_examples_per_s_per_cpu_worker"], "examples/s per CPU worker (assumed)"),
                                     (a["tune_gpu_speedup"], "tune_gpu_speedup (assumed)"), gpus]),
        "teacher_outputs": projected([(a["target_nodes"], "nodes")], llm),
        "distillation": projected([(a["epochs"], "epochs (assumed)"), (a["seeds_per_epoch"], "seeds/epoch")],
                                  [(r["distill_seeds_per_s_per_worker"], "seeds/s per CPU worker (measured)"),
                                   (a["gnn_gpu_speedup"], "gnn_gpu_speedup (assumed)"), gpus]),
        "inference": projected([(a["target_nodes"], "nodes")],
                               [(r["infer_nodes_per_s"], "nodes/s CPU driver (measured)"),
                                (a["gnn_gpu_speedup"], "gnn_gpu_speedup (assumed)")]),
    }
    total = sum(s["hours"] for s in out.values())
    note = ("A projection, not a measurement: (measured) rates come from this machine's stages above, every "
            "(assumed) factor from the command line (see assumption_notes); stages run one after another, each GPU "
            "holds one LLM actor or one Ray Train worker, inference runs on one GPU. The teacher rate includes "
            "actor start-up over a small budget, so it is pessimistic.")
    if profile == "quick":
        note += " Quick profile: rates of a 20,000-node graph and a tiny random Llama, so the hours mean nothing."
    return {"assumptions": a, "assumption_notes": {k: v[1] for k, v in ASSUMPTIONS.items()},
            "measured_rates": r, "measured_rate_sources": sources, "stages": out, "total_hours": total,
            "total_formula": " + ".join(f"{s['hours']:.3g}" for s in out.values()) + f" = {total:.3g} h",
            "note": note}


# ----------------------------------------------------------------------------- the suite


def build_config(profile: str, workdir: Path, teacher: str, fresh: bool, config: str = CONFIG,
                 extra: list[tuple[str, object]] = ()) -> ExperimentConfig:
    """`config` with the profile's graph, the suite's distillation settings, then `extra` (--set) on top."""
    overrides = {"workdir": str(workdir), "ingest.overwrite": fresh, **PROFILES[profile]["overrides"], **DISTILL}
    if teacher != TINY:
        overrides["llm.model"] = teacher
    return load_config(config, [*overrides.items(), *extra])


def run(profile: str, out: Path, workdir: Path, *, fresh: bool = False, budget: int | None = None,
        config: str = CONFIG, overrides: list[tuple[str, object]] = (), num_parts: int = 8,
        partition_memory_gib: float | None = None, partition_timeout_s: float = 1800, argv: list[str] | None = None,
        **assumptions) -> dict:
    """Run (or reuse) the four stages for `profile` in `workdir`, write the result JSON to `out`; returns it."""
    import ray

    unknown = set(assumptions) - set(ASSUMPTIONS)
    if unknown:
        raise GkdError(f"unknown projection assumptions {sorted(unknown)}; known: {sorted(ASSUMPTIONS)}")
    assumptions = {k: assumptions.get(k, default) for k, (default, _) in ASSUMPTIONS.items()}
    if profile not in PROFILES:
        raise GkdError(f"profile must be one of {sorted(PROFILES)}, got {profile!r}")
    prof = PROFILES[profile]
    budget = budget or prof["budget"]
    workdir = Path(workdir)
    cfg = build_config(profile, workdir, prof["teacher"], fresh, config, overrides)
    if fresh:  # forget every finished stage (markers and measurements); ingest.overwrite replaces the store
        shutil.rmtree(workdir / "stages", ignore_errors=True)
        for rec in (stage_record("ingest"), stage_record("distill"), TEACHER_OUTPUTS,
                    partition_record(num_parts, partition_memory_gib, partition_timeout_s)):
            (cfg.stage_dir(rec) / MARKER).unlink(missing_ok=True)
    state = {"cfg": cfg}

    def teacher_outputs() -> dict:
        state["cfg"] = teacher_config(cfg, prof["teacher"], budget)  # the distillation reads what it wrote
        return teacher_stage(state["cfg"], prof["teacher"], budget)

    bodies = {"ingest": lambda: ingest_stage(cfg),
              "partition": lambda: partition_stage(cfg, num_parts, partition_memory_gib, partition_timeout_s),
              "teacher_outputs": teacher_outputs,
              "distill_epoch": lambda: distill_stage(state["cfg"])}
    started_ray = not ray.is_initialized()
    t0 = time.time()
    stages = {}
    try:
        for name in STAGES:
            log.info("scale (%s): stage %s", profile, name)
            t = time.time()
            with PeakMemory() as mem:
                info = bodies[name]()
            entry = {"wall_s": round(time.time() - t, 2), **mem.as_dict(), "loadavg_1m": round(os.getloadavg()[0], 2),
                     **info}
            memory_method = entry.pop("memory_method")
            if not entry["reused"]:
                write_record(workdir, name, entry)
            stages[name] = entry
            log.info("scale (%s): %s %s in %.1f s, peak PSS %.2f GiB", profile, name,
                     "reused" if entry["reused"] else "measured", entry["wall_s"], entry["peak_rss_gib"])
    finally:
        if started_ray and ray.is_initialized():
            ray.shutdown()
    meta = json.loads((cfg.graph_dir / "meta.json").read_text())
    graph = {"name": meta["name"], "num_nodes": meta["num_nodes"], "num_edges": meta["num_edges"],
             "num_classes": meta["num_classes"], "encoder": meta["encoder"]["name"],
             "encoder_id": meta["encoder"]["id"], "feature_dim": meta["encoder"]["dim"],
             "num_csr_entries": meta["stats"]["num_csr_entries"], "train_nodes": meta["split_sizes"]["train"]}
    measured = {k: v["measured"] if v["reused"] else v for k, v in stages.items()}  # a reused stage: its record
    result = {
        "profile": profile, "graph": graph, "workdir": str(workdir), "stages": stages,
        "total_wall_s": round(time.time() - t0, 2),
        "stages_wall_s": round(sum(m["wall_s"] for m in measured.values()), 2),
        "peak_rss_gib": max(m["peak_rss_gib"] for m in measured.values()),
        "peak_stage": max(measured, key=lambda k: measured[k]["peak_rss_gib"]),
        "peak_system_used_gib": max(m["peak_system_used_gib"] for m in measured.values()),
        "memory_limit_gib": round(psutil.virtual_memory().total / GIB, 2),
        "memory_method": memory_method + "; one PeakMemory per stage",
        "reused_stages": [k for k, s in stages.items() if s["reused"]],
        "projection": projection(stages, graph, assumptions, profile),
    }
    if argv is None:
        argv = ["--profile", profile, "--out", str(out), "--workdir", str(workdir)]
    return write_result(out, result, "gkd.bench.scale", argv)


def main(argv: list[str] | None = None) -> int:
    ap = suite_parser(__doc__, "scale", PROFILES, "bench/work/scale")
    ap.add_argument("--config", default=CONFIG, help="the experiment YAML both profiles start from")
    ap.add_argument("--fresh", action="store_true", help="measure every stage again (ingest.overwrite=true)")
    ap.add_argument("--budget", type=int, help="teacher nodes (default: full 64, quick 8)")
    ap.add_argument("--num-parts", type=int, default=8, help="METIS parts")
    ap.add_argument("--partition-memory-gib", type=float,
                    help="kill METIS past this RSS (default 90%% of the memory available when it starts)")
    ap.add_argument("--partition-timeout-s", type=float, default=1800)
    group = ap.add_argument_group("projection assumptions (not measured by this suite)")
    for name, (default, text) in ASSUMPTIONS.items():
        kind = int if isinstance(default, int) or name in ("tune_examples", "seeds_per_epoch") else float
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=default,
                           help=f"{text.replace('%', '%%')} (default {default})")
    args = ap.parse_args(argv)
    setup_logging()
    assumptions = {k: getattr(args, k) for k in ASSUMPTIONS}
    run(args.profile, Path(args.out), Path(args.workdir), fresh=args.fresh, budget=args.budget, config=args.config,
        overrides=parse_overrides(args.set), num_parts=args.num_parts, partition_memory_gib=args.partition_memory_gib,
        partition_timeout_s=args.partition_timeout_s, argv=argv if argv is not None else sys.argv[1:], **assumptions)
    return 0


# ---------------------------------------------------------------- BENCHMARKS.md section (gkd.bench.markdown)


MARKDOWN_TITLE = "Scale: the pipeline on a large graph"

SCALE_KNOWN = {"wall_s", "peak_rss_gib", "peak_system_used_gib", "reused"}


def _stage_record(st: dict) -> dict:
    """What a stage measured: its earlier measurement when this run reused it, else the stage entry itself."""
    return st["measured"] if st.get("reused") and isinstance(st.get("measured"), dict) else st


def _stages_wall(r: dict) -> float:
    """The stages' measured walls added up (a reused stage counts its earlier measurement)."""
    return r.get("stages_wall_s") or sum(_stage_record(st)["wall_s"] for st in r["stages"].values())


def markdown_headline(r: dict) -> tuple[str, str]:
    from gkd.bench.markdown import num, ratio, seconds

    g = r["graph"]
    peak = f"peak memory ({num(r['peak_rss_gib'])} GiB" + (f", {r['peak_stage']}" if r.get("peak_stage") else "")
    return (ratio(r["peak_rss_gib"] / r["memory_limit_gib"]),
            f"{peak}) vs the {num(r['memory_limit_gib'])} GiB limit, ingest to "
            f"one distillation epoch on {num(g['num_nodes'])} nodes / {num(g['num_edges'])} edges in "
            f"{seconds(_stages_wall(r))}")


def markdown_section(r: dict, plot) -> list[str]:
    from gkd.bench.markdown import bold, num, seconds, table
    from gkd.plots import pyplot

    g, stages, limit = r["graph"], r["stages"], r["memory_limit_gib"]
    out = [f"Graph: {num(g['num_nodes'])} nodes, {num(g['num_edges'])} edges, {g['num_classes']} classes, "
           f"{g['encoder']} features ({g['feature_dim']} dims). The stages' measured walls add up to "
           f"{seconds(_stages_wall(r))} (this invocation: {seconds(r['total_wall_s'])}); "
           f"peak memory {num(r['peak_rss_gib'])} GiB of a {num(limit)} GiB limit "
           f"({r['peak_rss_gib'] / limit:.0%}). A reused stage shows its earlier measurement.", ""]
    rows = []
    for name, st in stages.items():
        rec = _stage_record(st)
        extra = [f"{k} {num(v)}" for k, v in rec.items()
                 if k not in SCALE_KNOWN and isinstance(v, (int, float)) and not isinstance(v, bool)]
        if rec is not st:
            extra.insert(0, f"this run {seconds(st['wall_s'])}")
        rss = rec.get("peak_rss_gib")
        rows.append([name + (" (reused: measured in an earlier run)" if st.get("reused") else ""),
                     seconds(rec["wall_s"]), f"{num(rss)} ({rss / limit:.0%})" if rss is not None else "–",
                     num(rec.get("peak_system_used_gib")), ", ".join(extra) or "–"])
    out += table(["stage", "wall", "peak RSS GiB (of limit)", "peak system used GiB", "details"], rows)
    plt = pyplot()
    names = list(stages)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 0.5 * len(names) + 1.8), sharey=True)
    a1.barh(names, [_stage_record(stages[n])["wall_s"] for n in names], color="tab:blue")
    a1.invert_yaxis()
    a1.set_xlabel("wall, s")
    a1.set_title("wall per stage")
    a2.barh(names, [_stage_record(stages[n]).get("peak_rss_gib", np.nan) for n in names], color="tab:orange")
    a2.axvline(limit, color="red", ls="--", lw=1, label=f"limit {num(limit)} GiB")
    a2.set_xlabel("peak RSS, GiB")
    a2.set_title("peak memory per stage")
    a2.legend(fontsize=7)
    for ax in (a1, a2):
        ax.grid(axis="x", alpha=0.3)
    out.append(plot(fig, "scale_stages.png", "wall and peak memory per stage"))

    proj = r.get("projection")
    if proj:
        notes = proj.get("assumption_notes") or {}
        out += ["", "### Projection from stated assumptions (not a measurement)", "", "Assumptions:", ""]
        out += table(["assumption", "value", "what it is"],
                     [[k, num(v), notes.get(k, "")] for k, v in proj["assumptions"].items()])
        if proj.get("measured_rates"):
            sources = proj.get("measured_rate_sources") or {}
            out += ["Rates measured above:", ""]
            out += table(["rate", "value", "from"],
                         [[k, num(float(v)), sources.get(k, "")] for k, v in proj["measured_rates"].items()])
        out += table(["stage", "hours", "formula"],
                     [[k, num(float(v["hours"])), f"`{v['formula']}`"] for k, v in proj["stages"].items()]
                     + [[bold("total"), bold(num(float(proj["total_hours"]))), f"`{proj.get('total_formula', '')}`"
                         if proj.get("total_formula") else ""]])
        if proj.get("note"):
            out += [proj["note"], ""]
    return out


def markdown_losses(r: dict) -> list[str]:
    from gkd.bench.markdown import num, seconds

    out = []
    share = r["peak_rss_gib"] / r["memory_limit_gib"]
    if share >= 0.8:
        out.append(f"Memory headroom is thin at scale: peak {num(r['peak_rss_gib'])} GiB is {share:.0%} of the "
                   f"{num(r['memory_limit_gib'])} GiB limit.")
    walls = {k: _stage_record(st)["wall_s"] for k, st in r["stages"].items()}
    slowest, total = max(walls, key=walls.get), sum(walls.values())
    if total and walls[slowest] / total >= 0.5:
        out.append(f"At scale one stage dominates: {slowest} takes {seconds(walls[slowest])} of the stages' "
                   f"{seconds(total)} ({walls[slowest] / total:.0%}).")
    return out


if __name__ == "__main__":
    sys.exit(main())
