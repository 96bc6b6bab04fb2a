"""BENCHMARKS.md from result JSONs: numbers and ratios as formatted, best row bold, PNGs linked, missing and
quick suites, bad JSON, and the 'where gkd loses' bullets exactly when the data says so."""

import json
import re

import pytest

from gkd.bench.markdown import main, num, ratio, render, seconds
from gkd.errors import DataError

MACHINE = {"cpus": 2, "cpu_model": "Intel(R) Xeon(R) Processor", "memory_gib": 23.5,
           "platform": "Linux-6.18.44-fc-v669-x86_64-with-glibc2.36", "python": "3.11.7", "torch": "2.13.0+cpu"}


def _row(gnn, method, refined, acc, std, val, wall, tacc=None, holdout=None, seeds=(0, 1, 2)):
    """A row of quality.json's rows (gnn/method/refined) or sweep rows: summarize()'s keys in its order; refined
    rows carry no teacher-node or held-out accuracy, as in the suite's output."""
    row = {gnn[0]: gnn[1], "method": method, "refined": refined, "seeds": list(seeds), "acc_mean": acc,
           "acc_std": std, "f1_mean": round(acc - 0.07, 4), "f1_std": round(std + 0.001, 4)}
    if tacc is not None:
        row["teacher_nodes_acc_mean"] = tacc
    row["val_acc_mean"] = val
    if holdout is not None:
        row["holdout_acc_mean"] = holdout
    return row | {"train_wall_s_mean": wall}


def _students(gnn, method, raw, raw_std, ref, ref_std, val, ref_val, wall, tacc, holdout):
    return [_row(("gnn", gnn), method, False, raw, raw_std, val, wall, tacc, holdout),
            _row(("gnn", gnn), method, True, ref, ref_std, ref_val, wall)]


def _baseline(name, raw, raw_std, f1, val, ref, ref_std, ref_f1, ref_val, wall):
    base = {"name": name, "seeds": [0, 1, 2]}
    return [base | {"refined": False, "acc_mean": raw, "acc_std": raw_std, "f1_mean": f1, "f1_std": raw_std,
                    "val_acc_mean": val, "train_wall_s_mean": wall},
            base | {"refined": True, "acc_mean": ref, "acc_std": ref_std, "f1_mean": ref_f1, "f1_std": ref_std,
                    "val_acc_mean": ref_val, "train_wall_s_mean": wall}]


def _point(gnn, hidden, wd, val, best_epoch, epochs_run, wall, test):
    return {"gnn": gnn, "params": {"hidden": hidden, "weight_decay": wd}, "val_acc": val, "best_epoch": best_epoch,
            "epochs_run": epochs_run, "train_wall_s": wall, "test_acc": test}


def _rate(k, method, raw, raw_std, ref, ref_std, wall):
    """A label-rate sweep row pair (raw, refined) at k labels per class."""
    return [_row(("labels_per_class", k), method, False, raw, raw_std, 0.55, wall),
            _row(("labels_per_class", k), method, True, ref, ref_std, 0.58, wall)]


def quality():
    """A full-profile quality.json of the Debian graph (53 classes, 20 train / 30 val labels per class, 10% of the test
    nodes held out), with the teacher: students {gcn, sage, sign} x {vanilla, kd, lingugkd} and the four plain
    baselines, raw and refined. Every derived number is the division / difference the suite computes, rounded as it
    rounds. Where gkd loses: the best message-passing student is below SIGN raw, the best refined student below the
    best refined baseline, new nodes lose 4.3 points, 4 distilled students are below vanilla, the tuned teacher is
    below the best student on its nodes and the refined sweep student is below refined SIGN at 5 and 50 labels."""
    rows = [*_students("gcn", "vanilla", 0.5347, 0.0035, 0.5788, 0.0031, 0.6088, 0.6352, 52.9, 0.5911, 0.5102),
            *_students("gcn", "kd", 0.4945, 0.0048, 0.5502, 0.0040, 0.5611, 0.6003, 71.4, 0.5556, 0.4710),
            *_students("gcn", "lingugkd", 0.5338, 0.0054, 0.5801, 0.0047, 0.6052, 0.6371, 88.0, 0.5933, 0.5088),
            *_students("sage", "vanilla", 0.5534, 0.0040, 0.5912, 0.0036, 0.6201, 0.6459, 61.2, 0.5922, 0.5297),
            *_students("sage", "kd", 0.5063, 0.0016, 0.5611, 0.0022, 0.5748, 0.6124, 80.3, 0.5544, 0.4803),
            *_students("sage", "lingugkd", 0.5638, 0.0080, 0.5987, 0.0051, 0.6257, 0.6522, 97.5, 0.6211, 0.5389),
            *_students("sign", "vanilla", 0.5689, 0.0027, 0.5957, 0.0024, 0.6312, 0.6547, 12.4, 0.6044, 0.5514),
            *_students("sign", "kd", 0.5240, 0.0031, 0.5734, 0.0029, 0.5902, 0.6233, 20.8, 0.5678, 0.5012),
            *_students("sign", "lingugkd", 0.5702, 0.0042, 0.6021, 0.0033, 0.6288, 0.6590, 27.1, 0.6100, 0.5547)]
    baselines = [*_baseline("label_propagation", 0.4812, 0.0, 0.3876, 0.5233, 0.5023, 0.0, 0.4105, 0.5461, 3.1),
                 *_baseline("mlp", 0.4321, 0.0061, 0.3702, 0.4788, 0.5288, 0.0043, 0.4519, 0.5702, 9.8),
                 *_baseline("sgc", 0.5498, 0.0012, 0.4731, 0.6034, 0.5874, 0.0021, 0.5102, 0.6297, 4.2),
                 *_baseline("sign", 0.5712, 0.0034, 0.4957, 0.6340, 0.6124, 0.0029, 0.5367, 0.6611, 6.5)]
    grid = [{"hidden": h, "weight_decay": wd} for h in (128, 256) for wd in (0.0, 5e-4)]
    points = [_point("sage", 128, 0.0, 0.6104, 41, 61, 58.3, 0.5489),
              _point("sage", 128, 5e-4, 0.6201, 38, 58, 61.2, 0.5571),
              _point("sage", 256, 0.0, 0.6122, 29, 49, 90.4, 0.5502),
              _point("sage", 256, 5e-4, 0.6188, 35, 55, 97.0, 0.5547),
              _point("sign", 128, 0.0, 0.6233, 77, 97, 10.1, 0.5642),
              _point("sign", 128, 5e-4, 0.6250, 83, 100, 11.5, 0.5655),
              _point("sign", 256, 0.0, 0.6312, 64, 84, 12.4, 0.5711),
              _point("sign", 256, 5e-4, 0.6297, 90, 100, 14.6, 0.5702)]
    sweep_rows = []
    for k, (lp, sign, mine) in {5: ((0.3811, 0.0062, 0.4012, 0.0058), (0.3502, 0.0091, 0.4233, 0.0077),
                                    (0.3614, 0.0104, 0.4151, 0.0088)),
                                10: ((0.4205, 0.0049, 0.4431, 0.0044), (0.4318, 0.0066, 0.4890, 0.0052),
                                     (0.4402, 0.0071, 0.4957, 0.0060)),
                                20: ((0.4788, 0.0031, 0.4998, 0.0029), (0.5655, 0.0040, 0.6044, 0.0035),
                                     (0.5630, 0.0038, 0.6102, 0.0031)),
                                50: ((0.5402, 0.0022, 0.5597, 0.0020), (0.6321, 0.0027, 0.6688, 0.0024),
                                     (0.6287, 0.0030, 0.6611, 0.0026))}.items():
        sweep_rows += [*_rate(k, "label_propagation", *lp, 2.9), *_rate(k, "sign", *sign, 6.1),
                       *_rate(k, "sign (gkd)", *mine, 11.8)]
    return {"profile": "full", "command": "gkd bench --suite quality --config jobs/configs/debian.yaml",
            "measured_at": "2026-11-25T10:00:00+0000", "machine": MACHINE, "wall_s": 5400.0,
            "graph": {"name": "debian", "num_nodes": 63666, "num_edges": 617544, "num_classes": 53,
                      "train_per_class": 20, "val_per_class": 30, "test_nodes": 54810, "holdout_nodes": 6090,
                      "text": "name+short+long"},
            "teacher": {"zero_shot": {"acc_mean": 0.0467, "acc_std": 0.012, "f1_mean": 0.0119, "f1_std": 0.004,
                                      "nodes": 300, "groups": 3, "acc_all": 0.0467},
                        "tuned": {"acc_mean": 0.3933, "acc_std": 0.021, "f1_mean": 0.2428, "f1_std": 0.015,
                                  "nodes": 300, "groups": 3, "acc_all": 0.3933},
                        "tuning": {"examples": 424, "wall_s": 580.4}, "outputs": {"nodes": 599, "wall_s": 1090.9},
                        "std_over": "3 disjoint groups of the teacher's 300 test nodes (one tuning run)"},
            "baselines": baselines,
            "rows": rows,
            "tuning": {"grid": grid, "points": points,
                       "chosen": {"sage": {"hidden": 128, "weight_decay": 5e-4},
                                  "sign": {"hidden": 256, "weight_decay": 0.0}},
                       "chosen_on": "val accuracy (seed 0)"},
            "inductive": {"gnn": "sign", "chosen_by": "mean val accuracy of the labels-only students",
                          "holdout_nodes": 6090, "refined_test_mean": 0.5957, "raw_holdout_mean": 0.5514,
                          "glnn_test_mean": 0.5731, "glnn_holdout_mean": 0.5526, "refined_test_std": 0.0024,
                          "raw_holdout_std": 0.0041, "glnn_test_std": 0.003, "glnn_holdout_std": 0.0045,
                          "new_holdout_mean": 0.5526, "new_holdout_std": 0.0045, "new_served": ["glnn", "glnn", "glnn"],
                          "student_refined_holdout_mean": 0.5411, "glnn_refined_holdout_mean": 0.5526,
                          "runs": []},  # trimmed
            "best": {"gnn": "sign", "method": "lingugkd", "acc_mean": 0.5702, "f1_mean": 0.5002},
            "best_vanilla": {"gnn": "sign", "method": "vanilla", "acc_mean": 0.5689, "f1_mean": 0.4989},
            "best_vs_vanilla_acc_ratio": 1.002,  # 0.5702 / 0.5689
            "best_message_passing": {"gnn": "sage", "acc_mean": 0.5534, "acc_std": 0.004},
            "best_refined": {"gnn": "sign", "method": "lingugkd", "acc_mean": 0.6021, "acc_std": 0.0033},
            "best_baseline_refined": {"name": "sign", "acc_mean": 0.6124, "acc_std": 0.0029},
            "plain_student_vs_sign_raw_ratio": 0.969,  # 0.5534 / 0.5712
            "best_refined_vs_baseline_refined_ratio": 0.983,  # 0.6021 / 0.6124
            "inductive_vs_transductive_acc_gap": 4.31,  # 100 * (0.5957 - 0.5526)
            "student_vs_tuned_teacher_acc_ratio": 1.55,  # 0.6100 / 0.3933
            "sweep": {"gnn": "sign", "methods": ["label_propagation", "sign", "sign (gkd)"], "rates": [5, 10, 20, 50],
                      "label_pool_per_class": 50, "test_nodes": 54722, "rows": sweep_rows,
                      "note": "every rate is scored on the same test nodes: the first 50 nodes of each class (train "
                              "split first) are out of test at every rate; raw and refined (temperature, class prior "
                              "and Correct & Smooth chosen on val) for each"},
            # trimmed: the compute line counts the raw student runs of both lists (not refined ones, not baselines)
            "runs": [{"gnn": "sign", "method": "vanilla", "seed": 0, "refined": False, "train_wall_s": 12.1},
                     {"gnn": "sign", "method": "vanilla", "seed": 0, "refined": True, "train_wall_s": 12.1},
                     {"gnn": "sage", "method": "lingugkd", "seed": 0, "refined": False, "train_wall_s": 95.0}],
            "baseline_runs": [{"gnn": "sign", "method": "baseline", "seed": 0, "refined": False, "train_wall_s": 6.5}],
            "sweep_runs": [{"gnn": "sign", "method": "sign (gkd)", "seed": 0, "labels_per_class": 5, "refined": False,
                            "train_wall_s": 9.0},
                           {"gnn": "sign", "method": "sign (gkd)", "seed": 0, "labels_per_class": 5, "refined": True,
                            "train_wall_s": 9.0}]}


