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

from gkd.bench.report import write_result
from gkd.config import ExperimentConfig, build_config, load_config

log = logging.getLogger("gkd.bench.quality")

METHODS = ["vanilla", "kd", "lingugkd", "pan", "all"]
MESSAGE_PASSING = ("gcn", "sage", "gat", "gin")
READS_RATIONALES = ("pan", "all")  # the methods whose student reads the rationale stage (the interpreter)

# gnns: the students (labels only, "vanilla", and each distilled method when the profile has the LLM world);
# tune: the students whose width / regularisation the val sweep chooses (the message-passing ones take the
# first's winner); grid: what that sweep tries; rates: the label-rate sweep; rate_baselines: the plain
# baselines shown there (all of them at the graph's own split); share_rates: the LLM's share (the gkd student
# with vs without the teacher tuned on that rate's labels); share_methods at methods_rate: the same for every
# distillation method on every GNN
_FULL = {"gnns": ["gcn", "sage", "gat", "gin", "sign"], "methods": METHODS, "llm": True, "seeds": 3,
         "rates": [5, 10, 20, 50], "share_rates": [5, 10, 20, 50], "groups": 3, "tune": ["sage", "sign"],
         "share_methods": ["kd", "lingugkd", "pan", "all"], "methods_rate": 20,
         "grid": {"sage": [{"hidden": h, "weight_decay": 0.0, "jk": jk} for jk in (False, True) for h in (128, 256)],
                  "sign": [{"hidden": h, "weight_decay": wd} for h in (128, 256) for wd in (0.0, 5e-4)]},
         "rate_baselines": ["sign"]}
PROFILES = {
    "full": _FULL,
    # the same without the LLM world (no rationale, teacher or distilled methods): the labels-only bars
    "labels": {**_FULL, "methods": ["vanilla"], "llm": False, "share_rates": [], "methods_rate": None},
    # only the LLM's share (with vs without the teacher, per label rate): the teacher is tuned per rate
    "share": {**_FULL, "share_only": True, "methods_rate": None},
    # only the share of every distillation method on every GNN at methods_rate (its rate's teacher, as "share")
    "methods": {**_FULL, "share_only": True, "share_rates": []},
    "quick": {"gnns": ["sage", "sign"], "methods": ["vanilla", "lingugkd"], "llm": True, "seeds": 1, "rates": [2, 6],
              "share_rates": [6], "share_methods": ["lingugkd"], "methods_rate": 6,
              "groups": 3, "tune": ["sage", "sign"],
              "grid": {"sage": [{"hidden": 16}, {"hidden": 16, "jk": True}], "sign": [{"hidden": 16}, {"hidden": 32}]},
              "rate_baselines": ["sign"]},
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
    """Graph, rationales and the tuned teacher (+ its outputs) in `workdir`; reused when already there. A
    profile without the LLM world stops at the graph."""
    from gkd.pipeline import run_stage
    from gkd.stages import pipeline

    cfg = world_graph(profile, workdir, overrides)
    if PROFILES[profile]["llm"]:
        for rec in pipeline()[1:3]:  # the stages between the graph and the students: rationale, teacher
            run_stage(cfg, rec, track=False)
    return cfg


def _student_cfg(cfg: ExperimentConfig, gnn: str, method: str, seed: int, tag: str = "", **distill):
    from gkd.gnn.stage import DISTILL, REFINE

    name = f"{gnn}-{method}-s{seed}{tag}"
    if distill.get("labels_per_class"):
        name = f"sweep-{gnn}-{method}-k{distill['labels_per_class']}-s{seed}{tag}"
    out = cfg.workdir / "students" / name
    c = cfg.model_copy(deep=True)
    c.distill = c.distill.model_copy(update={
        "gnn": gnn, "method": method, "seed": seed, **distill,
        "interpreter_dir": cfg.workdir / "students" / f"{gnn}-interpreter-s{seed}"})
    c.stage_dirs = {**cfg.stage_dirs, DISTILL.name: out, REFINE.name: out / "refined"}
    return c, out


def student(cfg: ExperimentConfig, gnn: str, method: str, seed: int, tag: str = "", **distill) -> tuple[dict, Path]:
    """One distill stage into <workdir>/students/<name> (-> its metrics, its folder); the interpreter is shared
    per gnn and seed. tag names a sweep point."""
    from gkd.gnn.stage import DISTILL
    from gkd.pipeline import run_stage

    c, out = _student_cfg(cfg, gnn, method, seed, tag, **distill)
    return run_stage(c, DISTILL, track=False)["summary"], out


def refined(cfg: ExperimentConfig, gnn: str, method: str, seed: int, glnn: bool = False, tag: str = "",
            **distill) -> dict:
    """The refine stage on the student `student(cfg, gnn, method, seed, tag, **distill)` trained (into its
    folder/refined; GLNN only when asked) -> its metrics."""
    from gkd.gnn.stage import REFINE
    from gkd.pipeline import run_stage

    c, _ = _student_cfg(cfg, gnn, method, seed, tag, **distill)
    c.refine = c.refine.model_copy(update={"glnn": glnn})
    if glnn:
        c.stage_dirs = {**c.stage_dirs, REFINE.name: c.stage_dirs[REFINE.name].with_name("refined-glnn")}
    return run_stage(c, REFINE, track=False)["summary"]


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
        if got and all((r.get("holdout") or {}).get("acc") is not None for r in got):
            row["holdout_acc_mean"] = mean_std([r["holdout"]["acc"] for r in got])[0]
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
        {"test": {k: v for k, v in m["test"].items() if k != "per_class"}, "refined": False} | extra


def _refined_record(m: dict, r: dict, **extra) -> dict:
    """The refined version of a student run: the refine stage's numbers in a run record's shape."""
    return _record(m, **extra) | {"refined": True, "test": r["refined"]["test"], "val": r["refined"]["val"],
                                  "teacher_nodes": {}, "choice": r["choice"]}


def _split(g, k: int | None, pool: int | None, seed: int):
    """The graph with the split a student of this seed trains on (a label-rate split when k is given)."""
    import dataclasses

    from gkd.gnn.inputs import label_rate_split

    if k is None:
        return g
    return dataclasses.replace(g, split=label_rate_split(g.split, g.y, k, pool, seed)[0])


def baseline_runs(cfg: ExperimentConfig, names: list[str], seeds: int, k: int | None = None,
                  pool: int | None = None) -> list[dict]:
    """The plain baselines (gkd.gnn.baselines) on the students' features, labels and splits, each raw and
    refined (gkd.gnn.refine with the experiment's refine config): one record per (name, seed, raw|refined).
    Kept in <workdir>/baselines/<key>.json, key = the graph's and the refine config's content hashes and the
    arguments: a rerun of the suite reuses them."""
    import hashlib

    from gkd.config import content, content_hash

    key = hashlib.sha256(json.dumps([content_hash(cfg, "ingest"), content(cfg.refine), names, seeds, k, pool,
                                     cfg.distill.num_layers]).encode()).hexdigest()[:16]
    done = cfg.workdir / "baselines" / f"{key}.json"
    if done.is_file():
        return json.loads(done.read_text())
    runs = _baseline_runs(cfg, names, seeds, k, pool)
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(runs))
    return runs


