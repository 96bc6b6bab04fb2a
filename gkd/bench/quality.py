"""Quality suite: the teacher (zero-shot, tuned) and students {GCN, SAGE, GAT} x {vanilla, KD, LinguGKD, Pan,
all} over seeds on a low-label split, plus a label-rate sweep of vanilla vs the best distilled method.

  python -m gkd.bench.quality --profile full --out bench/results/quality.json --workdir bench/work/quality

Every number comes from the pipeline's own stage functions (ingest.run, teacher.run, rationale.run,
distill.run), on one work dir (`world`) that the cost, stream and serve suites reuse. Full: the Debian
archive (jobs/configs/debian.yaml, 20 labels per class) with the embedded SmolLM2; quick: a 300-node
synthetic graph with a tiny random Llama (a smoke test of the same code, not a measurement). Finished
runs are reused (stage files / student metrics keyed by their inputs), so a killed suite resumes.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from gkd.bench.report import suite_main, write_result
from gkd.config import ExperimentConfig, build_config, load_config

log = logging.getLogger("gkd.bench.quality")

METHODS = ["vanilla", "kd", "lingugkd", "pan", "all"]

PROFILES = {
    "full": {"gnns": ["gcn", "sage", "gat"], "methods": METHODS, "seeds": 3, "rates": [5, 10, 20, 50],
             "sweep_gnn": "sage", "groups": 3},
    "quick": {"gnns": ["sage"], "methods": ["vanilla", "lingugkd"], "seeds": 1, "rates": [2, 6],
              "sweep_gnn": "sage", "groups": 3},
}

# full: the Debian experiment with the teacher budgets the bench uses (300 test nodes for the teacher)
FULL_CONFIG = "jobs/configs/debian.yaml"
FULL_OVERRIDES = [("rationale.unlabeled_budget", 300), ("teacher.eval_budget", 300)]


def quick_config(root: Path) -> dict:
    """A 300-node synthetic experiment with a tiny random Llama at <root>/tiny-llama (made by `world`)."""
    return {
        "name": "quick", "workdir": str(root),
        "llm": {"model": str(root / "tiny-llama")},
        "prompt": {"hops": 1, "neighbors_per_hop": 2, "max_tokens": 128, "node_tokens": 24, "neighbor_tokens": 8},
        "rationale": {"splits": ["train"], "unlabeled_budget": 8, "batch_size": 4, "num_actors": 1,
                      "max_new_tokens": 8},
        "teacher": {"max_steps": 2, "batch_size": 2, "eval_budget": 24, "train_budget": 8, "num_workers": 2,
                    "checkpoint_every": 2},
        "ingest": {"source": {"kind": "synthetic", "num_nodes": 300, "num_edges": 1200, "num_classes": 3,
                              "num_shards": 2, "words_per_node": 8},
                   "split": {"train_per_class": 4, "val_per_class": 5},
                   "encoder": {"name": "hashing", "dim": 16}, "num_shards": 2},
        "distill": {"hidden": 16, "num_layers": 2, "fanouts": [5, 5], "batch_size": 32, "epochs": 4, "patience": 4,
                    "num_workers": 2, "unlabeled_seeds": 32, "checkpoint_every": 2, "method": "lingugkd"},
    }


def world_config(profile: str, workdir: str | Path, overrides: list | None = None) -> ExperimentConfig:
    workdir = Path(workdir)
    if profile == "quick":
        return build_config(quick_config(workdir.resolve()), "(quick profile)", overrides or [])
    return load_config(FULL_CONFIG, [*FULL_OVERRIDES, ("workdir", str(workdir)), *(overrides or [])])


def world_graph(profile: str, workdir: str | Path, overrides: list | None = None) -> ExperimentConfig:
    """The graph store in `workdir` (and the quick profile's tiny Llama, whose words come from it)."""
    from gkd.data import ingest

    cfg = world_config(profile, workdir, overrides)
    ingest.run(cfg)
    if profile == "quick" and not (cfg.workdir / "tiny-llama" / "config.json").is_file():
        from gkd.data.store import TAG
        from gkd.llm.models import make_tiny_llama

        make_tiny_llama(cfg.workdir / "tiny-llama", texts=TAG.load(cfg.graph_dir, features=False).texts())
    return cfg


def world(profile: str, workdir: str | Path, overrides: list | None = None) -> ExperimentConfig:
    """Graph, tuned teacher (+ its outputs) and rationales in `workdir`; reused when already there."""
    from gkd.llm import rationale, teacher

    cfg = world_graph(profile, workdir, overrides)
    teacher.run(cfg)
    rationale.run(cfg)
    return cfg


def student(cfg: ExperimentConfig, gnn: str, method: str, seed: int, **distill) -> tuple[dict, Path]:
    """One distill.run into <workdir>/students/<name>; interpreter shared per gnn and seed."""
    from gkd.gnn import distill as distill_stage

    name = f"{gnn}-{method}-s{seed}"
    if distill.get("labels_per_class"):
        name = f"sweep-{gnn}-{method}-k{distill['labels_per_class']}-s{seed}"
    c = cfg.model_copy(deep=True)
    c.distill = c.distill.model_copy(update={"gnn": gnn, "method": method, "seed": seed, **distill})
    out = cfg.workdir / "students" / name
    m = distill_stage.run(c, out_dir=out, interpreter_dir=cfg.workdir / "students" / f"{gnn}-interpreter-s{seed}")
    return m, out


def world_student(profile: str, workdir: str | Path) -> tuple[ExperimentConfig, Path]:
    """The world plus the student of its config's distill.gnn/method (seed 0): (config, checkpoint dir).
    Shuts its Ray down, so that the suites measuring on it (cost, serve) start from an idle machine."""
    import ray

    cfg = world(profile, workdir)
    _, out = student(cfg, cfg.distill.gnn, cfg.distill.method, 0)
    ray.shutdown()
    return cfg, out / "checkpoint"


def mean_std(values) -> tuple[float, float]:
    a = np.asarray(values, dtype=float)
    return round(float(a.mean()), 4), round(float(a.std()), 4)


def summarize(runs: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """Mean/std over seeds of test accuracy and macro-F1 per group of `keys` (first-seen order)."""
    rows = []
    for group in dict.fromkeys(tuple(r[k] for k in keys) for r in runs):
        got = [r for r in runs if tuple(r[k] for k in keys) == group]
        acc, acc_std = mean_std([r["test"]["acc"] for r in got])
        f1, f1_std = mean_std([r["test"]["macro_f1"] for r in got])
        row = dict(zip(keys, group)) | {"seeds": [r["seed"] for r in got], "acc_mean": acc, "acc_std": acc_std,
                                         "f1_mean": f1, "f1_std": f1_std}
        if all(r.get("teacher_nodes", {}).get("acc") is not None for r in got):
            row["teacher_nodes_acc_mean"] = mean_std([r["teacher_nodes"]["acc"] for r in got])[0]
        row["val_acc_mean"] = mean_std([r["val"]["acc"] for r in got])[0]
        row["train_wall_s_mean"] = round(float(np.mean([r["train_wall_s"] for r in got])), 1)
        rows.append(row)
    return rows


def teacher_groups(cfg: ExperimentConfig, groups: int) -> dict:
    """Zero-shot and tuned teacher: mean/std of accuracy and macro-F1 over `groups` disjoint seeded groups of
    its test nodes (one tuning run: the spread is that of the test sample, not of tuning)."""
    from gkd.data.store import TAG
    from gkd.llm.features import evaluate

    tdir = cfg.workdir / "teacher"
    metrics = json.loads((tdir / "metrics.json").read_text())
    labels = TAG.load(cfg.graph_dir, features=False).labels
    zs = np.load(tdir / "zero_shot.npz")
    nodes = zs["nodes"]
    preds = {"zero_shot": zs["pred"], "tuned": np.load(tdir / "soft.npy", mmap_mode="r")[nodes].argmax(1)}
    parts = np.array_split(np.random.default_rng([cfg.teacher.seed, 53]).permutation(len(nodes)), groups)
    out = {"tuning": metrics.get("tuning", {}), "outputs": metrics.get("outputs", {}),
           "std_over": f"{groups} disjoint groups of the teacher's {len(nodes)} test nodes (one tuning run)"}
    for name, pred in preds.items():
        per = [evaluate(pred[p], labels[nodes[p]]) for p in parts]
        acc, acc_std = mean_std([g["acc"] for g in per])
        f1, f1_std = mean_std([g["macro_f1"] for g in per])
        out[name] = {"acc_mean": acc, "acc_std": acc_std, "f1_mean": f1, "f1_std": f1_std, "nodes": int(len(nodes)),
                     "groups": groups, "acc_all": evaluate(pred, labels[nodes])["acc"]}
    return out


def _record(m: dict, **extra) -> dict:
    return {k: m[k] for k in ("gnn", "method", "seed", "val", "teacher_nodes", "train_wall_s", "best_epoch")} | \
        {"test": {k: v for k, v in m["test"].items() if k != "per_class"}} | extra


def run(profile: str, out: Path, workdir: Path, overrides: list | None = None, argv: list[str] | None = None) -> dict:
    p = PROFILES[profile]
    t0 = time.time()
    cfg = world(profile, workdir, overrides)
    world_s = time.time() - t0
    from gkd.data.store import read_meta

    meta = read_meta(cfg.graph_dir)
    runs = []
    for gnn in p["gnns"]:
        for seed in range(p["seeds"]):
            for method in p["methods"]:
                m, _ = student(cfg, gnn, method, seed)
                runs.append(_record(m))
                log.info("%s/%s seed %d: test acc %.4f (%.0f s so far)", gnn, method, seed, m["test"]["acc"],
                         time.time() - t0)
    rows = summarize(runs, ("gnn", "method"))
    distilled = [r for r in rows if r["method"] != "vanilla"]
    best = max(distilled, key=lambda r: r["acc_mean"])
    best_vanilla = max((r for r in rows if r["method"] == "vanilla"), key=lambda r: r["acc_mean"])
    teacher = teacher_groups(cfg, p["groups"])

    sweep_gnn = p["sweep_gnn"]
    sweep_method = max((r for r in distilled if r["gnn"] == sweep_gnn), key=lambda r: r["acc_mean"])["method"]
    pool = max(p["rates"])
    sweep_runs = []
    for k in p["rates"]:
        for seed in range(p["seeds"]):
            for method in ("vanilla", sweep_method):
                m, _ = student(cfg, sweep_gnn, method, seed, labels_per_class=k, label_pool_per_class=pool)
                sweep_runs.append(_record(m, labels_per_class=k, test_nodes=m["inputs"]["label_rate"]["test_nodes"]))
    sweep_rows = summarize(sweep_runs, ("labels_per_class", "method"))

    best_teacher_nodes = best.get("teacher_nodes_acc_mean")
    result = {
        "profile": profile,
        "graph": {"name": meta["name"], "num_nodes": meta["num_nodes"], "num_edges": meta["num_edges"],
                  "num_classes": meta["num_classes"], "train_per_class": cfg.ingest.split.train_per_class,
                  "val_per_class": cfg.ingest.split.val_per_class, "test_nodes": meta["split_sizes"].get("test")},
        "teacher": teacher,
        "rows": rows,
        "best": {k: best[k] for k in ("gnn", "method", "acc_mean", "f1_mean")},
        "best_vanilla": {k: best_vanilla[k] for k in ("gnn", "method", "acc_mean", "f1_mean")},
        "best_vs_vanilla_acc_ratio": round(best["acc_mean"] / best_vanilla["acc_mean"], 3),
        # on the teacher's own test nodes (the student's mean over seeds there vs the tuned teacher's accuracy)
        "student_vs_tuned_teacher_acc_ratio": (round(best_teacher_nodes / teacher["tuned"]["acc_all"], 2)
                                               if best_teacher_nodes and teacher["tuned"]["acc_all"] else None),
        "sweep": {"gnn": sweep_gnn, "methods": ["vanilla", sweep_method], "rates": p["rates"],
                  "label_pool_per_class": pool, "test_nodes": sweep_runs[0]["test_nodes"], "rows": sweep_rows,
                  "note": f"every rate is scored on the same test nodes: the first {pool} nodes of each class "
                          "(train split first) are out of test at every rate; the teacher is the one tuned on the "
                          f"graph's own train split (train_budget {cfg.teacher.train_budget} prompts), so at "
                          "rates below its labels per class the distilled student sees label information the "
                          "vanilla one does not"},
        "distill_config": cfg.distill.model_dump(mode="json"),
        "runs": runs, "sweep_runs": sweep_runs,
        "world_wall_s": round(world_s, 1), "wall_s": round(time.time() - t0, 1),
    }
    return write_result(out, result, "gkd.bench.quality", argv)


def main(argv: list[str] | None = None) -> int:
    return suite_main(__doc__, "quality", PROFILES, run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
