"""Quality suite: the teacher (zero-shot, tuned) and students {GCN, SAGE, GAT} x {vanilla, KD, LinguGKD, Pan,
all} over seeds on a low-label split, plus a label-rate sweep of vanilla vs the best distilled method.

  python -m gkd.bench.quality --profile full --out bench/results/quality.json --workdir bench/work/quality

Every number comes from the pipeline's own stages, run through `gkd.pipeline.run_stage` exactly as
`gkd run` runs them (same content hashes, same stage.json markers, same reuse rules), on one work dir
(`world`) that the cost, stream and serve suites reuse. Full: the Debian
archive (jobs/configs/debian.yaml, 20 labels per class) with the embedded SmolLM2; quick: a 300-node
synthetic graph with a tiny random Llama (a smoke test of the same code, not a measurement). Finished
stages are reused (their markers hold the content hash), so a killed suite resumes.
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
    from gkd.pipeline import run_stage

    cfg = world_config(profile, workdir, overrides)
    run_stage(cfg, "ingest", track=False)
    if profile == "quick" and not (cfg.workdir / "tiny-llama" / "config.json").is_file():
        from gkd.data.store import TAG
        from gkd.llm.models import make_tiny_llama

        make_tiny_llama(cfg.workdir / "tiny-llama", texts=TAG.load(cfg.graph_dir, features=False).texts())
    return cfg


def world(profile: str, workdir: str | Path, overrides: list | None = None) -> ExperimentConfig:
    """Graph, rationales and the tuned teacher (+ its outputs) in `workdir`; reused when already there."""
    from gkd.pipeline import run_stage
    from gkd.stages import pipeline

    cfg = world_graph(profile, workdir, overrides)
    for rec in pipeline()[1:3]:  # the stages between the graph and the students: rationale, teacher
        run_stage(cfg, rec, track=False)
    return cfg


def student(cfg: ExperimentConfig, gnn: str, method: str, seed: int, **distill) -> tuple[dict, Path]:
    """One distill stage into <workdir>/students/<name> (-> its metrics, its folder); the interpreter is shared
    per gnn and seed."""
    from gkd.gnn.stage import DISTILL
    from gkd.pipeline import run_stage

    name = f"{gnn}-{method}-s{seed}"
    if distill.get("labels_per_class"):
        name = f"sweep-{gnn}-{method}-k{distill['labels_per_class']}-s{seed}"
    out = cfg.workdir / "students" / name
    c = cfg.model_copy(deep=True)
    c.distill = c.distill.model_copy(update={
        "gnn": gnn, "method": method, "seed": seed, **distill,
        "interpreter_dir": cfg.workdir / "students" / f"{gnn}-interpreter-s{seed}"})
    c.stage_dirs = {**cfg.stage_dirs, DISTILL.name: out}
    return run_stage(c, DISTILL, track=False)["summary"], out


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
    from gkd.llm.stage import TEACHER

    tdir = cfg.stage_dir(TEACHER)
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


# ---------------------------------------------------------------- BENCHMARKS.md section (gkd.bench.markdown)


MARKDOWN_TITLE = "Quality: distilled students vs vanilla GNNs and the teacher"


def _tuned_acc(r: dict) -> float:
    """The tuned teacher's accuracy on all its test nodes (what student_vs_tuned_teacher_acc_ratio divides by)."""
    tuned = r["teacher"]["tuned"]
    return tuned.get("acc_all", tuned["acc_mean"])


def _quality_best(r: dict) -> dict:
    best = r["best"]
    return next(row for row in r["rows"] if row["gnn"] == best["gnn"] and row["method"] == best["method"])


def markdown_headline(r: dict) -> tuple[str, str]:
    from gkd.bench.markdown import ratio

    best, vanilla = r["best"], r["best_vanilla"]
    return (ratio(r["best_vs_vanilla_acc_ratio"]),
            f"test accuracy of the best distilled student ({best['gnn']}/{best['method']}, "
            f"{best['acc_mean']:.3f}) vs the best GNN trained on labels alone ({vanilla['gnn']}/vanilla, "
            f"{vanilla['acc_mean']:.3f}) on {r['graph']['name']}")


def quality_compute(r: dict) -> dict | None:
    """The measured walls behind a quality result: teacher tuning + teacher outputs + every student's training."""
    from gkd.bench.markdown import seconds

    t = r["teacher"]
    runs = [x for x in r.get("runs", []) + r.get("sweep_runs", []) if isinstance(x.get("train_wall_s"), (int, float))]
    parts = [(f"teacher tuning {seconds(t[k]['wall_s'])}" if k == "tuning" else
              f"teacher outputs {seconds(t[k]['wall_s'])}", t[k]["wall_s"])
             for k in ("tuning", "outputs") if isinstance((t.get(k) or {}).get("wall_s"), (int, float))]
    if runs:
        parts.append((f"{len(runs)} student trainings {seconds(sum(x['train_wall_s'] for x in runs))}",
                      sum(x["train_wall_s"] for x in runs)))
    if not parts:
        return None
    return {"text": " + ".join(p for p, _ in parts), "total_s": sum(v for _, v in parts)}