def _baseline_runs(cfg: ExperimentConfig, names: list[str], seeds: int, k: int | None, pool: int | None) -> list[dict]:
    from gkd.data.store import TAG
    from gkd.gnn.baselines import baseline_logits
    from gkd.gnn.distill import evaluate_logits
    from gkd.gnn.inputs import TEST, VAL, graph_arrays
    from gkd.gnn.propagate import hop_features, sym_adjacency
    from gkd.gnn.refine import refine

    tag = TAG.load(cfg.graph_dir)
    g0 = graph_arrays(tag)
    hops = cfg.distill.num_layers
    hop_x = hop_features(g0.x, g0.indptr, g0.indices, hops) if {"sgc", "sign"} & set(names) else None
    adj = sym_adjacency(g0.indptr, g0.indices)
    rc = cfg.refine
    runs = []
    for seed in range(seeds):
        g = _split(g0, k, pool, seed)
        test, val = np.flatnonzero(g.split == TEST), np.flatnonzero(g.split == VAL)
        for name in names:
            logits, chosen = baseline_logits(name, g, seed=seed, hops=hops, hop_x=hop_x)
            ref = refine(logits, g.y, g.split, adj, rc.prior, rc.correct_alphas, rc.smooth_alphas, rc.iterations)
            base = {"gnn": name, "method": "baseline", "seed": seed, "chosen": chosen, "labels_per_class": k,
                    "train_wall_s": chosen["wall_s"], "teacher_nodes": {}}
            runs.append(base | {"refined": False, "test": evaluate_logits(logits, g.y, test),
                                "val": evaluate_logits(logits, g.y, val)})
            pr = np.log(ref.probs + 1e-9)
            runs.append(base | {"refined": True, "test": evaluate_logits(pr, g.y, test),
                                "val": evaluate_logits(pr, g.y, val), "choice": ref.choice})
            log.info("baseline %s seed %d%s: test acc %.4f raw, %.4f refined", name, seed,
                     f" ({k} labels/class)" if k else "", runs[-2]["test"]["acc"], runs[-1]["test"]["acc"])
    return runs


def tune(cfg: ExperimentConfig, p: dict) -> dict:
    """The val sweep: each tuned student (seed 0, labels only) at every grid point -> the winner by val acc
    (ties: the earlier point). Test accuracy is recorded for the reader, never read."""
    points, chosen = [], {}
    for gnn in p["tune"]:
        for i, params in enumerate(p["grid"][gnn]):
            m, _ = student(cfg, gnn, "vanilla", 0, tag=f"-g{i}" if i else "", **params)
            points.append({"gnn": gnn, "params": params, "val_acc": m["val"]["acc"],
                           "best_epoch": m["best_epoch"], "epochs_run": m["epochs_run"],
                           "train_wall_s": m["train_wall_s"], "test_acc": m["test"]["acc"]})
        best = max((pt for pt in points if pt["gnn"] == gnn), key=lambda pt: pt["val_acc"])
        chosen[gnn] = best["params"]
    return {"grid": p["grid"], "points": points, "chosen": chosen, "chosen_on": "val accuracy (seed 0)"}


def _params(chosen: dict, gnn: str, p: dict) -> dict:
    """A student's sweep-chosen settings: its own, else the first tuned message-passing student's."""
    if gnn in chosen:
        return chosen[gnn]
    first = next((g for g in p["tune"] if g in MESSAGE_PASSING), None)
    return chosen.get(first, {})


def _index(gnn: str, params: dict, p: dict) -> str:
    """The name tag of a tuning run with these settings (so the students reuse it), "" if none."""
    grid = p["grid"].get(gnn, [])
    i = grid.index(params) if params in grid else 0
    return f"-g{i}" if i else ""


def _row(rows: list[dict], **match) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def share_teacher(cfg: ExperimentConfig, k: int, pool: int) -> tuple[ExperimentConfig, dict]:
    """The teacher of label rate k: tuned on that rate's labels only (the students' draw, label_seed 0), its
    outputs, calibration and budget under <workdir>/share/k<k>/ -> (the config its students use, its metrics)."""
    from gkd.llm.stage import RATIONALE, TEACHER
    from gkd.pipeline import run_stage

    c = cfg.model_copy(deep=True)
    root = cfg.workdir / "share" / f"k{k}"
    c.stage_dirs = {**cfg.stage_dirs, TEACHER.name: root / "teacher", RATIONALE.name: root / "rationale"}
    c.teacher = c.teacher.model_copy(update={"labels_per_class": k, "label_pool_per_class": pool, "label_seed": 0,
                                             "zero_shot": False})
    if cfg.distill.method in READS_RATIONALES:
        run_stage(c, RATIONALE, track=False)
    return c, run_stage(c, TEACHER, track=False)["summary"]


def llm_share(cfg: ExperimentConfig, p: dict, gnn: str, params: dict, pool: int) -> tuple[list[dict], dict]:
    """The LLM's share: per label rate, the full gkd student (cfg.distill.method, refined) against the same
    student without the teacher (vanilla, refined): same GNN and settings, label draw, seeds and refinement.
    -> (runs, {rate: {points, std, with/without accuracy, teacher accuracy, coverage, ...}})."""
    method = cfg.distill.method if cfg.distill.method != "vanilla" else "lingugkd"
    cap = p.get("share_teacher_cap")
    runs, by_rate = [], {}
    for k in p["share_rates"]:
        # a capped teacher (rates above the cap) is the cap's: tuned on the first `cap` of this rate's labels per
        # class (label_rate_split nests the rates), so it knows fewer labels than its students, never more
        kt = min(k, cap) if cap else k
        c, tm = share_teacher(cfg, kt, pool)
        rate = {"labels_per_class": k, "label_pool_per_class": pool, "label_seed": 0}
        diffs, raw_diffs = [], []
        for seed in range(p["seeds"]):
            got = {}
            for m_name in ("vanilla", method):
                m, _ = student(c, gnn, m_name, seed, tag="-share", **params, **rate)
                r = refined(c, gnn, m_name, seed, tag="-share", **params, **rate)
                extra = {"labels_per_class": k, "share": "with" if m_name != "vanilla" else "without",
                         "test_nodes": m["inputs"]["label_rate"]["test_nodes"], "inputs": m["inputs"]}
                runs += [_record(m, **extra), _refined_record(m, r, **extra)]
                got[m_name] = (m["test"]["acc"], r["refined"]["test"]["acc"])
            diffs.append(100 * (got[method][1] - got["vanilla"][1]))
            raw_diffs.append(100 * (got[method][0] - got["vanilla"][0]))
            log.info("LLM share at %d labels/class, seed %d: %s refined %.4f vs vanilla %.4f (%+.2f points)", k,
                     seed, method, got[method][1], got["vanilla"][1], diffs[-1])
        pts, sd = mean_std(diffs)
        rows = [r for r in runs if r["labels_per_class"] == k]
        acc = lambda share, ref: mean_std([r["test"]["acc"] for r in rows if r["share"] == share
                                           and r["refined"] == ref])[0]
        taught = tm.get("taught_nodes", tm.get("covered_nodes"))
        tuning = tm.get("tuning", {})
        by_rate[str(k)] = {
            "teacher_labels_per_class": kt, "taught_labelled": _taught_labelled(c, k, pool),
            "points": round(pts, 2), "std": round(sd, 2), "raw_points": round(mean_std(raw_diffs)[0], 2),
            "with_refined": acc("with", True), "without_refined": acc("without", True),
            "with_raw": acc("with", False), "without_raw": acc("without", False),
            "teacher_acc": tm["tuned"]["acc"], "teacher_test_nodes": tm["test_nodes"],
            "teacher_val_acc": (tm.get("val") or {}).get("acc"), "teacher_val_ece": (tm.get("val") or {}).get("ece"),
            "teacher_scoring": tuning.get("scoring"), "teacher_examples": tuning.get("examples"),
            "teacher_tuning_wall_s": tuning.get("wall_s"), "teacher_outputs_wall_s": (tm.get("outputs") or {}).get(
                "wall_s"),
            "teacher_curve": [{"minutes": round(e.get("train_s", 0) / 60, 1), "val_acc": e.get("val_acc"),
                               "epoch": e.get("epoch")} for e in tuning.get("epochs", [])],
            "taught_nodes": taught,
            # the targets the calibrated students dropped (only a run with the teacher reads it)
            "dropped_below_floor": next((r["inputs"].get("teacher_dropped_below_floor") for r in rows
                                         if r["share"] == "with"), None),
            "points_per_1000_taught": round(pts / (taught / 1000), 2) if taught else None,
            "seeds": p["seeds"], "method": method, "gnn": gnn}
    return runs, by_rate