def cost():
    """bench/results/cost.json as measured."""
    return {"graph": "debian-demo", "nodes": 64, "torch_threads": 1, "student_batch": 64, "teacher_batch": 8,
            "student": {"model": "sage/lingugkd student", "checkpoint": "runs/debian-demo/student/checkpoint",
                        "parameters": 134940, "nodes_per_s": 1267.6, "latency_ms_one_node": 12.08,
                        "peak_memory_rise_mib": 62.1, "acc": 0.5781,
                        "full_graph": {"nodes": 10000, "wall_s": 0.165, "nodes_per_s": 60501.7,
                                       "matches_batched": True}},
            "teacher": {"model": "runs/debian-demo/teacher/checkpoint", "parameters": 134515008,
                        "nodes_per_s": 1.321, "latency_ms_one_node": 757.36, "peak_memory_rise_mib": 1912.7,
                        "acc": 0.1094},
            "student_vs_teacher_nodes_per_s_ratio": 959.6, "student_full_graph_vs_teacher_nodes_per_s_ratio": 45799.9,
            "teacher_vs_student_latency_ratio": 62.7, "teacher_vs_student_parameters_ratio": 996.9,
            "command": "python -m gkd.bench.cost --config jobs/configs/demo.yaml --out bench/results/cost.json",
            "machine": {**MACHINE, "loadavg_1m": 1.51}, "measured_at": "2026-11-24T01:05:58+0000"}


def _sampled(backend, sps, rss, nodes, edges, build):
    return {"backend": backend, "seeds_per_s": sps, "peak_rss_rise_mib": rss, "mean_sampled_nodes_per_batch": nodes,
            "mean_sampled_edges_per_batch": edges, "loader_build_s": build, "timed_s": 10.0}


def sampler():
    """bench/results/sampler.json, trimmed."""
    graph = {"name": "orientation-200k-4M", "num_nodes": 200000, "num_edges": 7999136, "fanouts": [15, 10],
             "batch_size": 1024,
             "ours": _sampled("gkd CSRSampler", 62053.5, 48.5, 110106.3, 162463.7, 0.0),
             "pyg": _sampled("PyG NeighborLoader, torch-sparse 0.6.18", 8496.7, 438.4, 110059.3, 162432.9, 0.73),
             "seeds_per_s_ratio_vs_pyg": 7.3}
    return {"torch_threads": 1, "graphs": [graph], "seeds_per_s_ratio_vs_pyg": 7.3,
            "command": "python -m gkd.bench.sampler --out bench/results/sampler.json",
            "machine": MACHINE, "measured_at": "2026-11-23T21:51:31+0000"}


def stream():
    return {"profile": "full", "command": "gkd bench --suite stream", "measured_at": "2026-11-25T11:00:00+0000",
            "machine": MACHINE, "model": "HuggingFaceTB/SmolLM2-135M-Instruct", "nodes": 48, "batch_size": 8,
            "loop": {"wall_s": 92.0, "nodes_per_s": 0.522, "tokens_per_s": 214.5, "torch_threads": 2},
            "ray": {"1": {"actors": 1, "wall_s": 118.0, "nodes_per_s": 0.407, "tokens_per_s": 174.0,
                          "torch_threads_per_actor": 2},
                    "2": {"actors": 2, "wall_s": 87.0, "nodes_per_s": 0.552, "tokens_per_s": 226.9,
                          "torch_threads_per_actor": 1}},
            "ray_vs_loop_tokens_per_s_ratio": 1.057, "two_vs_one_actor_ratio": 1.304,
            "note": "both walls include loading the model"}


def _run(config, payload, conns, rps, p50, p99, vs_bare=None):
    run = {"config": config, "payload": payload, "connections": conns, "rps": rps, "p50_ms": p50, "p99_ms": p99}
    if vs_bare is not None:
        run.update(bare_rps=round(rps / vs_bare, 2), vs_bare=vs_bare)
    return run