def markdown_section(r: dict, plot) -> list[str]:
    from gkd.bench.markdown import bars, bold, frac, num, pm, ratio, seconds, table
    from gkd.plots import pyplot

    g, t, best = r["graph"], r["teacher"], r["best"]
    best_row = _quality_best(r)
    seeds = best_row["seeds"]
    summary = (f"The best distilled student, **{best['gnn']}/{best['method']}**, reaches {best['acc_mean']:.3f} test "
               f"accuracy: **{ratio(r['best_vs_vanilla_acc_ratio'])}** the best vanilla GNN "
               f"({r['best_vanilla']['gnn']}, {r['best_vanilla']['acc_mean']:.3f}).")
    if best_row.get("teacher_nodes_acc_mean") is not None:
        summary += (f" On the teacher's {num(t['tuned']['nodes'])} test nodes it scores "
                    f"{best_row['teacher_nodes_acc_mean']:.3f}, "
                    f"**{ratio(r.get('student_vs_tuned_teacher_acc_ratio'))}** the tuned teacher "
                    f"({_tuned_acc(r):.3f}; zero-shot {t['zero_shot']['acc_mean']:.3f}).")
    tuning = t.get("tuning") or {}
    if "examples" in tuning and "wall_s" in tuning:
        summary += f" The teacher was tuned on {num(tuning['examples'])} examples in {seconds(tuning['wall_s'])}."
    compute = quality_compute(r)
    if compute:
        summary += (" Compute behind these numbers, from the walls each part recorded when it ran (a rerun reuses "
                    f"finished parts): {compute['text']} = **{seconds(compute['total_s'])}**, not counting text "
                    "encoding, rationale generation and each run's Ray start-up.")
    out = [f"Graph **{g['name']}**: {num(g['num_nodes'])} nodes, {num(g['num_edges'])} edges, "
           f"{g['num_classes']} classes; {g['train_per_class']} training and {g['val_per_class']} validation "
           f"labels per class, {num(g['test_nodes'])} test nodes.", "", summary, "",
           f"Students: mean ± std over seeds {seeds}, accuracy and macro-F1 on all {num(g['test_nodes'])} test nodes. "
           f"Teacher rows: on its own {num(t['tuned']['nodes'])} test nodes, ± std over {t['std_over']}. "
           "'acc on teacher's nodes' puts every student on the teacher's test nodes.", ""]
    rows = []
    for name in ("zero_shot", "tuned"):
        tr = t[name]
        rows.append([f"teacher LLM ({name.replace('_', '-')})", "–", "–", pm(tr["f1_mean"], tr["f1_std"]),
                     pm(tr["acc_mean"], tr["acc_std"]), "–", "–"])
    for row in r["rows"]:
        cells = [row["gnn"], row["method"], pm(row["acc_mean"], row["acc_std"]), pm(row["f1_mean"], row["f1_std"]),
                 frac(row.get("teacher_nodes_acc_mean")), frac(row.get("val_acc_mean")),
                 seconds(row["train_wall_s_mean"])]
        rows.append([bold(c) for c in cells[:3]] + cells[3:] if row is best_row else cells)
    out += table(["GNN", "method", "test acc", "macro-F1", "acc on teacher's nodes", "val acc", "train wall / seed"],
                 rows)

    plt = pyplot()
    gnns = list(dict.fromkeys(row["gnn"] for row in r["rows"]))
    methods = list(dict.fromkeys(row["method"] for row in r["rows"]))
    by = {(row["gnn"], row["method"]): row for row in r["rows"]}
    fig, ax = plt.subplots(figsize=(max(7.5, 1.6 * len(gnns) + 0.4 * len(methods) + 2), 4))
    bars(ax, gnns, {m: [by[g_, m]["acc_mean"] if (g_, m) in by else np.nan for g_ in gnns] for m in methods},
         {m: [by[g_, m]["acc_std"] if (g_, m) in by else 0.0 for g_ in gnns] for m in methods})
    for name, style in (("tuned", "--"), ("zero_shot", ":")):
        ax.axhline(t[name]["acc_mean"], color="black", ls=style, lw=1,
                   label=f"teacher {name.replace('_', '-')} ({num(t[name]['nodes'])} nodes)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{g['name']}: students by GNN and method (± std over {len(seeds)} seeds)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    out.append(plot(fig, "quality_acc.png", "test accuracy by GNN and method"))

    sweep = r.get("sweep")
    if sweep:
        out += ["", f"### Label-rate sweep ({sweep['gnn']})", "",
                f"Test accuracy and macro-F1 on {num(sweep['test_nodes'])} test nodes as the labels per class grow "
                "(mean ± std over seeds)." + (f" {sweep['note'][:1].upper()}{sweep['note'][1:].rstrip('.')}."
                                             if sweep.get("note") else ""), ""]
        smethods = sweep["methods"]
        cell = {(row["labels_per_class"], row["method"]): row for row in sweep["rows"]}
        header = ["labels / class"] + [f"{m} {k}" for m in smethods for k in ("acc", "F1")]
        header += [f"{m} vs {smethods[0]}" for m in smethods[1:]]
        rows = []
        for rate in sweep["rates"]:
            line = [str(rate)]
            for m in smethods:
                c = cell.get((rate, m))
                line += [pm(c["acc_mean"], c["acc_std"]), pm(c["f1_mean"], c["f1_std"])] if c else ["–", "–"]
            base = cell.get((rate, smethods[0]))
            for m in smethods[1:]:
                c = cell.get((rate, m))
                line.append(ratio(c["acc_mean"] / base["acc_mean"]) if c and base else "–")
            rows.append(line)
        out += table(header, rows)
        fig, ax = plt.subplots(figsize=(6, 3.8))
        for m in smethods:
            pts = [(rate, cell[rate, m]) for rate in sweep["rates"] if (rate, m) in cell]
            x = np.array([p[0] for p in pts], float)
            mean = np.array([p[1]["acc_mean"] for p in pts])
            std = np.array([p[1]["acc_std"] for p in pts])
            ax.plot(x, mean, marker="o", label=m)
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sweep["rates"], [str(x) for x in sweep["rates"]])
        ax.set_xlabel("labels per class (log2 axis)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{g['name']}, {sweep['gnn']}: accuracy vs labels per class")
        ax.grid(alpha=0.3)
        ax.legend()
        out.append(plot(fig, "quality_sweep.png", "accuracy vs labels per class"))
    return out