def _taught_labelled(c: ExperimentConfig, k: int, pool: int) -> int | None:
    """How many of the teacher's taught nodes carry a training label at rate k (a capped teacher chose its
    budget among its own rate's unlabelled nodes; some of them are labelled at a higher rate)."""
    from gkd.data.store import TAG
    from gkd.gnn.inputs import TRAIN, label_rate_split, split_codes
    from gkd.llm.stage import TEACHER

    path = c.stage_dir(TEACHER) / "taught.npy"
    if not path.is_file():
        return None
    tag = TAG.load(c.graph_dir, features=False)
    codes, _ = label_rate_split(split_codes(tag.split), tag.labels, k, pool, 0)
    return int((np.load(path).astype(bool) & (codes == TRAIN)).sum())


def share_acc_points(by_rate: dict, rate: int = 20) -> float | None:
    """llm_share_acc_points: the share at `rate` labels per class (the issue's 20), else at the largest rate."""
    if not by_rate:
        return None
    key = str(rate) if str(rate) in by_rate else max(by_rate, key=int)
    return by_rate[key]["points"]


def methods_vs_vanilla(runs: list[dict]) -> dict:
    """{gnn: {method: {"raw"|"refined": {points, std, seeds}}}}: each distilled method minus the same GNN trained on
    labels alone (vanilla), per seed, mean ± std in points of test accuracy; seeds only where both ran."""
    out: dict = {}
    for gnn in dict.fromkeys(r["gnn"] for r in runs):
        mine = [r for r in runs if r["gnn"] == gnn]
        for method in dict.fromkeys(r["method"] for r in mine if r["method"] != "vanilla"):
            cell = {}
            for refined in (False, True):
                acc = {(r["method"], r["seed"]): r["test"]["acc"] for r in mine if bool(r["refined"]) == refined}
                seeds = sorted(s for (m, s) in acc if m == method and ("vanilla", s) in acc)
                if not seeds:
                    continue
                pts, sd = mean_std([100 * (acc[method, s] - acc["vanilla", s]) for s in seeds])
                cell["refined" if refined else "raw"] = {"points": round(pts, 2), "std": round(sd, 2), "seeds": seeds}
            out.setdefault(gnn, {})[method] = cell
    return out


def below_vanilla(table: dict) -> list[dict]:
    """The (gnn, method) cells of a methods_vs_vanilla table whose mean is below vanilla, raw or refined."""
    return [{"gnn": g, "method": m, **{k: v["points"] for k, v in cell.items()}}
            for g, methods in table.items() for m, cell in methods.items()
            if any(v["points"] < 0 for v in cell.values())]


def method_share(cfg: ExperimentConfig, p: dict, chosen: dict, pool: int,
                 progress=None) -> tuple[list[dict], dict]:
    """Every distillation method in p["share_methods"] on every GNN in p["gnns"] against the same GNN without the
    teacher, at p["methods_rate"] labels per class with that rate's teacher (the one `llm_share` uses), raw and
    refined, seeds as the profile -> (runs, the result's fields: see `method_fields`). The methods without
    rationales run first on every GNN, then the rationale stage and the methods that read it. `progress(runs,
    fields)`, when given, is called after each GNN's runs of a group (a stopped suite keeps what it measured)."""
    from gkd.llm.stage import RATIONALE
    from gkd.pipeline import run_stage

    k = p["methods_rate"]
    c, tm = share_teacher(cfg, k, pool)
    rate = {"labels_per_class": k, "label_pool_per_class": pool, "label_seed": 0}
    later = tuple(m for m in p["share_methods"] if m in READS_RATIONALES)
    runs = []
    for methods in (("vanilla", *(m for m in p["share_methods"] if m not in later)), later):
        if not methods:
            continue
        if methods == later:
            run_stage(c, RATIONALE, track=False)
        for gnn in p["gnns"]:
            params = _params(chosen, gnn, p)
            for seed in range(p["seeds"]):
                for m_name in methods:
                    m, _ = student(c, gnn, m_name, seed, tag="-share", **params, **rate)
                    r = refined(c, gnn, m_name, seed, tag="-share", **params, **rate)
                    extra = {"labels_per_class": k, "share": "with" if m_name != "vanilla" else "without",
                             "test_nodes": m["inputs"]["label_rate"]["test_nodes"]}
                    runs += [_record(m, **extra), _refined_record(m, r, **extra)]
                    log.info("methods at %d labels/class: %s/%s seed %d: test acc %.4f raw, %.4f refined", k, gnn,
                             m_name, seed, m["test"]["acc"], r["refined"]["test"]["acc"])
            if progress is not None:
                progress(runs, method_fields(runs, _methods_at(c, runs, tm, k, p)))
    return runs, method_fields(runs, _methods_at(c, runs, tm, k, p))


def _methods_at(c: ExperimentConfig, runs: list[dict], tm: dict, k: int, p: dict) -> dict:
    from gkd.data.store import read_meta

    meta = read_meta(c.graph_dir)
    return {"labels_per_class": k, "test_nodes": runs[0]["test_nodes"], "graph_nodes": meta["num_nodes"],
            "graph_edges": meta["num_edges"], "teacher_acc": tm["tuned"]["acc"],
            "teacher_test_nodes": tm["test_nodes"], "taught_nodes": tm.get("taught_nodes", tm.get("covered_nodes")),
            "seeds": p["seeds"]}


def method_fields(runs: list[dict], at: dict) -> dict:
    """The result's fields of method-share runs: llm_share_by_method (methods_vs_vanilla of the runs),
    methods_below_vanilla, methods_share_at (the rate, test nodes, teacher; the GNNs and methods in the runs)
    and method_share_rows (mean ± std per GNN, method, raw|refined)."""
    table = methods_vs_vanilla(runs)
    at = {**at, "gnns": list(table), "methods": list(dict.fromkeys(m for cells in table.values() for m in cells))}
    return {"llm_share_by_method": table, "methods_below_vanilla": below_vanilla(table), "methods_share_at": at,
            "method_share_rows": summarize(runs, ("gnn", "method", "refined"))}


def merge_method_runs(prev: dict, runs: list[dict], fields: dict) -> tuple[list[dict], dict]:
    """New method-share runs merged into an earlier result's at the same rate: the (GNN, method) pairs measured
    before and not rerun now are kept (vanilla is rerun, from its finished students, with every method);
    -> (runs, fields). Another rate, graph (nodes, edges, test nodes) or teacher replaces the earlier result."""
    at = {k: v for k, v in fields["methods_share_at"].items() if k not in ("gnns", "methods")}
    before = prev.get("methods_share_at") or {}
    same = ("labels_per_class", "test_nodes", "graph_nodes", "graph_edges", "teacher_acc", "teacher_test_nodes")
    if not before or any(before.get(k, at.get(k)) != at.get(k) for k in same):
        return runs, fields  # another rate, graph or teacher: the earlier pairs are not comparable
    redone = {(r["gnn"], r["method"]) for r in runs}
    runs = [r for r in prev.get("method_share_runs", []) if (r["gnn"], r["method"]) not in redone] + runs
    return runs, method_fields(runs, at)