def serve():
    """bench/results/serve.json, trimmed to ids1 and new1 and the configs that matter."""
    return {"student": {"graph": "debian", "gnn": "sage", "method": "lingugkd", "test_acc": 0.5555},
            "duration_s": 5.0, "wrk": "wrk -t1 -c{1,8,32} --latency",
            "rps_table": {"bare_uvicorn": {"ids1": {"1": 3989.5, "8": 5043.1, "32": 5254.9},
                                           "new1": {"1": 52.8, "8": 71.3, "32": 66.4}},
                          "ray_defaults": {"ids1": {"1": 146.6, "8": 180.8, "32": 19.2}},
                          "gkd_defaults": {"ids1": {"1": 1165.9, "8": 2435.1, "32": 2469.4},
                                           "new1": {"1": 30.8, "8": 41.5, "32": 69.3}},
                          "haproxy_batch_off": {"new1": {"1": 38.5, "8": 52.3, "32": 36.6}},
                          "haproxy_batch_all": {"new1": {"1": 32.4, "8": 40.5, "32": 71.2}}},
            "best_serve_config": "gkd_defaults", "serve_vs_bare_rps_ratio": 0.607,
            "serve_vs_bare_rps_ratio_by_point": {"ids1": {"1": 0.26, "8": 0.501, "32": 0.607}},
            "teacher_vs_student_rps": {"1": {"teacher": 0.65, "student": 1165.86}},
            "configs": {"bare_uvicorn": {"startup_s": 7.0},
                        "ray_defaults": {"startup_s": 10.0, "serve": {"ingress": "proxy", "access_log": True,
                                                                      "max_ongoing_requests": 5, "batching": "off"}},
                        "gkd_defaults": {"startup_s": 16.5, "serve": {}},
                        "haproxy_batch_off": {"startup_s": 14.0, "serve": {"ingress": "haproxy", "batching": "off"}},
                        "haproxy_batch_all": {"startup_s": 13.3, "serve": {"ingress": "haproxy", "batching": "all"}}},
            "runs": [_run("bare_uvicorn", "ids1", 32, 5254.86, 6.07, 8.45),
                     _run("ray_defaults", "ids1", 8, 180.85, 42.17, 79.41, 0.036),
                     _run("ray_defaults", "ids1", 32, 19.18, 1250.0, 3110.0, 0.004),
                     _run("gkd_defaults", "ids1", 32, 2469.4, 11.2, 50.3, 0.607)],
            "bench_wall_s": 504.3,
            "command": "python -m gkd.bench.serve --out bench/results/serve.json",
            "machine": MACHINE, "measured_at": "2026-11-24T00:23:07+0000"}


def scale():
    return {"profile": "full", "command": "gkd bench --suite scale --config jobs/configs/synthetic_products.yaml",
            "measured_at": "2026-11-25T12:00:00+0000", "machine": MACHINE,
            "graph": {"num_nodes": 2449029, "num_edges": 61859140, "num_classes": 47, "encoder": "hashing-d128",
                      "feature_dim": 128},
            "stages": {"ingest": {"wall_s": 0.412, "peak_rss_gib": 0.3, "peak_system_used_gib": 0.2, "reused": True,
                                  "key": "3f9a0c", "timings_s": {"csr_s": 18.4},
                                  "measured": {"wall_s": 87.4, "peak_rss_gib": 8.96, "peak_system_used_gib": 8.68,
                                               "reused": False, "num_edges": 61859140}},
                       "partition": {"wall_s": 30.2, "peak_rss_gib": 5.1, "peak_system_used_gib": 5.0,
                                     "num_parts": 8, "edge_cut": 0.312},
                       "teacher_outputs": {"wall_s": 400.0, "peak_rss_gib": 3.2, "peak_system_used_gib": 3.1,
                                           "nodes": 256, "nodes_per_s": 0.64},
                       "distill_epoch": {"wall_s": 60.0, "peak_rss_gib": 6.4, "peak_system_used_gib": 6.0,
                                         "train_wall_s": 41.0, "infer_wall_s": 19.0, "seeds": 196000,
                                         "seeds_per_s": 4780.5}},
            "total_wall_s": 577.6, "peak_rss_gib": 8.96, "memory_limit_gib": 23.5,
            "projection": {"assumptions": {"nodes": 2449029, "teacher_nodes_per_s_per_gpu": 25.0, "gpus": 8},
                           "assumption_notes": {"gpus": "GPUs in the cluster"},
                           "measured_rates": {"ingest_edges_per_s": 707770.5},
                           "measured_rate_sources": {"ingest_edges_per_s": "61859140 edges / 87.4 s ingest wall"},
                           "stages": {"teacher_outputs": {"hours": 3.4, "formula": "nodes / (25 * 8) / 3600"},
                                      "distill": {"hours": 0.52, "formula": "epochs * 60 s / 3600"}},
                           "total_hours": 3.92, "total_formula": "3.4 + 0.52 = 3.92 h",
                           "note": "GPU throughput is assumed, not measured here."}}


def reliability():
    """A full reliability.json: every fault ran but mlflow (skipped: no PostgreSQL); 2 replicas lost 3 requests."""
    faults = {
        "inputs": {"tried": 86, "clear_errors": 86, "byo_folders": 59, "configs": 27, "unclear": [], "wall_s": 0.3},
        "stream": {"budget": 100, "batches": 25, "kills": [{"after_parts": 5, "target": 4, "reached": True,
                                                            "processes_killed": 13}] * 3,
                   "actor_kill": {"killed": True, "pid": 1, "after_parts": 9, "run_rc": 0}, "stage_done": True,
                   "rows": 100, "nodes": 100, "lost": 0, "duplicated": 0, "outside_budget": 0, "wall_s": 337.8},
        "ingest": {"texts": 1500, "killed_mid_encode": True, "cached_at_kill": 320, "missing_at_kill": 1180,
                   "rerun_rc": 0, "rerun_encoded": 1180, "rerun_from_cache": 320, "reencoded_beyond_missing": 0},
        "train": {"workers": 2, "killed_after_epoch": 5, "reached_epoch": 7, "checkpoint_every": 4,
                  "resumed_after_epoch": 4, "epochs_redone": 3, "rc": 0, "clean_rc": 0,
                  "same_final_metrics": True},
        "tune": {"workers": 2, "killed_after_step": 7, "reached_step": 8, "checkpoint_every": 4,
                 "resumed_after_step": 4, "steps_redone": 4, "rc": 0, "clean_rc": 0,
                 "killed_run": {"steps": 24, "last_loss": 1.15, "val_acc": 0.35, "test_acc": 0.15},
                 "uninterrupted_run": {"steps": 24, "last_loss": 1.15, "val_acc": 0.35, "test_acc": 0.15},
                 "same_final_metrics": True},
        "driver": {"kills": [{"stage": s, "inside": True, "status_after": "running"}
                             for s in ("ingest", "rationale", "teacher", "distill", "refine", "register")],
                   "rc": 0, "clean_rc": 0, "stages_redone_after_done": [], "same_final_metrics": True,
                   "registry_versions": 1, "duplicate_versions": 0},
        "serve": {"1": {"replicas_before": 1, "killed": True, "wrk": {"requests": 4210}, "failed_requests": 17,
                        "seconds_to_recovery": 2.4, "replicas_back": True},
                  "2": {"replicas_before": 2, "killed": True, "wrk": {"requests": 5120}, "failed_requests": 3,
                        "seconds_to_recovery": 0.3, "replicas_back": True}},
        "fuzz": {"cases": 1250, "server_errors": 0, "undocumented_statuses": 0, "check_failures": {},
                 "statuses": {"200": 600, "422": 650}, "listeners": {"listening": 14, "non_loopback": []}},
        "disk": {"rc_when_full": 2, "clear_error": True, "traceback": False, "validate_when_full": {"rc": 2},
                 "message": "gkd ingest: error: no space left on the device: free space ... and rerun",
                 "rerun_rc": 0, "validate_after_rerun": {"rc": 0}},
        "mlflow": {"skipped": "no PostgreSQL server binaries (Debian package postgresql)"},
    }
    from gkd.bench.reliability import keys

    return {"profile": "full", "faults": faults, **keys(faults), "wall_s": 1800.0, "machine": MACHINE,
            "command": "python -m gkd.bench.reliability --profile full", "measured_at": "2026-12-03T12:00:00+0000"}


ALL = {"quality": quality, "cost": cost, "sampler": sampler, "stream": stream, "serve": serve, "scale": scale,
       "reliability": reliability}


def write(results, **suites):
    results.mkdir(parents=True, exist_ok=True)
    for name, data in suites.items():
        (results / f"{name}.json").write_text(json.dumps(data))
    return results


