"""Distillation on the real Debian graph: students x methods x seeds next to the SmolLM2 teacher.

  python -m gkd.bench.distill_debian --workdir bench/work/teacher_debian --out bench/results/distill_debian.json

Reads the graph, the tuned teacher's outputs and the rationales that `make bench-teacher` left in
--workdir; every run is the pipeline's own `gkd.gnn.distill.run` (Ray Train, layer-wise inference)
with `distill.gnn`, `distill.method` and `distill.seed` set. Finished runs are reused, so a killed
bench continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from gkd.bench.report import write_result
from gkd.cli import config_from_args
from gkd.runtime import setup_logging

log = logging.getLogger("gkd.bench.distill_debian")

# "lingugkd:softmax" is LinguGKD with the reference's learnable-softmax CE/distill mix (distill.mix=softmax)
METHODS = ["vanilla", "kd", "lingugkd", "lingugkd:softmax", "pan", "all"]


def summarize(runs: list[dict]) -> list[dict]:
    """Per (gnn, method): mean/std over seeds of test accuracy and macro-F1 (and on the teacher's nodes)."""
    rows = []
    for gnn in dict.fromkeys(r["gnn"] for r in runs):
        for method in dict.fromkeys(r["method"] for r in runs):
            got = [r for r in runs if r["gnn"] == gnn and r["method"] == method]
            if not got:
                continue
            acc = np.array([r["test"]["acc"] for r in got])
            f1 = np.array([r["test"]["macro_f1"] for r in got])
            tn = np.array([r["teacher_nodes"]["acc"] for r in got])
            rows.append({"gnn": gnn, "method": method, "seeds": [r["seed"] for r in got],
                         "acc_mean": round(float(acc.mean()), 4), "acc_std": round(float(acc.std()), 4),
                         "f1_mean": round(float(f1.mean()), 4), "f1_std": round(float(f1.std()), 4),
                         "teacher_nodes_acc_mean": round(float(tn.mean()), 4),
                         "val_acc_mean": round(float(np.mean([r["val"]["acc"] for r in got])), 4),
                         "train_wall_s_mean": round(float(np.mean([r["train_wall_s"] for r in got])), 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="jobs/configs/debian.yaml")
    ap.add_argument("--workdir", default="bench/work/teacher_debian", help="holds graph/, teacher/, rationale/")
    ap.add_argument("--out", default="bench/results/distill_debian.json")
    ap.add_argument("--gnns", default="sage,gcn")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    setup_logging()
    from gkd.gnn import distill

    args.source = args.path = None
    args.out_dir, out_json = args.out, Path(args.out)
    args.out = args.workdir
    cfg = config_from_args(args)
    if not (cfg.workdir / "teacher" / "covered.npy").is_file():
        log.error("%s has no teacher outputs: run `make bench-teacher` first", cfg.workdir)
        return 2
    teacher = json.loads((cfg.workdir / "teacher" / "metrics.json").read_text())
    # the student is also scored on the teacher's own eval nodes: the same sample the teacher bench drew
    cfg.teacher = cfg.teacher.model_copy(update={"eval_budget": teacher["test_nodes"]})
    t0 = time.time()
    runs = []
    for gnn in args.gnns.split(","):
        for seed in range(args.seeds):
            for label in args.methods.split(","):
                method, _, mix = label.partition(":")
                c = cfg.model_copy(deep=True)
                c.distill = c.distill.model_copy(update={"gnn": gnn, "method": method, "seed": seed,
                                                         "mix": mix or cfg.distill.mix})
                out = cfg.workdir / "students" / f"{gnn}-{label.replace(':', '-')}-s{seed}"
                m = distill.run(c, out_dir=out, interpreter_dir=cfg.workdir / "students" / f"{gnn}-interpreter-s{seed}")
                runs.append({k: m[k] for k in ("gnn", "seed", "val", "teacher_nodes", "best_epoch", "epochs_run",
                                                "train_wall_s", "inputs")}
                            | {"method": label, "test": {k: v for k, v in m["test"].items() if k != "per_class"}})
                log.info("%s/%s seed %d: test %.4f (%.0f s so far)", gnn, label, seed, m["test"]["acc"],
                         time.time() - t0)
    result = {
        "rows": summarize(runs),
        "teacher_acc": teacher["tuned"]["acc"], "teacher_macro_f1": teacher["tuned"]["macro_f1"],
        "teacher_zero_shot_acc": teacher["zero_shot"]["acc"], "teacher_nodes": teacher["test_nodes"],
        "teacher_covered_nodes": teacher["covered_nodes"],
        "note": "acc_mean/f1_mean: the student on every test node (full-neighbourhood inference); "
                "teacher_acc and teacher_nodes_acc_mean: the teacher and the student on the same "
                f"{teacher['test_nodes']} sampled test nodes",
        "distill_config": cfg.distill.model_dump(mode="json"),
        "runs": runs, "wall_s": round(time.time() - t0, 1),
    }
    write_result(out_json, result, "gkd.bench.distill_debian", argv)
    for r in result["rows"]:
        print(f"{r['gnn']:5s} {r['method']:9s} acc {r['acc_mean']:.4f} ± {r['acc_std']:.4f}  "
              f"F1 {r['f1_mean']:.4f}  on teacher nodes {r['teacher_nodes_acc_mean']:.4f}")
    print(f"teacher (tuned SmolLM2) on {result['teacher_nodes']} test nodes: {result['teacher_acc']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