# what the `share` and `methods` profiles add to a result (run_share, merge_method_runs)
LLM_RUN_FIELDS = ("share_runs", "llm_share_by_rate", "llm_share_acc_points", "share_wall_s", "method_share_runs",
                  "llm_share_by_method", "methods_below_vanilla", "methods_share_at", "method_share_rows",
                  "methods_wall_s")


def kept_llm_runs(out: Path, p: dict) -> dict:
    """A profile without the LLM world (`labels`) rerun into <out>: the LLM-share and method runs already there
    (the `share`/`methods` profiles' hours of teacher tuning) are kept, not dropped, with where they came from
    (`llm_runs_from`: their command and time; methods_share_at names their own graph). A profile that measures
    them itself keeps nothing."""
    if p["llm"] or p["share_rates"] or p.get("methods_rate") or not Path(out).is_file():
        return {}
    prev = json.loads(Path(out).read_text())
    kept = {k: prev[k] for k in LLM_RUN_FIELDS if k in prev}
    if not kept:
        return {}
    source = prev.get("llm_runs_from") or {"command": prev.get("command"), "measured_at": prev.get("measured_at")}
    return {**kept, "llm_runs_from": source}


def run(profile: str, out: Path, workdir: Path, overrides: list | None = None, argv: list[str] | None = None,
        share_rates: list[int] | None = None, share_teacher_cap: int | None = None,
        share_methods: list[str] | None = None) -> dict:
    from gkd.data.store import read_meta
    from gkd.gnn.baselines import BASELINES

    p = {**PROFILES[profile], **({"share_rates": share_rates} if share_rates is not None else {}),
         **({"share_teacher_cap": share_teacher_cap} if share_teacher_cap else {}),
         **({"share_methods": share_methods} if share_methods else {})}
    t0 = time.time()
    if p.get("share_only"):
        return run_share(profile, out, workdir, overrides, argv, share_rates, share_teacher_cap, share_methods)
    cfg = world(profile, workdir, overrides)
    world_s = time.time() - t0
    meta = read_meta(cfg.graph_dir)

    # 1. the plain baselines, raw and refined: the bars
    base_runs = baseline_runs(cfg, list(BASELINES), p["seeds"])
    baselines = [{"name": r.pop("gnn"), **r} for r in summarize(base_runs, ("gnn", "refined"))]
    # 2. width / regularisation of the students, chosen on val
    sweep_val = tune(cfg, p)
    chosen = sweep_val["chosen"]
    # 3. every student over seeds, raw and refined (the refine stage without GLNN)
    runs = []
    for gnn in p["gnns"]:
        params = _params(chosen, gnn, p)
        for seed in range(p["seeds"]):
            for method in p["methods"]:
                tag = _index(gnn, params, p) if method == "vanilla" else ""
                m, _ = student(cfg, gnn, method, seed, tag=tag, **params)
                r = refined(cfg, gnn, method, seed, tag=tag, **params) if method == "vanilla" or p["llm"] else None
                runs.append(_record(m, holdout=m.get("holdout")))
                if r is not None:
                    runs.append(_refined_record(m, r))
                log.info("%s/%s seed %d: test acc %.4f raw, %s refined (%.0f s so far)", gnn, method, seed,
                         m["test"]["acc"], r and r["refined"]["test"]["acc"], time.time() - t0)
    rows = summarize(runs, ("gnn", "method", "refined"))
    raw = [r for r in rows if not r["refined"]]
    distilled = [r for r in raw if r["method"] != "vanilla"]
    best_vanilla = max((r for r in raw if r["method"] == "vanilla"), key=lambda r: r["acc_mean"])
    best = max(distilled, key=lambda r: r["acc_mean"]) if distilled else best_vanilla
    teacher = teacher_groups(cfg, p["groups"]) if p["llm"] else None

    # 4. new nodes: the best labels-only student by val, refined with GLNN as a second candidate; the one val
    #    picks, with its new-node refinement, scored on the nodes held out of the graph (the inductive path)
    #    next to the transductive refined accuracy
    pick = max((r for r in raw if r["method"] == "vanilla"), key=lambda r: r["val_acc_mean"])
    gparams = _params(chosen, pick["gnn"], p)
    glnn_runs = []
    for seed in range(p["seeds"]):
        r = refined(cfg, pick["gnn"], "vanilla", seed, glnn=True, tag=_index(pick["gnn"], gparams, p), **gparams)
        glnn_runs.append({"gnn": pick["gnn"], "seed": seed, "refined_test": r["refined"]["test"],
                          "raw_holdout": r["raw"]["holdout"], "glnn_test": r["glnn"]["test"],
                          "glnn_val": r["glnn"]["val"], "glnn_holdout": r["glnn"]["holdout"],
                          "glnn_train_wall_s": r["glnn"]["train_wall_s"], "choice": r["choice"],
                          "new_holdout": r["new_nodes"]["holdout"], "new_served": r["new_nodes"]["served"],
                          "new_candidates": r["new_nodes"]["candidates"]})
    keys = ("refined_test", "raw_holdout", "glnn_test", "glnn_holdout", "new_holdout")
    inductive = {
        "gnn": pick["gnn"], "chosen_by": "mean val accuracy of the labels-only students",
        "holdout_nodes": glnn_runs[0]["glnn_holdout"]["nodes"],
        "new_served": [g["new_served"] for g in glnn_runs],
        **{f"{k}_mean": mean_std([g[k]["acc"] for g in glnn_runs])[0] for k in keys},
        **{f"{k}_std": mean_std([g[k]["acc"] for g in glnn_runs])[1] for k in keys},
        **{f"{c}_refined_holdout_mean": mean_std([g["new_candidates"][c]["holdout"]["acc"] for g in glnn_runs])[0]
           for c in ("student", "glnn")},
        "runs": glnn_runs}

    sgnn = pick["gnn"]
    pool = max(p["rates"])
    sweep_runs: list[dict] = []
    sign_raw = _row(baselines, name="sign", refined=False)
    mp_raw = [r for r in raw if r["method"] == "vanilla" and r["gnn"] in MESSAGE_PASSING]
    best_mp = max(mp_raw, key=lambda r: r["acc_mean"]) if mp_raw else None
    best_refined = max((r for r in rows if r["refined"]), key=lambda r: r["acc_mean"])
    best_base_refined = max((r for r in baselines if r["refined"]), key=lambda r: r["acc_mean"])
    best_teacher_nodes = best.get("teacher_nodes_acc_mean")
    result = {
        "profile": profile,
        "graph": {"name": meta["name"], "num_nodes": meta["num_nodes"], "num_edges": meta["num_edges"],
                  "num_classes": meta["num_classes"], "train_per_class": cfg.ingest.split.train_per_class,
                  "val_per_class": cfg.ingest.split.val_per_class, "test_nodes": meta["split_sizes"].get("test"),
                  "holdout_nodes": meta["split_sizes"].get("holdout", 0),
                  "text": getattr(cfg.ingest.source, "text", None)},
        "teacher": teacher,
        "baselines": baselines,
        "rows": rows,
        "tuning": sweep_val,
        "inductive": inductive,
        "best": {k: best[k] for k in ("gnn", "method", "acc_mean", "f1_mean")},
        "best_vanilla": {k: best_vanilla[k] for k in ("gnn", "method", "acc_mean", "f1_mean")},
        "best_vs_vanilla_acc_ratio": round(best["acc_mean"] / best_vanilla["acc_mean"], 3) if distilled else None,
        "best_message_passing": best_mp and {k: best_mp[k] for k in ("gnn", "acc_mean", "acc_std")},
        "best_refined": {k: best_refined[k] for k in ("gnn", "method", "acc_mean", "acc_std")},
        "best_baseline_refined": {k: best_base_refined[k] for k in ("name", "acc_mean", "acc_std")},
        # the goals: labels-only message passing vs SIGN raw; refined gkd vs refined baselines; new nodes
        "plain_student_vs_sign_raw_ratio": (round(best_mp["acc_mean"] / sign_raw["acc_mean"], 3)
                                            if best_mp and sign_raw else None),
        "best_refined_vs_baseline_refined_ratio": round(best_refined["acc_mean"] / best_base_refined["acc_mean"], 3),
        # what Serve answers a new node with (the val-chosen student, refined for new nodes) vs known nodes
        "inductive_vs_transductive_acc_gap": round(100 * (inductive["refined_test_mean"]
                                                          - inductive["new_holdout_mean"]), 2),
        # on the teacher's own test nodes (the student's mean over seeds there vs the tuned teacher's accuracy)
        "student_vs_tuned_teacher_acc_ratio": (round(best_teacher_nodes / teacher["tuned"]["acc_all"], 2)
                                               if teacher and best_teacher_nodes and teacher["tuned"]["acc_all"]
                                               else None),
        # every distilled method against the same GNN on labels alone, at the graph's split with its teacher
        "methods_vs_vanilla": methods_vs_vanilla(runs),
        "distill_config": cfg.distill.model_dump(mode="json"),
        "refine_config": cfg.refine.model_dump(mode="json"),
        "runs": runs, "baseline_runs": base_runs,
        "world_wall_s": round(world_s, 1), "wall_s": round(time.time() - t0, 1),
    }
    result.update(kept_llm_runs(out, p))
    # written before the label-rate sweep too: a suite stopped during the sweep keeps everything above
    write_result(out, result, "gkd.bench.quality", argv)

    # 5. label-rate sweep: the baselines shown there and the best labels-only student, raw and refined
    for k in p["rates"]:
        sweep_runs += [dict(r, method=r["gnn"], labels_per_class=k)
                       for r in baseline_runs(cfg, p["rate_baselines"], p["seeds"], k, pool)]
        for seed in range(p["seeds"]):
            rate = {"labels_per_class": k, "label_pool_per_class": pool}
            tag = _index(sgnn, gparams, p)
            m, _ = student(cfg, sgnn, "vanilla", seed, tag=tag, **gparams, **rate)
            r = refined(cfg, sgnn, "vanilla", seed, tag=tag, **gparams, **rate)
            extra = {"labels_per_class": k, "test_nodes": m["inputs"]["label_rate"]["test_nodes"]}
            sweep_runs += [_record(m, **extra, method=f"{sgnn} (gkd)"),
                           _refined_record(m, r, **extra, method=f"{sgnn} (gkd)")]
    sweep_rows = summarize(sweep_runs, ("labels_per_class", "method", "refined"))

    result["sweep"] = {
        "gnn": sgnn, "methods": [*p["rate_baselines"], f"{sgnn} (gkd)"], "rates": p["rates"],
        "label_pool_per_class": pool, "test_nodes": sweep_runs[-1]["test_nodes"], "rows": sweep_rows,
        "note": f"every rate is scored on the same test nodes: the first {pool} nodes of each class (train split "
                "first) are out of test at every rate; raw and refined (temperature, class prior and Correct & "
                "Smooth chosen on val) for each"}
    result.update(sweep_runs=sweep_runs, wall_s=round(time.time() - t0, 1))
    if p["share_rates"]:
        write_result(out, result, "gkd.bench.quality", argv)
        share_runs, by_rate = llm_share(cfg, p, sgnn, gparams, pool)
        result.update(share_runs=share_runs, llm_share_by_rate=by_rate, llm_share_acc_points=share_acc_points(by_rate),
                      wall_s=round(time.time() - t0, 1))
    if p.get("methods_rate"):
        write_result(out, result, "gkd.bench.quality", argv)

        def progress(runs: list[dict], fields: dict) -> None:  # what is measured so far, marked unfinished
            write_result(out, {**result, "method_share_runs": runs, **fields, "methods_unfinished": True},
                         "gkd.bench.quality", argv)

        method_runs, fields = method_share(cfg, p, chosen, pool, progress)
        result.update(method_share_runs=method_runs, **fields, wall_s=round(time.time() - t0, 1))
    return write_result(out, result, "gkd.bench.quality", argv)