def build(tmp_path, **suites):
    """Render from the given suites; (markdown, out_md, plots_dir)."""
    results = write(tmp_path / "bench" / "results", **suites)
    out_md, plots = tmp_path / "docs" / "BENCHMARKS.md", tmp_path / "bench" / "plots"
    text = render(results, out_md, plots)
    assert out_md.read_text() == text
    return text, out_md, plots


def section(text, title_start):
    """The text of the '## <title_start>...' section, up to the next '## '."""
    m = re.search(rf"^## {re.escape(title_start)}.*?(?=^## |\Z)", text, re.M | re.S)
    assert m, f"no section {title_start!r}"
    return m.group(0)


def losses(text):
    return [line[2:] for line in section(text, "Where gkd loses").splitlines() if line.startswith("- ")]


def test_formatting_rules():
    assert [ratio(x) for x in (959.6, 45799.9, 62.7, 10.0, 7.3, 4.62, 1.057, 0.607, 0.501, 0.0371)] == \
        ["960x", "45,800x", "62.7x", "10x", "7.3x", "4.62x", "1.06x", "0.61x", "0.5x", "0.037x"]
    assert [num(x) for x in (1267.6, 62.1, 1.321, 0.549, 134940, True, None)] == \
        ["1,268", "62.1", "1.32", "0.549", "134,940", "yes", "–"]
    assert [seconds(x) for x in (0.165, 87.4, 704.4, 9000.0)] == \
        ["0.165 s", "87.4 s", "704 s (11.7 min)", "9,000 s (2.5 h)"]


def test_full_document(tmp_path):
    results = tmp_path / "bench" / "results"
    # superseded files lying next to the new ones are not rendered
    write(results, distill_debian={"rows": [{"gnn": "sage", "method": "lingugkd:softmax"}]},
          ingest_scale={"num_nodes": 1})
    text, out_md, plots = build(tmp_path, **{k: f() for k, f in ALL.items()})
    assert text.splitlines()[0].startswith("<!-- generated by `make bench` / `gkd bench`")
    assert "do not edit" in text.splitlines()[0]
    assert "lingugkd:softmax" not in text and "ingest_scale" not in text
    assert ("Machine (cost.json): 2 CPUs (Intel(R) Xeon(R) Processor), 23.5 GiB memory, torch 2.13.0+cpu, "
            "Linux-6.18.44-fc-v669-x86_64-with-glibc2.36.") in text
    # headline table: one line per suite, in order, each with its ratio
    heads = section(text, "Headlines")
    cells = [line.split(" | ")[:2] for line in heads.splitlines() if line.startswith("| [")]
    assert [(c[0].split("]")[0][3:], c[1]) for c in cells] == [
        ("quality", "**0.98x**"), ("cost", "**960x**"), ("sampler", "**7.3x**"), ("stream", "**1.06x**"),
        ("serve", "**0.61x**"), ("scale", "**0.38x**"), ("reliability", "**8/9**")]
    assert ("| **0.98x** | test accuracy of the best refined gkd student (sign/lingugkd, 0.602) vs the best refined "
            "plain baseline (sign, 0.612) on debian |") in heads
    assert "(#cost-student-vs-teacher-inference)" in heads and "## Cost: student vs teacher inference" in text
    assert "ids1 payload (one random node id per request), 32 connections" in heads
    # sections in order, each with its command, date, profile and wall
    starts = [text.index(f"## {t}") for t in ("Quality", "Cost", "Sampler", "Stream", "Serve", "Scale",
                                                "Where gkd loses")]
    assert starts == sorted(starts)
    for name, f in ALL.items():
        r = f()
        body = section(text, name.capitalize())
        assert f"Command: `{r['command']}` · measured {r['measured_at']} · profile full" in body
    assert "· wall 5,400 s (1.5 h)" in section(text, "Quality")
    assert "· wall 504 s (8.4 min)" in section(text, "Serve")
    assert "· wall 578 s (9.6 min)" in section(text, "Scale")
    assert "quick profile" not in text

    expected = {  # section -> lines it holds
        "Quality": [
            "Graph **debian**: 63,666 nodes, 617,544 edges, 53 classes; 20 training and 30 validation labels per "
            "class, 54,810 test nodes in the graph and 6,090 held out of it; node text `name+short+long`.",
            # the goals, each with its ratio / gap as the file has it
            "- Best labels-only message-passing student, raw: **sage 0.553** vs SIGN raw 0.571: **0.97x**.",
            "- Best gkd student refined: **sign/lingugkd 0.602** vs the best plain baseline refined (sign 0.612): "
            "**0.98x**.",
            "- New nodes: on the 6,090 test nodes held out of the graph at ingest, what Serve answers (sign, val chose "
            "3 x glnn; its logits through the inductive path, then the new-node refinement) scores **0.553**, vs 0.596 "
            "transductive refined: a gap of **4.3 points**. Unrefined there: the student 0.551, GLNN 0.553; refined: "
            "the student 0.541, GLNN 0.553.",
            # 580.4 + 1090.9 + (12.1 + 95.0 + 9.0) + the 6 tuning runs the students did not reuse: raw student
            # runs only (no baseline), every part from the file
            "teacher tuning 580 s (9.7 min) + teacher outputs 1,091 s (18.2 min) + 3 student trainings 116 s "
            "(1.9 min) + 6 more tuning trainings 282 s (4.7 min) = **2,069 s (34.5 min)**",
            "Mean ± std over seeds [0, 1, 2], on all test nodes in the graph.",
            # baselines and students, raw and refined; the best refined student bold
            "| model | test acc raw | test acc refined | macro-F1 raw | macro-F1 refined | held-out nodes "
            "(inductive, raw) | val acc | train wall / seed |",
            "| baseline: label_propagation | 0.481 ± 0.000 | 0.502 ± 0.000 | 0.388 | 0.410 | – | 0.523 | – |",
            "| baseline: sign | 0.571 ± 0.003 | 0.612 ± 0.003 | 0.496 | 0.537 | – | 0.634 | – |",
            # 0.4945 is stored just below the half: 0.494
            "| gcn/kd | 0.494 ± 0.005 | 0.550 ± 0.004 | 0.424 | 0.480 | 0.471 | 0.561 | 71.4 s |",
            "| sage/lingugkd | 0.564 ± 0.008 | 0.599 ± 0.005 | 0.494 | 0.529 | 0.539 | 0.626 | 97.5 s |",
            "| **sign/lingugkd** | **0.570 ± 0.004** | **0.602 ± 0.003** | 0.500 | 0.532 | 0.555 | 0.629 | 27.1 s |",
            "| teacher LLM (zero-shot, 300 test nodes) | 0.047 ± 0.012 | – | 0.012 | – | – | – | – |",
            "| teacher LLM (tuned, 300 test nodes) | 0.393 ± 0.021 | – | 0.243 | – | – | – | – |",
            # the val sweep: every point, the winner per student marked
            "### Student settings chosen on validation",
            "| sage | hidden=128, weight_decay=0.0 | 0.610 | 41 / 61 | 0.549 |  |",
            "| sage | hidden=128, weight_decay=0.0005 | 0.620 | 38 / 58 | 0.557 | **yes** |",
            "| sign | hidden=256, weight_decay=0.0 | 0.631 | 64 / 84 | 0.571 | **yes** |",
            "| sign | hidden=256, weight_decay=0.0005 | 0.630 | 90 / 100 | 0.570 |  |",
            # the label-rate sweep: every baseline and the gkd student, raw and refined
            "Test accuracy on 54,722 test nodes as the labels per class grow (mean ± std over seeds). Every rate is "
            "scored on the same test nodes: the first 50 nodes of each class",
            "| labels / class | label_propagation raw | label_propagation refined | sign raw | sign refined | "
            "sign (gkd) raw | sign (gkd) refined |",
            "| 5 | 0.381 ± 0.006 | 0.401 ± 0.006 | 0.350 ± 0.009 | 0.423 ± 0.008 | 0.361 ± 0.010 | 0.415 ± 0.009 |",
            "| 50 | 0.540 ± 0.002 | 0.560 ± 0.002 | 0.632 ± 0.003 | 0.669 ± 0.002 | 0.629 ± 0.003 | 0.661 ± 0.003 |"],
        "Cost": [
            "| nodes/s | 1,268 | 1.32 | **student 960x the teacher's** |",
            "| latency, one node (ms) | 12.1 | 757 | teacher 62.7x the student's |",
            "| parameters | 134,940 | 134,515,008 | teacher 997x the student's |",
            "| peak memory rise (MiB) | 62.1 | 1,913 | teacher 30.8x the student's |",
            "| accuracy on the 64 nodes | 0.578 | 0.109 | student 5.28x the teacher's |",
            "all 10,000 nodes in 0.165 s, 60,502 nodes/s, **45,800x** the teacher's"],
        "Sampler": [
            "| gkd CSRSampler | 62,054 | 48.5 | 110,106 | 162,464 | 0 s | **7.3x** |",
            "| PyG NeighborLoader, torch-sparse 0.6.18 | 8,497 | 438 | 110,059 | 162,433 | 0.73 s |  |"],
        "Stream": [
            "| plain loop | 2 | 214 | 0.522 | 92.0 s |",
            "| Ray, 1 actor | 2 | 174 | 0.407 | 118 s (2.0 min) |",
            "| Ray, 2 actors | 1 | 227 | 0.552 | 87.0 s |",
            "Ray vs loop: **1.06x** tokens/s; 2 actors vs 1: **1.3x**"],
        "Serve": [
            "| gkd_defaults | ids1 | 1,166 | 2,435 | 2,469 (0.61x) |",
            "| ray_defaults | ids1 | – | 42.2 / 79.4 | 1,250 / 3,110 |",
            "| gkd_defaults | ServeConfig's defaults: ingress haproxy, access_log no, max_ongoing_requests 64, "
            "batching new_nodes | 16.5 s |",
            "| new1 | haproxy_batch_all | haproxy_batch_off | 32.4 (0.84x) | 40.5 (0.77x) | 71.2 (1.95x) |",
            "teacher 0.65, student 1,166 (1,794x)"],
        "Scale": [
            "| ingest (reused: measured in an earlier run) | 87.4 s | 8.96 (38%) | 8.68 | this run 0.412 s, "
            "num_edges 61,859,140 |",
            "| partition | 30.2 s | 5.10 (22%) | 5.00 | num_parts 8, edge_cut 0.312 |",
            "### Projection from stated assumptions (not a measurement)",
            "| teacher_outputs | 3.40 | `nodes / (25 * 8) / 3600` |",
            "| **total** | **3.92** | `3.4 + 0.52 = 3.92 h` |",
            "| gpus | 8 | GPUs in the cluster |",
            "| ingest_edges_per_s | 707,770 | 61859140 edges / 87.4 s ingest wall |"],
    }
    for title, lines in expected.items():
        body = section(text, title)
        assert [line for line in lines if line not in body] == [], title
    qs = section(text, "Quality")
    # one line per baseline and per student (its raw and refined numbers side by side), then the teacher's two
    assert len([line for line in qs.splitlines() if line.startswith("| baseline: ")]) == 4
    assert len([line for line in qs.splitlines() if re.match(r"\| (\*\*)?(gcn|sage|sign)/", line)]) == 9
    assert qs.index("| baseline: sign |") < qs.index("| gcn/vanilla |") < qs.index("| teacher LLM (zero-shot")
    sc = section(text, "Scale")
    assert sc.index("### Projection") < sc.index("teacher_nodes_per_s_per_gpu")

    pngs = {"quality_acc.png", "quality_sweep.png", "cost_nodes_per_s.png", "sampler_seeds_per_s.png",
            "stream_tokens_per_s.png", "serve_rps.png", "serve_p99.png", "scale_stages.png"}
    assert {p.name for p in plots.iterdir()} == pngs
    for name in pngs:
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"](../bench/plots/{name})" in text  # relative to docs/BENCHMARKS.md
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert all((out_md.parent / link).resolve().is_file() for link in links) and len(links) == len(pngs)