def markdown_losses(r: dict) -> list[str]:
    from gkd.bench.markdown import num, ratio

    out = []
    bv = r["best_vanilla"]
    below = [row for row in r["rows"] if row["method"] != "vanilla" and row["acc_mean"] < bv["acc_mean"]]
    if below:
        out.append(f"{len(below)} of {sum(row['method'] != 'vanilla' for row in r['rows'])} distilled students are "
                   f"below the best vanilla GNN ({bv['gnn']}/vanilla, {bv['acc_mean']:.3f}): "
                   + ", ".join(f"{row['gnn']}/{row['method']} {row['acc_mean']:.3f}" for row in below) + ".")
    vanilla = {row["gnn"]: row for row in r["rows"] if row["method"] == "vanilla"}
    for method in dict.fromkeys(row["method"] for row in r["rows"] if row["method"] != "vanilla"):
        pairs = [(row, vanilla[row["gnn"]]) for row in r["rows"] if row["method"] == method and row["gnn"] in vanilla]
        if pairs and all(row["acc_mean"] < v["acc_mean"] for row, v in pairs):
            out.append(f"`{method}` is below vanilla training on every GNN: " + ", ".join(
                f"{row['gnn']} {row['acc_mean']:.3f} vs {v['acc_mean']:.3f}" for row, v in pairs) + ".")
    student = _quality_best(r).get("teacher_nodes_acc_mean")
    if student is not None and _tuned_acc(r) < student:
        out.append(f"The tuned teacher LLM ({_tuned_acc(r):.3f} on its {num(r['teacher']['tuned']['nodes'])} test "
                   f"nodes) is below its own best student on the same nodes ({student:.3f}, "
                   f"{ratio(r.get('student_vs_tuned_teacher_acc_ratio'))}): the student learns more from the graph "
                   "and the labels than from the teacher.")
    sweep = r.get("sweep")
    if sweep:
        base, *others = sweep["methods"]
        cell = {(row["labels_per_class"], row["method"]): row for row in sweep["rows"]}
        for m in others:
            lost = [(rate, cell[rate, m]["acc_mean"], cell[rate, base]["acc_mean"]) for rate in sweep["rates"]
                    if (rate, m) in cell and (rate, base) in cell
                    and cell[rate, m]["acc_mean"] < cell[rate, base]["acc_mean"]]
            if lost:
                out.append(f"Label-rate sweep ({sweep['gnn']}): `{m}` is below `{base}` at "
                           + ", ".join(f"{rate} labels/class ({a:.3f} vs {b:.3f})" for rate, a, b in lost) + ".")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