def run_share(profile: str, out: Path, workdir: Path, overrides: list | None = None,
              argv: list[str] | None = None, share_rates: list[int] | None = None,
              share_teacher_cap: int | None = None, share_methods: list[str] | None = None) -> dict:
    """The `share` and `methods` profiles: the LLM's share alone, on the graph and the student the full suite
    would pick (the chosen settings are read from <out> when a full/labels result is there, else the config's),
    per label rate and/or for every method on every GNN at methods_rate. Rates already in <out> and not rerun are
    kept."""
    p = {**PROFILES[profile], **({"share_rates": share_rates} if share_rates is not None else {}),
         **({"share_teacher_cap": share_teacher_cap} if share_teacher_cap else {}),
         **({"share_methods": share_methods} if share_methods else {})}
    t0 = time.time()
    cfg = world_graph(profile, workdir, overrides)
    prev = json.loads(out.read_text()) if out.is_file() else {}
    gnn = (prev.get("inductive") or {}).get("gnn") or cfg.distill.gnn
    params = _params((prev.get("tuning") or {}).get("chosen", {}), gnn, p)
    share_runs, by_rate = llm_share(cfg, p, gnn, params, max(p["rates"]))
    rerun = {r["labels_per_class"] for r in share_runs}
    share_runs = [r for r in prev.get("share_runs", []) if r["labels_per_class"] not in rerun] + share_runs
    by_rate = dict(sorted({**prev.get("llm_share_by_rate", {}), **by_rate}.items(), key=lambda kv: int(kv[0])))
    result = {**prev, "main_command": prev.get("main_command", prev.get("command")), "share_runs": share_runs,
              "llm_share_by_rate": by_rate,
              "llm_share_acc_points": share_acc_points(by_rate)}
    if rerun:  # a methods-only run leaves the share runs' own wall time alone
        result["share_wall_s"] = round(time.time() - t0, 1)
    result.setdefault("profile", profile)
    result.pop("llm_runs_from", None)  # the LLM runs' command is now this one
    if p.get("methods_rate"):
        # the share rates just measured are kept if the methods run is stopped; a methods-only run writes
        # nothing under its own command until it has measured something
        if rerun:
            write_result(out, result, "gkd.bench.quality", argv)

        def merged(runs: list[dict], fields: dict) -> dict:
            runs, fields = merge_method_runs(prev, runs, fields)
            return {**result, "method_share_runs": runs, **fields, "methods_wall_s": round(time.time() - t0, 1)}

        def progress(runs: list[dict], fields: dict) -> None:  # what is measured so far, marked unfinished
            write_result(out, {**merged(runs, fields), "methods_unfinished": True}, "gkd.bench.quality", argv)

        result = merged(*method_share(cfg, p, (prev.get("tuning") or {}).get("chosen", {}), max(p["rates"]),
                                      progress))
        result.pop("methods_unfinished", None)
    return write_result(out, result, "gkd.bench.quality", argv)


def main(argv: list[str] | None = None) -> int:
    from gkd.bench.report import suite_parser
    from gkd.config import parse_overrides
    from gkd.runtime import setup_logging

    parser = suite_parser(__doc__, "quality", PROFILES, "bench/work/quality")
    parser.add_argument("--share-rates", default=None, type=lambda v: [int(x) for x in v.split(",") if x.strip()],
                        help="labels per class of the LLM-share runs, comma-separated (default: the profile's)")
    parser.add_argument("--share-methods", default=None, type=lambda v: [x.strip() for x in v.split(",") if x.strip()],
                        help="the distillation methods measured against labels alone at methods_rate, comma-separated "
                             "(default: the profile's)")
    parser.add_argument("--share-teacher-cap", default=None, type=int,
                        help="tune the LLM-share teacher on at most this many labels per class: a rate above it "
                             "reuses the cap's teacher (its labels are a subset of the rate's; default: tune per rate)")
    args = parser.parse_args(argv)
    setup_logging()
    unknown = sorted(set(args.share_methods or []) - set(METHODS) | ({"vanilla"} & set(args.share_methods or [])))
    if unknown:
        parser.error(f"--share-methods: {', '.join(unknown)} not among the distillation methods {METHODS[1:]}")
    run(args.profile, Path(args.out), Path(args.workdir), parse_overrides(args.set), argv, args.share_rates,
        args.share_teacher_cap, args.share_methods)
    return 0