def test_losses_appear_exactly_when_triggered(tmp_path):
    text, _, _ = build(tmp_path / "lose", **{k: f() for k, f in ALL.items()})
    assert losses(text) == [
        "**quality**: The best labels-only message-passing student (sage, 0.553) is below SIGN raw (0.97x).",
        "**quality**: The best refined gkd student (sign/lingugkd, 0.602) is below the best refined plain baseline "
        "(sign, 0.612).",
        "**quality**: New nodes lose 4.3 points: the served answer on the nodes held out of the graph (0.553) vs "
        "transductive refined (0.596).",
        "**quality**: 4 of 6 distilled students are below the same GNN trained on labels alone: gcn/kd 0.494 vs "
        "0.535, gcn/lingugkd 0.534 vs 0.535, sage/kd 0.506 vs 0.553, sign/kd 0.524 vs 0.569.",
        # the best raw student by test accuracy (sign/lingugkd), not the best on the teacher's nodes (sage/lingugkd)
        "**quality**: The tuned teacher LLM (0.393 on its 300 test nodes) is below the best student on the same nodes "
        "(0.610): the student learns more from the graph and the labels than from the teacher.",
        "**quality**: Label-rate sweep: the refined gkd student (sign (gkd)) is below a refined baseline at 5 "
        "labels/class (0.415 vs sign 0.423), 50 labels/class (0.661 vs sign 0.669).",
        "**stream**: Ray barely helps teacher generation on this 2-CPU machine: 1.06x the plain loop's tokens/s "
        "(227 vs 214).",
        "**stream**: A second teacher actor adds little on this 2-CPU machine: 2 actors give 1.3x the tokens/s of "
        "one (227 vs 174).",
        "**serve**: Ray Serve overhead: the best Serve config (gkd_defaults) reaches 0.61x the req/s of a bare "
        "uvicorn app serving the same student (ids1, 32 connections): 2,469 vs 4,068 req/s.",
        "**serve**: ray_defaults collapses under load on ids1: 19.2 req/s at 32 connections vs 181 at 8 "
        "(p99 3,110 ms).",
        "**serve**: Batching costs throughput: gkd_defaults on new1 is below haproxy_batch_off at 1 conn. (0.8x), "
        "8 conn. (0.79x).",
        "**serve**: Batching costs throughput: haproxy_batch_all on new1 is below haproxy_batch_off at 1 conn. "
        "(0.84x), 8 conn. (0.77x).",
        "**scale**: At scale one stage dominates: teacher_outputs takes 400 s (6.7 min) of the stages' "
        "578 s (9.6 min) (69%).",
        "**reliability**: reliability fault `serve` misses its goal (0 failed requests with 2 replicas): 1 "
        "replica(s): 17 of 4,210 wrk requests failed, recovered in 2.4 s; 2 replica(s): 3 of 5,120 wrk requests "
        "failed, recovered in 0.3 s.",
    ]

    # the same suites where gkd wins everywhere: no bullet at all
    q = quality()
    for row in q["rows"]:
        if row["method"] != "vanilla" and not row["refined"]:
            row["acc_mean"] = round(row["acc_mean"] + 0.06, 4)
    sign_raw = next(b for b in q["baselines"] if b["name"] == "sign" and not b["refined"])
    sign_raw["acc_mean"] = 0.5401
    q["plain_student_vs_sign_raw_ratio"] = 1.025  # 0.5534 / 0.5401
    best_ref = next(r for r in q["rows"] if (r["gnn"], r["method"], r["refined"]) == ("sign", "lingugkd", True))
    best_ref["acc_mean"] = q["best_refined"]["acc_mean"] = 0.6201
    q["best_refined_vs_baseline_refined_ratio"] = 1.013  # 0.6201 / 0.6124
    q["inductive"]["new_holdout_mean"] = 0.5901
    q["inductive_vs_transductive_acc_gap"] = 0.56  # 100 * (0.5957 - 0.5901)
    q["teacher"]["tuned"].update(acc_mean=0.70, acc_all=0.70)
    for row in q["sweep"]["rows"]:
        if row["method"] == "sign (gkd)" and row["refined"]:
            row["acc_mean"] = max(row["acc_mean"], 0.67)
    st = stream()
    st.update(ray_vs_loop_tokens_per_s_ratio=1.8, two_vs_one_actor_ratio=1.9)
    sv = serve()
    sv["serve_vs_bare_rps_ratio"] = sv["serve_vs_bare_rps_ratio_by_point"]["ids1"]["32"] = 1.02
    del sv["rps_table"]["ray_defaults"]
    sv["rps_table"]["gkd_defaults"]["new1"] = sv["rps_table"]["haproxy_batch_all"]["new1"] = \
        {"1": 40.0, "8": 60.0, "32": 70.0}
    sc = scale()
    sc["stages"]["teacher_outputs"]["wall_s"] = 100.0
    text, _, _ = build(tmp_path / "win", quality=q, cost=cost(), sampler=sampler(), stream=st, serve=sv, scale=sc)
    assert losses(text) == []
    assert "Nothing in these results shows gkd behind its baselines." in section(text, "Where gkd loses")

    # a quality file without teacher-node accuracy (teacher outputs missing) renders, without that bullet
    q = quality()
    for row in q["rows"]:
        row.pop("teacher_nodes_acc_mean", None)
    q["student_vs_tuned_teacher_acc_ratio"] = None
    text, _, _ = build(tmp_path / "no-teacher-nodes", quality=q)
    assert "| gcn/kd | 0.494 ± 0.005 | 0.550 ± 0.004 | 0.424 | 0.480 | 0.471 | 0.561 | 71.4 s |" in text
    assert "| teacher LLM (tuned, 300 test nodes) | 0.393 ± 0.021 |" in text
    assert not any("tuned teacher" in b for b in losses(text)) and len(losses(text)) == 5

    # and each remaining trigger on its own
    c, s, sc = cost(), sampler(), scale()
    c["teacher"]["acc"] = 0.70
    s["graphs"][0]["ours"]["seeds_per_s"] = 4000.0
    sc["stages"]["teacher_outputs"]["wall_s"] = 100.0
    sc["peak_rss_gib"] = 20.0
    st = stream()
    st.update(ray_vs_loop_tokens_per_s_ratio=0.17, two_vs_one_actor_ratio=1.6)
    st["ray"]["2"]["tokens_per_s"] = 36.5
    text, _, _ = build(tmp_path / "more", cost=c, sampler=s, stream=st, scale=sc)
    assert losses(text) == [
        "**cost**: The student is less accurate than the teacher on the same 64 nodes (0.578 vs 0.700): "
        "its 960x speed is bought with accuracy.",
        "**sampler**: On orientation-200k-4M gkd's sampler is slower than PyG: 4,000 vs 8,497 seeds/s (0.47x).",
        "**stream**: Ray slows down teacher generation on this 2-CPU machine: 0.17x the plain loop's tokens/s "
        "(36.5 vs 214).",
        "**scale**: Memory headroom is thin at scale: peak 20.0 GiB is 85% of the 23.5 GiB limit.",
    ]


def labels_quality():
    """The `labels` profile of the same graph: no LLM world (teacher None), labels-only students (vanilla) and the
    baselines; no distilled method, so best is best_vanilla and best_vs_vanilla_acc_ratio is None."""
    q = quality()
    q.update(profile="labels", command="gkd bench --suite quality --profile labels", teacher=None,
             rows=[row for row in q["rows"] if row["method"] == "vanilla"],
             best={"gnn": "sign", "method": "vanilla", "acc_mean": 0.5689, "f1_mean": 0.4989},
             best_vs_vanilla_acc_ratio=None, student_vs_tuned_teacher_acc_ratio=None,
             best_refined={"gnn": "sign", "method": "vanilla", "acc_mean": 0.5957, "acc_std": 0.0024},
             best_refined_vs_baseline_refined_ratio=0.973,  # 0.5957 / 0.6124
             runs=[run for run in q["runs"] if run["method"] == "vanilla"])
    return q


def test_quality_labels_profile_has_no_teacher(tmp_path):
    text, _, plots = build(tmp_path, quality=labels_quality())
    heads = section(text, "Headlines")
    assert ("| **0.97x** | test accuracy of the best refined gkd student (sign/vanilla, 0.596) vs the best refined "
            "plain baseline (sign, 0.612) on debian | 2026-11-25T10:00:00+0000 | labels |") in heads
    q = section(text, "Quality")
    assert "profile labels" in q and "quick profile" not in q
    assert "teacher" not in q.lower()  # no teacher rows, no teacher walls in the compute line
    assert ("from the walls each part recorded when it ran (a rerun reuses finished parts): 2 student trainings "
            "21.1 s + 6 more tuning trainings 282 s (4.7 min) = **303 s (5.0 min)**") in q
    assert "- Best gkd student refined: **sign/vanilla 0.596** vs the best plain baseline refined (sign 0.612): " \
           "**0.97x**." in q
    students = [line for line in q.splitlines() if re.match(r"\| (\*\*)?(gcn|sage|sign)/", line)]
    assert students == [
        "| gcn/vanilla | 0.535 ± 0.004 | 0.579 ± 0.003 | 0.465 | 0.509 | 0.510 | 0.609 | 52.9 s |",
        "| sage/vanilla | 0.553 ± 0.004 | 0.591 ± 0.004 | 0.483 | 0.521 | 0.530 | 0.620 | 61.2 s |",
        "| **sign/vanilla** | **0.569 ± 0.003** | **0.596 ± 0.002** | 0.499 | 0.526 | 0.551 | 0.631 | 12.4 s |"]
    assert "| 5 | 0.381 ± 0.006 |" in q
    assert {p.name for p in plots.iterdir()} == {"quality_acc.png", "quality_sweep.png"}
    # no teacher and no distilled student: neither of their bullets, the others as in the full profile
    assert losses(text) == [
        "**quality**: The best labels-only message-passing student (sage, 0.553) is below SIGN raw (0.97x).",
        "**quality**: The best refined gkd student (sign/vanilla, 0.596) is below the best refined plain baseline "
        "(sign, 0.612).",
        "**quality**: New nodes lose 4.3 points: the served answer on the nodes held out of the graph (0.553) vs "
        "transductive refined (0.596).",
        "**quality**: Label-rate sweep: the refined gkd student (sign (gkd)) is below a refined baseline at 5 "
        "labels/class (0.415 vs sign 0.423), 50 labels/class (0.661 vs sign 0.669).",
    ]


def test_missing_suites_and_quick_profile(tmp_path):
    quick = sampler()
    quick["profile"] = "quick"
    del quick["seeds_per_s_ratio_vs_pyg"]
    quick["graphs"][0]["pyg"] = {"skipped": "torch_geometric is not installed"}
    del quick["graphs"][0]["seeds_per_s_ratio_vs_pyg"]
    text, _, plots = build(tmp_path, cost=cost(), sampler=quick)
    for name in ("quality", "stream", "serve", "scale"):
        assert f"Not run yet: `gkd bench --suite {name}`." in text
        assert f"| {name} | – | not run yet: `gkd bench --suite {name}` | – | – |" in text
    s = section(text, "Sampler")
    assert "profile quick" in s and "> **quick profile (smoke test), not a measurement to quote.**" in s
    assert "| PyG: skipped (torch_geometric is not installed) |" in s
    assert "| gkd CSRSampler | 62,054 | 48.5 | 110,106 | 162,464 | 0 s |  |" in s
    assert "| – | gkd CSRSampler vs PyG NeighborLoader: PyG not run | 2026-11-23T21:51:31+0000 | " \
           "quick (not quotable) |" in text
    assert "quick profile" not in section(text, "Cost")
    assert {p.name for p in plots.iterdir()} == {"cost_nodes_per_s.png", "sampler_seeds_per_s.png"}

    text, _, _ = build(tmp_path / "none")
    assert text.count("Not run yet") == 7 and "Machine: not recorded in any result file." in text


def test_bad_json_names_the_file(tmp_path, capsys):
    results = write(tmp_path / "results", cost=cost())
    (results / "serve.json").write_text('{"rps_table": {')
    with pytest.raises(DataError, match=r"serve\.json: not valid JSON .*line 1, column 16.*gkd bench --suite serve"):
        render(results, tmp_path / "B.md", tmp_path / "plots")
    assert main(["--results", str(results), "--out", str(tmp_path / "B.md"), "--plots", str(tmp_path / "p")]) == 2
    assert str(results / "serve.json") in capsys.readouterr().err

    (results / "serve.json").write_text(json.dumps({k: v for k, v in serve().items() if k != "rps_table"}))
    with pytest.raises(DataError, match=r"serve\.json: unexpected content \(KeyError: 'rps_table'\)"):
        render(results, tmp_path / "B.md", tmp_path / "plots")