# ---------------------------------------------------------------- BENCHMARKS.md section (gkd.bench.markdown)


MARKDOWN_TITLE = "Quality: gkd students vs plain baselines, raw and refined"


def _tuned_acc(r: dict) -> float:
    """The tuned teacher's accuracy on all its test nodes (what student_vs_tuned_teacher_acc_ratio divides by)."""
    tuned = r["teacher"]["tuned"]
    return tuned.get("acc_all", tuned["acc_mean"])


def _student_rows(r: dict, refined: bool) -> list[dict]:
    return [row for row in r["rows"] if bool(row.get("refined")) == refined]


def markdown_headline(r: dict) -> tuple[str, str]:
    from gkd.bench.markdown import ratio

    br, bb = r["best_refined"], r["best_baseline_refined"]
    return (ratio(r["best_refined_vs_baseline_refined_ratio"]),
            f"test accuracy of the best refined gkd student ({br['gnn']}/{br['method']}, {br['acc_mean']:.3f}) vs "
            f"the best refined plain baseline ({bb['name']}, {bb['acc_mean']:.3f}) on {r['graph']['name']}")


def quality_compute(r: dict) -> dict | None:
    """The measured walls behind a quality result: teacher tuning + teacher outputs + every student's training."""
    from gkd.bench.markdown import seconds

    t = r.get("teacher") or {}
    runs = [x for x in r.get("runs", []) + r.get("sweep_runs", [])  # baselines carry what val chose ("chosen")
            if not x.get("refined") and "chosen" not in x and isinstance(x.get("train_wall_s"), (int, float))]
    # the tuning runs at grid points the students did not reuse, and the GLNN students
    chosen = (r.get("tuning") or {}).get("chosen", {})
    tuning = [pt for pt in (r.get("tuning") or {}).get("points", []) if chosen.get(pt["gnn"]) != pt["params"]]
    glnn = [x for x in (r.get("inductive") or {}).get("runs", []) if isinstance(x.get("glnn_train_wall_s"), (int, float))]
    parts = [(f"teacher tuning {seconds(t[k]['wall_s'])}" if k == "tuning" else
              f"teacher outputs {seconds(t[k]['wall_s'])}", t[k]["wall_s"])
             for k in ("tuning", "outputs") if isinstance((t.get(k) or {}).get("wall_s"), (int, float))]
    if runs:
        parts.append((f"{len(runs)} student trainings {seconds(sum(x['train_wall_s'] for x in runs))}",
                      sum(x["train_wall_s"] for x in runs)))
    if tuning:
        parts.append((f"{len(tuning)} more tuning trainings {seconds(sum(x['train_wall_s'] for x in tuning))}",
                      sum(x["train_wall_s"] for x in tuning)))
    if glnn:
        parts.append((f"{len(glnn)} GLNN trainings {seconds(sum(x['glnn_train_wall_s'] for x in glnn))}",
                      sum(x["glnn_train_wall_s"] for x in glnn)))
    if not parts:
        return None
    return {"text": " + ".join(p for p, _ in parts), "total_s": sum(v for _, v in parts)}


def _goals(r: dict) -> list[str]:
    from collections import Counter

    from gkd.bench.markdown import frac, num, ratio

    out = []
    mp, sign = r.get("best_message_passing"), next((b for b in r["baselines"] if b["name"] == "sign"
                                                    and not b["refined"]), None)
    if mp and sign:
        out.append(f"- Best labels-only message-passing student, raw: **{mp['gnn']} {mp['acc_mean']:.3f}** vs SIGN "
                   f"raw {sign['acc_mean']:.3f}: **{ratio(r['plain_student_vs_sign_raw_ratio'])}**.")
    br, bb = r["best_refined"], r["best_baseline_refined"]
    out.append(f"- Best gkd student refined: **{br['gnn']}/{br['method']} {br['acc_mean']:.3f}** vs the best plain "
               f"baseline refined ({bb['name']} {bb['acc_mean']:.3f}): "
               f"**{ratio(r['best_refined_vs_baseline_refined_ratio'])}**.")
    ind = r["inductive"]
    served = ", ".join(f"{n} x {k}" for k, n in Counter(ind.get("new_served", [])).items())
    out.append(f"- New nodes: on the {num(ind['holdout_nodes'])} test nodes held out of the graph at ingest, what "
               f"Serve answers ({ind['gnn']}, val chose {served or 'glnn'}; its logits through the inductive path, "
               f"then the new-node refinement) scores **{ind.get('new_holdout_mean', ind['glnn_holdout_mean']):.3f}**"
               f", vs {ind['refined_test_mean']:.3f} transductive refined: a gap of "
               f"**{r['inductive_vs_transductive_acc_gap']:.1f} points**. Unrefined there: the student "
               f"{ind['raw_holdout_mean']:.3f}, GLNN {ind['glnn_holdout_mean']:.3f}; refined: the student "
               f"{frac(ind.get('student_refined_holdout_mean'))}, GLNN {frac(ind.get('glnn_refined_holdout_mean'))}.")
    return out