def test_main_writes_document(tmp_path):
    results = write(tmp_path / "results", stream=stream())
    out = tmp_path / "BENCHMARKS.md"
    assert main(["--results", str(results), "--out", str(out), "--plots", str(tmp_path / "plots")]) == 0
    assert "![teacher tokens/s, loop vs Ray](plots/stream_tokens_per_s.png)" in out.read_text()


def test_refinement_that_lowers_accuracy_in_the_sweep_is_a_loss(tmp_path):
    q = ALL["quality"]()
    row = next(r for r in q["sweep"]["rows"]
               if (r["labels_per_class"], r["method"], r["refined"]) == (10, "sign (gkd)", True))
    row.update(acc_mean=0.4301, acc_std=0.1203)  # below its raw 0.4402
    text, _, _ = build(tmp_path / "hurt", **{**{k: f() for k, f in ALL.items()}, "quality": q})
    assert ("**quality**: Refinement lowers mean test accuracy in the label-rate sweep for sign (gkd) at 10 "
            "(0.440 -> 0.430, ± 0.120) labels/class: the class prior estimated from a weak model can be far off, "
            "and the val accuracy reweighted to it, which chooses the correction, is then fooled too.") in losses(text)


def test_llm_share_table_and_its_loss_line(tmp_path):
    q = ALL["quality"]()
    share = {"points": 0.5, "std": 0.3, "raw_points": 1.1, "with_refined": 0.705, "without_refined": 0.7,
             "with_raw": 0.66, "without_raw": 0.649, "teacher_acc": 0.61, "teacher_test_nodes": 300,
             "teacher_val_acc": 0.6, "teacher_val_ece": 0.05, "teacher_scoring": "head", "teacher_examples": 1060,
             "teacher_tuning_wall_s": 2400, "teacher_outputs_wall_s": 500,
             "teacher_curve": [{"minutes": 13.0, "val_acc": 0.52, "epoch": 1.0}, {"minutes": 26.0, "val_acc": 0.6,
                                                                                 "epoch": 2.0}],
             "taught_nodes": 300, "dropped_below_floor": 120, "points_per_1000_taught": 1.67, "seeds": 3,
             "method": "lingugkd", "gnn": "gat"}
    q.update(llm_share_by_rate={"20": share}, llm_share_acc_points=0.5)
    text, _, _ = build(tmp_path / "share", **{**{k: f() for k, f in ALL.items()}, "quality": q})
    assert "### The LLM's share" in text
    assert ("| 20 | 0.610 (300 test) | 0.600 | 300 | 0.700 | 0.705 | **+0.50 ± 0.30** | +1.10 | +1.67 | 2,400 s (40.0 min) | "
            "0.520 @ 13 min, 0.600 @ 26 min |") in text
    assert ("**quality**: The LLM's share at 20 labels per class is +0.50 ± 0.30 points (goal: at least +2): the "
            "teacher (0.610 on its test nodes) adds too little over the refined labels-only student (0.700).") \
        in losses(text)
    q["llm_share_by_rate"]["20"].update(points=2.4)
    text, _, _ = build(tmp_path / "paid", **{**{k: f() for k, f in ALL.items()}, "quality": q})
    assert not any("LLM's share" in line for line in losses(text))
    # above +2 only in the refined mean, with a spread larger than it and a loss raw: still a loss
    q["llm_share_by_rate"]["20"].update(points=4.06, std=22.34, raw_points=-1.22)
    text, _, _ = build(tmp_path / "noise", **{**{k: f() for k, f in ALL.items()}, "quality": q})
    assert ("**quality**: The LLM's share at 20 labels per class is +4.06 ± 22.34 points refined, which its spread "
            "over seeds does not support, and -1.22 raw: the teacher (0.610 on its test nodes) does not reliably help "
            "the labels-only student (0.700 refined).") in losses(text)
    q["llm_share_by_rate"]["20"].update(points=2.4, std=0.3, raw_points=1.1)
    # a rate above the teacher cap: its teacher was tuned on fewer labels, and some taught nodes are labelled there
    q["llm_share_by_rate"]["50"] = {**share, "teacher_labels_per_class": 20, "taught_labelled": 41}
    text, _, _ = build(tmp_path / "cap", **{**{k: f() for k, f in ALL.items()}, "quality": q})
    assert "| 50 (teacher tuned on 20) | 0.610 (300 test) | 0.600 | 300 (41 labelled at this rate) | 0.700 |" in text


def test_every_method_against_labels_alone_table_and_its_loss_line(tmp_path):
    from gkd.bench.quality import below_vanilla, methods_vs_vanilla

    def run(gnn, method, seed, refined, acc):
        return {"gnn": gnn, "method": method, "seed": seed, "refined": refined, "test": {"acc": acc}}

    # gcn: kd above vanilla on both seeds; pan below raw (-1.0, -3.0) but above refined; sage: kd seed 1 only
    runs = [run("gcn", "vanilla", 0, False, 0.60), run("gcn", "vanilla", 1, False, 0.62),
            run("gcn", "kd", 0, False, 0.61), run("gcn", "kd", 1, False, 0.64),
            run("gcn", "pan", 0, False, 0.59), run("gcn", "pan", 1, False, 0.59),
            run("gcn", "vanilla", 0, True, 0.70), run("gcn", "vanilla", 1, True, 0.70),
            run("gcn", "kd", 0, True, 0.71), run("gcn", "kd", 1, True, 0.72),
            run("gcn", "pan", 0, True, 0.705), run("gcn", "pan", 1, True, 0.705),
            run("sage", "vanilla", 1, False, 0.5), run("sage", "kd", 0, False, 0.9), run("sage", "kd", 1, False, 0.52),
            run("sage", "vanilla", 1, True, 0.6), run("sage", "kd", 1, True, 0.61)]
    table = methods_vs_vanilla(runs)
    assert table["gcn"]["kd"] == {"raw": {"points": 1.5, "std": 0.5, "seeds": [0, 1]},
                                  "refined": {"points": 1.5, "std": 0.5, "seeds": [0, 1]}}
    assert table["gcn"]["pan"]["raw"] == {"points": -2.0, "std": 1.0, "seeds": [0, 1]}
    # sage's kd seed 0 has no vanilla of its own: not counted
    assert table["sage"]["kd"]["raw"] == {"points": 2.0, "std": 0.0, "seeds": [1]}
    below = below_vanilla(table)
    assert below == [{"gnn": "gcn", "method": "pan", "raw": -2.0, "refined": 0.5}]
    q = ALL["quality"]()
    q.update(llm_share_by_method=table, methods_below_vanilla=below,
             methods_share_at={"labels_per_class": 20, "test_nodes": 53261, "teacher_acc": 0.7,
                               "teacher_test_nodes": 300, "taught_nodes": 300, "seeds": 2,
                               "methods": ["kd", "pan"], "gnns": ["gcn", "sage"]})
    text, _, _ = build(tmp_path / "methods", **{**{k: f() for k, f in ALL.items()}, "quality": q})
    assert "### Every method against labels alone, at 20 labels per class" in text
    assert "| gcn | +1.50 ± 0.50 (+1.50) | +0.50 ± 0.00 (-2.00) |" in text
    assert "| sage | +1.00 ± 0.00 (+2.00) | – |" in text
    assert ("**quality**: At 20 labels per class, 1 of 3 (GNN, method) pairs are below the same GNN without the "
            "teacher, raw or refined (points): gcn/pan raw -2.00 refined +0.50.") in losses(text)
    assert "**Unfinished:**" not in text
    # a run stopped part-way (what `progress` wrote) says so above its table
    text, _, _ = build(tmp_path / "unfinished", **{**{k: f() for k, f in ALL.items()},
                                                   "quality": {**q, "methods_unfinished": True}})
    assert "**Unfinished:** the run that wrote this stopped before every GNN and method had run" in text
    assert "| gcn | +1.50 ± 0.50 (+1.50) | +0.50 ± 0.00 (-2.00) |" in text


def test_stream_teacher_outputs_show_every_readout_and_what_the_ratio_compares(tmp_path):
    s = ALL["stream"]()
    s.update(teacher_outputs={"three_pass": {"wall_s": 202.0, "nodes_per_s": 0.238, "acc": 0.0625},
                              "one_pass": {"wall_s": 93.5, "nodes_per_s": 0.513, "acc": 0.0625},
                              "head_one_pass": {"wall_s": 41.6, "nodes_per_s": 1.154, "acc": 0.6667},
                              "torch_threads": 2, "batch_size": 8, "hops": 2},
             one_pass_vs_three_pass_nodes_per_s_ratio=4.849, names_one_pass_vs_three_pass_nodes_per_s_ratio=2.155)
    text, _, _ = build(tmp_path / "s", **{**{k: f() for k, f in ALL.items()}, "stream": s})
    assert ("The default read-out (the tuned head teacher, one pass) vs three-pass class names: **4.85x** nodes/s; "
            "class names one vs three passes: 2.15x.") in text
    assert "| class names, three passes | 0.238 | 202 s (3.4 min) | 0.062 |" in text
    assert "| head, one pass | 1.15 | 41.6 s | 0.667 |" in text
    # a head that was not tuned (no tuned teacher in the work dir) is timed only
    s["teacher_outputs"]["head_one_pass"].update(acc=None, untrained_head=True)
    text, _, _ = build(tmp_path / "u", **{**{k: f() for k, f in ALL.items()}, "stream": s})
    assert "| head, one pass | 1.15 | 41.6 s | – (untrained head, timed only) |" in text


def test_method_share_runs_of_two_invocations_merge_at_the_same_rate():
    from gkd.bench.quality import merge_method_runs, method_fields

    def run(gnn, method, seed, refined, acc):
        return {"gnn": gnn, "method": method, "seed": seed, "refined": refined, "test": {"acc": acc, "macro_f1": acc},
                "val": {"acc": acc}, "train_wall_s": 1.0}

    at = {"labels_per_class": 20, "test_nodes": 100, "teacher_acc": 0.7, "teacher_test_nodes": 30,
          "taught_nodes": 10, "seeds": 1}
    first = [run("gcn", m, 0, ref, acc) for m, acc in (("vanilla", 0.6), ("kd", 0.62)) for ref in (False, True)]
    prev = {"method_share_runs": first, **method_fields(first, at)}
    # the second invocation measures pan (and vanilla again, the same finished students): kd is kept
    second = [run("gcn", m, 0, ref, acc) for m, acc in (("vanilla", 0.6), ("pan", 0.59)) for ref in (False, True)]
    runs, fields = merge_method_runs(prev, second, method_fields(second, at))
    assert sorted({(r["gnn"], r["method"]) for r in runs}) == [("gcn", "kd"), ("gcn", "pan"), ("gcn", "vanilla")]
    assert len(runs) == 6  # vanilla once: the second invocation's
    assert {m: cell["raw"]["points"] for m, cell in fields["llm_share_by_method"]["gcn"].items()} == \
        {"kd": 2.0, "pan": -1.0}
    assert fields["methods_share_at"]["methods"] == ["kd", "pan"]
    assert fields["methods_below_vanilla"] == [{"gnn": "gcn", "method": "pan", "raw": -1.0, "refined": -1.0}]
    # another rate replaces the earlier result
    other = method_fields(second, {**at, "labels_per_class": 5})
    assert merge_method_runs(prev, second, other) == (second, other)
    # so do another graph (a re-ingested index with more test nodes) and another teacher: kd is not comparable
    graph = {"graph_nodes": 400, "graph_edges": 900}
    prev_g = {"method_share_runs": first, **method_fields(first, {**at, **graph})}
    assert len(merge_method_runs(prev_g, second, method_fields(second, {**at, **graph}))[0]) == 6
    for change in ({"test_nodes": 101}, {"teacher_acc": 0.71}, {"graph_nodes": 500}, {"graph_edges": 901}):
        other = method_fields(second, {**at, **graph, **change})
        assert merge_method_runs(prev_g, second, other) == (second, other), change
    # keys the earlier result lacks (written before they existed) are not held against it
    assert len(merge_method_runs(prev, second, method_fields(second, {**at, **graph}))[0]) == 6


def test_a_labels_rerun_keeps_the_llm_runs_already_in_the_result(tmp_path):
    """The `labels` profile rerun into a result that holds `share`/`methods` runs (hours of teacher tuning) keeps
    them, saying where they came from; a profile that measures them itself keeps nothing."""
    import json

    from gkd.bench.quality import PROFILES, kept_llm_runs

    out = tmp_path / "quality.json"
    assert kept_llm_runs(out, PROFILES["labels"]) == {}  # nothing there yet
    prev = {"rows": [{"gnn": "gcn"}], "share_runs": [{"labels_per_class": 20}], "llm_share_acc_points": 1.09,
            "method_share_runs": [{"gnn": "gat", "method": "kd"}], "methods_share_at": {"graph_nodes": 500},
            "command": "python -m gkd.bench.quality --profile methods", "measured_at": "2026-12-03T18:54:06+0000"}
    out.write_text(json.dumps(prev))
    kept = kept_llm_runs(out, PROFILES["labels"])
    assert kept == {"share_runs": [{"labels_per_class": 20}], "llm_share_acc_points": 1.09,
                    "method_share_runs": [{"gnn": "gat", "method": "kd"}], "methods_share_at": {"graph_nodes": 500},
                    "llm_runs_from": {"command": "python -m gkd.bench.quality --profile methods",
                                      "measured_at": "2026-12-03T18:54:06+0000"}}
    # a second labels rerun still names the LLM runs' own command, not the first rerun's
    out.write_text(json.dumps({**prev, **kept, "command": "python -m gkd.bench.quality --profile labels"}))
    assert kept_llm_runs(out, PROFILES["labels"])["llm_runs_from"]["command"].endswith("--profile methods")
    for profile in ("full", "share", "methods"):
        assert kept_llm_runs(out, PROFILES[profile]) == {}, profile
    out.write_text(json.dumps({"rows": []}))
    assert kept_llm_runs(out, PROFILES["labels"]) == {}
    from gkd.bench.quality import kept_note

    assert kept_note(kept) == ["Kept from an earlier run when the labels-only profile was rerun into this file: "
                               "`python -m gkd.bench.quality --profile methods`, measured 2026-12-03T18:54:06+0000.",
                               ""]
    assert kept_note(prev) == []


def test_reliability_section_shows_each_fault_its_counts_and_the_misses(tmp_path):
    r = reliability()
    assert (r["nodes_lost"], r["failed_requests_two_replicas"], r["non_loopback_listeners"],
            r["mlflow_outage_duplicates"]) == (0, 3, 0, None)
    text, _, _ = build(tmp_path, **{k: f() for k, f in ALL.items()})
    s = section(text, "Reliability")
    assert "| [reliability](#reliability-faults-injected-outcomes-counted) | **8/9** | faults whose counted outcome" \
        in text
    assert ("| tune | yes | 1 of 2 DeepSpeed workers of the teacher's tuning killed after step 7 (the run reached 8); "
            "resumed after step 4 (4 redone, checkpoint every 4); final teacher equal to an uninterrupted run |") in s
    assert ("| train | yes | 1 of 2 distill workers killed after epoch 5 (the run reached 7); resumed after epoch 4 (3 redone, checkpoint "
            "every 4); final metrics equal to an uninterrupted run | epochs redone <= checkpoint interval, same final "
            "metrics |") in s
    assert ("| stream | yes | 3 driver kills + 1 actor kill over 25 batches: 100 budget nodes, 0 lost, 0 written "
            "twice | 0 lost, 0 duplicated |") in s
    assert ("| serve | **no** | 1 replica(s): 17 of 4,210 wrk requests failed, recovered in 2.4 s; 2 replica(s): 3 of "
            "5,120 wrk requests failed, recovered in 0.3 s | 0 failed requests with 2 replicas |") in s
    assert "| mlflow | – | skipped: no PostgreSQL server binaries (Debian package postgresql) |" in s
    assert "`nodes_lost` 0, `nodes_duplicated` 0, `fuzz_cases` 1250" in s and "`mlflow_outage_duplicates` –" in s
    assert losses(text)[-1].startswith("**reliability**: reliability fault `serve` misses its goal (0 failed "
                                       "requests with 2 replicas): 1 replica(s): 17 of 4,210")
    # a fault whose own code failed is a miss, not a pass
    broken = reliability()
    broken["faults"]["train"] = {"error": "TimeoutError: vanilla epoch 6: not reached after 1800 s"}
    text, _, _ = build(tmp_path / "b", **{**{k: f() for k, f in ALL.items()}, "reliability": broken})
    assert "| train | **no** | the fault itself failed: TimeoutError: vanilla epoch 6" in text