def markdown_section(r: dict, plot) -> list[str]:
    from gkd.bench.markdown import bars, bold, frac, num, pm, seconds, table
    from gkd.plots import pyplot

    g, t = r["graph"], r.get("teacher")
    seeds = r["rows"][0]["seeds"]
    out = [f"Graph **{g['name']}**: {num(g['num_nodes'])} nodes, {num(g['num_edges'])} edges, "
           f"{g['num_classes']} classes; {g['train_per_class']} training and {g['val_per_class']} validation "
           f"labels per class, {num(g['test_nodes'])} test nodes in the graph and {num(g.get('holdout_nodes', 0))} "
           f"held out of it" + (f"; node text `{g['text']}`" if g.get("text") else "") + ".", ""]
    out += _goals(r) + [""]
    compute = quality_compute(r)
    if compute:
        out += ["Compute behind these numbers, from the walls each part recorded when it ran (a rerun reuses finished "
                f"parts): {compute['text']} = **{seconds(compute['total_s'])}**, not counting text encoding, "
                "refinement and each run's Ray start-up.", ""]
    out += [f"Mean ± std over seeds {seeds}, on all test nodes in the graph. *Refined*: temperature scaling, the "
            "unlabeled nodes' class prior (estimated without their labels) and Correct & Smooth, every choice made "
            "on validation accuracy reweighted to that prior. Baselines see the students' own features, labels "
            "and splits.", ""]
    rows = []
    for name in dict.fromkeys(b["name"] for b in r["baselines"]):
        raw = next(b for b in r["baselines"] if b["name"] == name and not b["refined"])
        ref = next((b for b in r["baselines"] if b["name"] == name and b["refined"]), None)
        rows.append([f"baseline: {name}", pm(raw["acc_mean"], raw["acc_std"]),
                     pm(ref["acc_mean"], ref["acc_std"]) if ref else "–", f"{raw['f1_mean']:.3f}",
                     f"{ref['f1_mean']:.3f}" if ref else "–", "–", frac(raw.get("val_acc_mean")), "–"])
    best = r["best_refined"]
    for raw in _student_rows(r, False):
        ref = next((x for x in _student_rows(r, True) if x["gnn"] == raw["gnn"] and x["method"] == raw["method"]),
                   None)
        cells = [f"{raw['gnn']}/{raw['method']}", pm(raw["acc_mean"], raw["acc_std"]),
                 pm(ref["acc_mean"], ref["acc_std"]) if ref else "–", f"{raw['f1_mean']:.3f}",
                 f"{ref['f1_mean']:.3f}" if ref else "–", frac(raw.get("holdout_acc_mean")),
                 frac(raw.get("val_acc_mean")), seconds(raw["train_wall_s_mean"])]
        top = ref is not None and raw["gnn"] == best["gnn"] and raw["method"] == best["method"]
        rows.append([bold(c) for c in cells[:3]] + cells[3:] if top else cells)
    if t:
        for name in ("zero_shot", "tuned"):
            tr = t[name]
            rows.append([f"teacher LLM ({name.replace('_', '-')}, {num(tr['nodes'])} test nodes)",
                         pm(tr["acc_mean"], tr["acc_std"]), "–", f"{tr['f1_mean']:.3f}", "–", "–", "–", "–"])
    out += table(["model", "test acc raw", "test acc refined", "macro-F1 raw", "macro-F1 refined",
                  "held-out nodes (inductive, raw)", "val acc", "train wall / seed"], rows)

    tun = r.get("tuning")
    if tun:
        out += ["### Student settings chosen on validation", "",
                "Each tuned student (seed 0, labels only) at every grid point; the winner by val accuracy is "
                "used for every seed (the message-passing students share the first one's). Test accuracy is "
                "shown, never used.", ""]
        out += table(["student", "settings", "val acc", "best epoch / run", "test acc", "chosen"],
                     [[pt["gnn"], ", ".join(f"{k}={v}" for k, v in pt["params"].items()), f"{pt['val_acc']:.3f}",
                       f"{pt['best_epoch']} / {pt['epochs_run']}", f"{pt['test_acc']:.3f}",
                       "**yes**" if tun["chosen"].get(pt["gnn"]) == pt["params"] else ""] for pt in tun["points"]])

    plt = pyplot()
    names = [f"{b['name']}" for b in r["baselines"] if not b["refined"]]
    names += [f"{x['gnn']}/{x['method']}" for x in _student_rows(r, False)]
    raw_acc = [b["acc_mean"] for b in r["baselines"] if not b["refined"]] + [x["acc_mean"] for x in
                                                                             _student_rows(r, False)]

    def refined_of(label: str) -> float:
        for b in r["baselines"]:
            if b["refined"] and b["name"] == label:
                return b["acc_mean"]
        for x in _student_rows(r, True):
            if f"{x['gnn']}/{x['method']}" == label:
                return x["acc_mean"]
        return np.nan

    fig, ax = plt.subplots(figsize=(max(7.5, 0.9 * len(names) + 2), 4))
    bars(ax, names, {"raw": raw_acc, "refined": [refined_of(n) for n in names]})
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{g['name']}: plain baselines and gkd students, raw and refined")
    ax.legend(fontsize=7)
    fig.tight_layout()
    out.append(plot(fig, "quality_acc.png", "test accuracy, raw and refined"))

    sweep = r.get("sweep")
    if sweep:
        out += ["", "### Label-rate sweep", "",
                f"Test accuracy on {num(sweep['test_nodes'])} test nodes as the labels per class grow (mean ± std "
                "over seeds)." + (f" {sweep['note'][:1].upper()}{sweep['note'][1:].rstrip('.')}."
                                  if sweep.get("note") else ""), ""]
        cell = {(row["labels_per_class"], row["method"], bool(row.get("refined"))): row for row in sweep["rows"]}
        header = ["labels / class"] + [f"{m} {kind}" for m in sweep["methods"] for kind in ("raw", "refined")]
        rows = []
        for rate in sweep["rates"]:
            line = [str(rate)]
            for m in sweep["methods"]:
                for kind in (False, True):
                    c = cell.get((rate, m, kind))
                    line.append(pm(c["acc_mean"], c["acc_std"]) if c else "–")
            rows.append(line)
        out += table(header, rows)
        fig, ax = plt.subplots(figsize=(6.5, 3.8))
        for m in sweep["methods"]:
            for kind, style in ((False, "--"), (True, "-")):
                pts = [(rate, cell[rate, m, kind]) for rate in sweep["rates"] if (rate, m, kind) in cell]
                if not pts:
                    continue
                x = np.array([q[0] for q in pts], float)
                mean = np.array([q[1]["acc_mean"] for q in pts])
                ax.plot(x, mean, ls=style, marker="o", label=f"{m} {'refined' if kind else 'raw'}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sweep["rates"], [str(x) for x in sweep["rates"]])
        ax.set_xlabel("labels per class (log2 axis)")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{g['name']}: accuracy vs labels per class")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        out.append(plot(fig, "quality_sweep.png", "accuracy vs labels per class"))
    out += share_markdown(r)
    out += methods_markdown(r)
    return out


def kept_note(r: dict) -> list[str]:
    """Where the LLM runs of a result came from, when a `labels` rerun kept them (kept_llm_runs)."""
    src = r.get("llm_runs_from")
    if not src:
        return []
    return [f"Kept from an earlier run when the labels-only profile was rerun into this file: `{src['command']}`, "
            f"measured {src['measured_at']}.", ""]


def share_markdown(r: dict) -> list[str]:
    """The LLM's share table: per rate, the teacher (accuracy, coverage, tuning) beside with - without."""
    from gkd.bench.markdown import num, seconds, table

    by = r.get("llm_share_by_rate") or {}
    if not by:
        return []
    any_row = next(iter(by.values()))
    out = ["", "### The LLM's share", "",
           f"The full gkd student ({any_row['gnn']}/{any_row['method']}, refined) against the same student without the "
           "teacher (vanilla, refined): same GNN and settings, label draw, seeds and refinement. At each rate the "
           "teacher is tuned on that rate's labels only; it teaches on its chosen budget (taught nodes), never on "
           "its own val (calibration) or test (accuracy) nodes; a rate above `--share-teacher-cap` reuses the "
           "cap's teacher, tuned on a subset of that rate's labels. Mean ± std over "
           f"{any_row['seeds']} seed(s) of the per-seed difference.", ""] + kept_note(r)
    rows = []
    for k, sh in by.items():
        curve = ", ".join(f"{c['val_acc']:.3f} @ {c['minutes']:g} min" for c in sh.get("teacher_curve", [])
                          if c.get("val_acc") is not None)
        kt = sh.get("teacher_labels_per_class", int(k))
        taught = num(sh["taught_nodes"]) + (f" ({num(sh['taught_labelled'])} labelled at this rate)"
                                            if sh.get("taught_labelled") else "")
        rows.append([k if kt == int(k) else f"{k} (teacher tuned on {kt})",
                     f"{sh['teacher_acc']:.3f} ({num(sh['teacher_test_nodes'])} test)",
                     f"{sh['teacher_val_acc']:.3f}" if sh.get("teacher_val_acc") is not None else "–",
                     taught, f"{sh['without_refined']:.3f}", f"{sh['with_refined']:.3f}",
                     f"**{sh['points']:+.2f} ± {sh['std']:.2f}**", f"{sh['raw_points']:+.2f}",
                     f"{sh['points_per_1000_taught']:+.2f}" if sh.get("points_per_1000_taught") is not None else "–",
                     seconds(sh["teacher_tuning_wall_s"]) if sh.get("teacher_tuning_wall_s") else "–", curve or "–"])
    out += table(["labels / class", "teacher acc", "teacher val acc", "taught nodes", "without teacher (refined)",
                  "with teacher (refined)", "share, points", "share raw, points", "points / 1,000 taught",
                  "teacher tuning", "teacher val acc vs tuning minutes"], rows)
    return out


def methods_markdown(r: dict) -> list[str]:
    """Every distillation method on every GNN against the same GNN without the teacher (llm_share_by_method)."""
    from gkd.bench.markdown import num, table

    by, at = r.get("llm_share_by_method") or {}, r.get("methods_share_at") or {}
    if not by:
        return []
    methods = list(dict.fromkeys(m for cells in by.values() for m in cells))
    out = ["", f"### Every method against labels alone, at {at['labels_per_class']} labels per class", "",
           f"Each distillation method minus the same GNN trained on labels alone (vanilla), in points of test "
           f"accuracy on {num(at['test_nodes'])} test nodes: refined (raw in brackets), mean ± std over "
           f"{at['seeds']} seed(s) of the per-seed difference. The teacher is that rate's ({at['teacher_acc']:.3f} "
           f"on its {num(at['teacher_test_nodes'])} test nodes, {num(at['taught_nodes'])} taught nodes).", ""]
    if at.get("graph_nodes"):
        out[-2] += f" Graph: {num(at['graph_nodes'])} nodes, {num(at['graph_edges'])} edges."
    out += kept_note(r)
    if r.get("methods_unfinished"):
        out[-1:] = ["**Unfinished:** the run that wrote this stopped before every GNN and method had run; a cell "
                    "shows only the seeds measured (`seeds` in `llm_share_by_method`).", ""]
    rows = []
    for gnn, cells in by.items():
        row = [gnn]
        for m in methods:
            c = cells.get(m) or {}
            ref, raw = c.get("refined"), c.get("raw")
            row.append(f"{ref['points']:+.2f} ± {ref['std']:.2f} ({raw['points']:+.2f})" if ref and raw else "–")
        rows.append(row)
    return out + table(["GNN", *methods], rows)


def markdown_losses(r: dict) -> list[str]:
    from gkd.bench.markdown import num, ratio

    out = []
    for k, sh in (r.get("llm_share_by_rate") or {}).items():
        if sh["points"] < 2:
            out.append(f"The LLM's share at {k} labels per class is {sh['points']:+.2f} ± {sh['std']:.2f} points "
                       f"(goal: at least +2): the teacher ({sh['teacher_acc']:.3f} on its test nodes) "
                       f"{'adds too little' if sh['points'] >= 0 else 'costs accuracy'} over the refined "
                       f"labels-only student ({sh['without_refined']:.3f}).")
        elif sh.get("raw_points", 0) < 0 or sh["std"] >= abs(sh["points"]):
            out.append(f"The LLM's share at {k} labels per class is {sh['points']:+.2f} ± {sh['std']:.2f} points refined, "
                       f"which its spread over seeds does not support, and {sh.get('raw_points', 0):+.2f} raw: the "
                       f"teacher ({sh['teacher_acc']:.3f} on its test nodes) does not reliably help the labels-only "
                       f"student ({sh['without_refined']:.3f} refined).")
    below = r.get("methods_below_vanilla") or []
    if below:
        at = r["methods_share_at"]
        total = sum(len(cells) for cells in r["llm_share_by_method"].values())
        out.append(f"At {at['labels_per_class']} labels per class, {len(below)} of {total} (GNN, method) pairs are "
                   "below the same GNN without the teacher, raw or refined (points): " + ", ".join(
                       f"{b['gnn']}/{b['method']} " + " ".join(f"{k} {b[k]:+.2f}" for k in ("raw", "refined") if k in b)
                       for b in below) + ".")
    mp = r.get("best_message_passing")
    if r.get("plain_student_vs_sign_raw_ratio") is not None and r["plain_student_vs_sign_raw_ratio"] < 1:
        out.append(f"The best labels-only message-passing student ({mp['gnn']}, {mp['acc_mean']:.3f}) is below SIGN "
                   f"raw ({ratio(r['plain_student_vs_sign_raw_ratio'])}).")
    if r["best_refined_vs_baseline_refined_ratio"] < 1:
        br, bb = r["best_refined"], r["best_baseline_refined"]
        out.append(f"The best refined gkd student ({br['gnn']}/{br['method']}, {br['acc_mean']:.3f}) is below the best "
                   f"refined plain baseline ({bb['name']}, {bb['acc_mean']:.3f}).")
    if r["inductive_vs_transductive_acc_gap"] > 2:
        ind = r["inductive"]
        out.append(f"New nodes lose {r['inductive_vs_transductive_acc_gap']:.1f} points: the served answer on the "
                   f"nodes held out of the graph ({ind.get('new_holdout_mean', ind['glnn_holdout_mean']):.3f}) vs "
                   f"transductive refined ({ind['refined_test_mean']:.3f}).")
    raw = _student_rows(r, False)
    vanilla = {row["gnn"]: row for row in raw if row["method"] == "vanilla"}
    below = [row for row in raw if row["method"] != "vanilla" and row["gnn"] in vanilla
             and row["acc_mean"] < vanilla[row["gnn"]]["acc_mean"]]
    if below:
        out.append(f"{len(below)} of {sum(row['method'] != 'vanilla' for row in raw)} distilled students are below "
                   "the same GNN trained on labels alone: " + ", ".join(
                       f"{row['gnn']}/{row['method']} {row['acc_mean']:.3f} vs {vanilla[row['gnn']]['acc_mean']:.3f}"
                       for row in below) + ".")
    best = max(raw, key=lambda row: row["acc_mean"])
    if r.get("teacher") and best.get("teacher_nodes_acc_mean") is not None and \
            _tuned_acc(r) < best["teacher_nodes_acc_mean"]:
        out.append(f"The tuned teacher LLM ({_tuned_acc(r):.3f} on its {num(r['teacher']['tuned']['nodes'])} test "
                   f"nodes) is below the best student on the same nodes ({best['teacher_nodes_acc_mean']:.3f}): the "
                   "student learns more from the graph and the labels than from the teacher.")
    sweep = r.get("sweep")
    if sweep:
        gkd_name = sweep["methods"][-1]
        cell = {(row["labels_per_class"], row["method"], bool(row.get("refined"))): row for row in sweep["rows"]}
        lost = []
        for rate in sweep["rates"]:
            mine = cell.get((rate, gkd_name, True))
            bases = [cell[rate, m, True] for m in sweep["methods"][:-1] if (rate, m, True) in cell]
            if mine and bases and mine["acc_mean"] < max(b["acc_mean"] for b in bases):
                top = max(bases, key=lambda b: b["acc_mean"])
                lost.append(f"{rate} labels/class ({mine['acc_mean']:.3f} vs {top['method']} {top['acc_mean']:.3f})")
        if lost:
            out.append(f"Label-rate sweep: the refined gkd student ({gkd_name}) is below a refined baseline at "
                       + ", ".join(lost) + ".")
        hurt = [f"{m} at {rate} ({cell[rate, m, False]['acc_mean']:.3f} -> {cell[rate, m, True]['acc_mean']:.3f}, "
                f"± {cell[rate, m, True]['acc_std']:.3f})" for rate in sweep["rates"] for m in sweep["methods"]
                if (rate, m, False) in cell and (rate, m, True) in cell
                and cell[rate, m, True]["acc_mean"] < cell[rate, m, False]["acc_mean"]]
        if hurt:
            out.append("Refinement lowers mean test accuracy in the label-rate sweep for " + ", ".join(hurt)
                       + " labels/class: the class prior estimated from a weak model can be far off, and the "
                       "val accuracy reweighted to it, which chooses the correction, is then fooled too.")
    return out


if __name__ == "__main__":
    raise SystemExit(main())
