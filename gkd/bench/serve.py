"""Serving throughput: Ray Serve's knobs, the teacher, and a bare uvicorn app serving the same student, under wrk.

  python -m gkd.bench.serve --profile full --workdir bench/work/quality --out bench/results/serve.json

--workdir holds graph/ (and teacher/checkpoint for the teacher runs): the quality suite's world, whose
student (distill.gnn/method, seed 0) is served unless --checkpoint names another. Every
Serve configuration is a fresh Serve instance on one local Ray cluster; each point is `wrk -t1 -c<C>` for
--duration seconds on loopback, POSTing /v1/predict bodies cycled from a fixed set (random node ids). The
bare app is gkd.serve.app.run_bare (the same FastAPI routes and student) in its own uvicorn process, up for
the whole run: every Serve point is followed by the bare app's same point, so each ratio compares two runs
seconds apart (this machine is shared; its background load moves). `serve_vs_bare_rps_ratio` = the best
Serve configuration's req/s / the bare app's, at 32 connections with one node id per request.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from gkd.bench.report import write_result
from gkd.config import ExperimentConfig, build_config, read_config_dict
from gkd.runtime import setup_logging

log = logging.getLogger("gkd.bench.serve")

CONNECTIONS = [1, 8, 32]
# (name, serve.* overrides, payloads): Ray's defaults first, then one knob at a time
CONFIGS = [
    ("ray_defaults", {"ingress": "proxy", "access_log": True, "max_ongoing_requests": 5, "batching": "off"},
     ["ids1", "ids64"]),
    ("proxy_no_access_log", {"ingress": "proxy", "access_log": False, "max_ongoing_requests": 64, "batching": "off"},
     ["ids1", "ids64"]),
    ("gkd_defaults", {}, ["ids1", "ids64", "new1"]),  # ServeConfig's defaults: haproxy, batching new_nodes
    # batching off differs from the defaults only for requests with new nodes
    ("haproxy_batch_off", {"ingress": "haproxy", "batching": "off"}, ["new1"]),
    ("haproxy_batch_all", {"ingress": "haproxy", "batching": "all"}, ["ids1", "ids64", "new1"]),
]
DEFAULTS = "gkd_defaults"
# cascade threshold 1.0: every answer comes from the teacher LLM (about a second per node on one core)
TEACHER = ("teacher_only", {"cascade": {"enabled": True, "threshold": 1.0}}, ["ids1"])
BARE_PAYLOADS = ["ids1", "ids64", "new1"]
PAIRED = ["ids1", "ids64"]  # payloads measured on the bare app right after each Serve point
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


# ----------------------------------------------------------------------------- inputs


def find_inputs(args) -> tuple[Path, Path, str | None]:
    """(workdir with graph/, student checkpoint, teacher model or None). Without --checkpoint: the quality
    suite's world of --profile and its student (built first when missing, reused otherwise)."""
    from gkd.config import build_config
    from gkd.llm.stage import tuned_teacher

    work = Path(args.workdir)
    cfg = build_config({"workdir": str(work)})
    if args.checkpoint:
        ckpt = Path(args.checkpoint)
        if not (cfg.graph_dir / "meta.json").is_file() or not (ckpt / "student.json").is_file():
            sys.exit(f"--checkpoint {ckpt} needs its student.json and --workdir {work} its graph/meta.json")
    else:
        from gkd.bench.quality import world_student

        _, ckpt = world_student(args.profile, work)
    teacher = tuned_teacher(cfg)
    return work, ckpt, str(teacher) if teacher is not None else None


def payloads(graph_dir: Path, seed: int = 0, count: int = 256) -> dict[str, list[str]]:
    """JSON bodies per payload kind: ids1 (one random node id), ids64 (64), new1 (a node's text and neighbours
    posted as a new node: the inductive path, encoder included)."""
    from gkd.data.store import TAG

    tag = TAG.load(graph_dir, features=False)
    rng = np.random.default_rng(seed)
    n = tag.num_nodes
    texts = tag.texts()
    new = []
    for i in rng.choice(n, count, replace=False).tolist():
        nbrs = tag.neighbors(i)[:32].tolist()
        new.append(json.dumps({"nodes": [{"text": texts[i] or "empty", "neighbors": nbrs}]}))
    return {"ids1": [json.dumps({"node_ids": [int(i)]}) for i in rng.integers(0, n, count)],
            "ids64": [json.dumps({"node_ids": rng.integers(0, n, 64).tolist()}) for _ in range(count)],
            "new1": new}


def lua_script(path: Path, url_path: str, bodies: list[str]) -> Path:
    """A wrk script cycling through pre-formatted POST requests."""
    quoted = []
    for b in bodies:
        if "]====]" in b:
            raise ValueError("request body holds the Lua long-bracket terminator")
        quoted.append(f"[====[{b}]====]")
    path.write_text(
        "local bodies = {" + ",\n".join(quoted) + "}\nlocal reqs, i = {}, 0\n"
        "init = function(args)\n  for k, b in ipairs(bodies) do\n"
        f'    reqs[k] = wrk.format("POST", "{url_path}", {{["Content-Type"] = "application/json"}}, b)\n'
        "  end\nend\nrequest = function()\n  i = i % #reqs + 1\n  return reqs[i]\nend\n")
    return path


# ----------------------------------------------------------------------------- wrk


def parse_wrk(out: str) -> dict:
    """wrk --latency output -> requests/s, p50/p90/p99 ms, requests, non-2xx and socket errors."""
    def ms(label: str) -> float | None:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return round(float(m.group(1)) * _UNITS[m.group(2)], 3) if m else None

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50_ms": ms("50%"), "p90_ms": ms("90%"),
            "p99_ms": ms("99%"), "requests": int(total.group(1)) if total else 0,
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0}


def wrk(url: str, script: Path, connections: int, duration: float, timeout_s: int) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", f"--timeout={timeout_s}s", "--latency",
           "-s", str(script), url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + timeout_s + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stdout[-800:]} {proc.stderr[-800:]}")
    return parse_wrk(proc.stdout)


def wait_healthy(base: str, timeout_s: float = 300, proc: subprocess.Popen | None = None) -> None:
    t = time.time()
    while time.time() - t < timeout_s:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the bare app exited with {proc.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{base}/healthz not ready after {timeout_s} s")


def check_answer(base: str, body: str) -> dict:
    req = urllib.request.Request(f"{base}/v1/predict", data=body.encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def point(base: str, script: Path, c: int, duration: float, sample: str, timeout_s: int = 10) -> dict:
    check_answer(base, sample)  # returns once the requests an earlier wrk left in flight are done
    return {**wrk(f"{base}/v1/predict", script, c, duration, timeout_s), "loadavg_1m": round(os.getloadavg()[0], 2)}


def measure(name: str, base: str, scripts: dict[str, Path], kinds: list[str], conns: list[int], args, sample: str,
            bare: str | None = None, timeout_s: int = 10, warmup: bool = True) -> list[dict]:
    """wrk at every (payload, connections); with `bare`, the bare app's same point right after (paired under
    the same background load: this machine is shared) for vs_bare."""
    rows = []
    if warmup:
        wrk(f"{base}/v1/predict", scripts[kinds[0]], max(conns), 2, timeout_s)
    for kind in kinds:
        for c in conns:
            r = {"config": name, "payload": kind, "connections": c,
                 **point(base, scripts[kind], c, args.duration, sample, timeout_s)}
            if bare and kind in PAIRED:
                r["bare_rps"] = point(bare, scripts[kind], c, args.duration, sample)["rps"]
                r["vs_bare"] = round(r["rps"] / r["bare_rps"], 3) if r["bare_rps"] else None
            rows.append(r)
            log.info("%-24s %-5s c=%-3d %9.1f req/s  p50 %s ms  p99 %s ms  non-2xx %d%s", name, kind, c, r["rps"],
                     r["p50_ms"], r["p99_ms"], r["non_2xx"] + r["socket_errors"],
                     f"  (bare right after: {r['bare_rps']:.1f} req/s)" if "bare_rps" in r else "")
    return rows


# ----------------------------------------------------------------------------- the runs


def serve_cfg(base_cfg: ExperimentConfig, overrides: dict, port: int) -> ExperimentConfig:
    data = base_cfg.model_dump(mode="json")
    serve = data["serve"]
    for k, v in overrides.items():
        serve[k] = {**serve[k], **v} if isinstance(v, dict) else v
    serve["port"] = port
    return ExperimentConfig.model_validate(data)


def run_serve_config(base_cfg, name, overrides, kinds, scripts, args, conns, sample: str,
                     bare: str | None = None) -> tuple[list[dict], dict]:
    from gkd.runtime import free_port
    from gkd.serve.app import run_local, shutdown

    cfg = serve_cfg(base_cfg, overrides, free_port())
    t = time.time()
    base = run_local(cfg, blocking=False)
    try:
        wait_healthy(base)
        startup = round(time.time() - t, 1)
        answer = check_answer(base, sample)["predictions"][0]
        slow = "cascade" in overrides
        rows = measure(name, base, scripts, kinds, conns, args, sample, bare, timeout_s=60 if slow else 10,
                       warmup=not slow)
    finally:
        shutdown()
    return rows, {"startup_s": startup, "serve": overrides, "sample_answer": answer}


def start_bare(base_cfg) -> tuple[subprocess.Popen, str, float]:
    """gkd.serve.app.run_bare in its own process: (process, base URL, start-up seconds)."""
    from gkd.runtime import free_port

    cfg = serve_cfg(base_cfg, {}, free_port())
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(cfg.model_dump_json())
    proc = subprocess.Popen([sys.executable, "-m", "gkd.bench.serve", "--bare", f.name])
    base = f"http://127.0.0.1:{cfg.serve.port}"
    t = time.time()
    try:
        wait_healthy(base, proc=proc)
    finally:
        os.unlink(f.name)
    return proc, base, round(time.time() - t, 1)


def rps(rows: list[dict], config: str, payload: str, c: int, key: str = "rps") -> float | None:
    got = [r.get(key) for r in rows if (r["config"], r["payload"], r["connections"]) == (config, payload, c)]
    return got[0] if got else None


# payload -> (unbatched, batched) configuration: the defaults batch only requests that carry new nodes
BATCH_PAIRS = {"ids1": ("gkd_defaults", "haproxy_batch_all"), "ids64": ("gkd_defaults", "haproxy_batch_all"),
               "new1": ("haproxy_batch_off", "gkd_defaults")}


def batched_vs_unbatched(rows: list[dict]) -> dict:
    """Per payload and connections: req/s, p50 and p99 of @serve.batch on vs off, and the req/s ratio."""
    out = {}
    for payload, (off, on) in BATCH_PAIRS.items():
        for c in CONNECTIONS:
            sides = {side: {k: rps(rows, name, payload, c, k) for k in ("rps", "p50_ms", "p99_ms")} | {"config": name}
                     for side, name in (("unbatched", off), ("batched", on))}
            if sides["unbatched"]["rps"] and sides["batched"]["rps"]:
                out.setdefault(payload, {})[str(c)] = sides | {
                    "rps_ratio": round(sides["batched"]["rps"] / sides["unbatched"]["rps"], 3)}
    return out


def summarize(rows: list[dict], serve_names: list[str]) -> dict:
    """Tables of req/s; the best Serve configuration by its paired ratio to the bare app (ids1, 32 connections)."""
    table = {}
    for r in rows:
        table.setdefault(r["config"], {}).setdefault(r["payload"], {})[str(r["connections"])] = round(r["rps"], 1)
    paired = [n for n in serve_names if rps(rows, n, "ids1", 32, "vs_bare") is not None]
    if not paired:  # --no-bare, or no configuration with one-id requests
        return {"rps_table": table, "batched_vs_unbatched": batched_vs_unbatched(rows)}
    best = max(paired, key=lambda n: rps(rows, n, "ids1", 32, "vs_bare"))
    ratios = {k: {str(c): rps(rows, best, k, c, "vs_bare") for c in CONNECTIONS} for k in PAIRED}
    out = {"rps_table": table, "best_serve_config": best,
           "serve_vs_bare_rps_ratio": ratios["ids1"]["32"],
           "serve_vs_bare_rps_ratio_by_point": ratios,
           "defaults_vs_bare_rps_ratio": rps(rows, DEFAULTS, "ids1", 32, "vs_bare"),
           "vs_bare_by_config": {n: {k: {str(c): rps(rows, n, k, c, "vs_bare") for c in CONNECTIONS} for k in PAIRED}
                                 for n in paired}}
    out["best_nodes_per_s_ids64"] = {str(c): round(rps(rows, best, "ids64", c) * 64, 1) for c in CONNECTIONS
                                     if rps(rows, best, "ids64", c)}
    out["batched_vs_unbatched"] = batched_vs_unbatched(rows)
    if any(r["config"] == TEACHER[0] for r in rows):
        out["teacher_vs_student_rps"] = {str(c): {"teacher": rps(rows, TEACHER[0], "ids1", c),
                                                  "student": rps(rows, DEFAULTS, "ids1", c)} for c in (1, 8)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="jobs/configs/debian.yaml", help="experiment YAML (serve.*, llm.*, prompt.*)")
    ap.add_argument("--workdir", default="bench/work/quality", help="holds graph/ (+ teacher/checkpoint)")
    ap.add_argument("--checkpoint", help="student checkpoint dir (default <workdir>/student/checkpoint)")
    ap.add_argument("--out", default="bench/results/serve.json")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per wrk point")
    ap.add_argument("--teacher-duration", type=float, default=20.0)
    ap.add_argument("--configs", help="comma-separated subset of " + ",".join(n for n, _, _ in CONFIGS))
    ap.add_argument("--no-teacher", action="store_true")
    ap.add_argument("--no-bare", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--profile", choices=["full", "quick"], default="full",
                    help="quick: 1 s per point, the batching configurations only, no teacher (a smoke test)")
    ap.add_argument("--bare", help=argparse.SUPPRESS)  # internal: run the bare app from this config JSON
    args = ap.parse_args(argv)
    setup_logging()
    if args.bare:
        from gkd.serve.app import run_bare as serve_bare

        serve_bare(ExperimentConfig.model_validate_json(Path(args.bare).read_text()))
        return 0
    if args.profile == "quick":
        args.duration, args.no_teacher = 1.0, True
        args.configs = args.configs or "gkd_defaults,haproxy_batch_off,haproxy_batch_all"
    if shutil.which("wrk") is None:
        sys.exit("gkd.bench.serve needs wrk on PATH (apt-get install wrk)")
    import ray

    from gkd.config import parse_overrides

    data = read_config_dict(args.config)
    work, ckpt, teacher = find_inputs(args)  # may build the world on a Ray of its own, shut down after
    # a Ray of our own (address="local"), never a cluster someone else left running on this machine
    from gkd.runtime import loopback_only

    if (data.get("ray") or {}).get("local_loopback", True):
        loopback_only(ray)
    ray.init(address="local", num_cpus=(data.get("ray") or {}).get("num_cpus") or os.cpu_count(),
             include_dashboard=False, log_to_driver=False)
    data.update(workdir=str(work.resolve()))
    data.setdefault("serve", {}).update(checkpoint=str(ckpt.resolve()), token_env=None)
    if teacher:
        data["serve"].setdefault("cascade", {})["model"] = teacher
    base_cfg = build_config(data, args.config, parse_overrides(args.set))
    bodies = payloads(base_cfg.graph_dir)
    scratch = Path(tempfile.mkdtemp(prefix="gkd-bench-serve-"))
    path = base_cfg.serve.route_prefix.rstrip("/") + "/v1/predict"
    scripts = {k: lua_script(scratch / f"{k}.lua", path, v) for k, v in bodies.items()}
    sample = bodies["ids1"][0]
    chosen = [c for c in CONFIGS if not args.configs or c[0] in args.configs.split(",")]
    rows, details = [], {}
    t0 = time.time()
    proc, bare, bare_startup = (None, None, None) if args.no_bare else start_bare(base_cfg)
    try:
        if bare:
            rows += measure("bare_uvicorn", bare, scripts, BARE_PAYLOADS, CONNECTIONS, args, sample)
            details["bare_uvicorn"] = {"startup_s": bare_startup,
                                       "sample_answer": check_answer(bare, sample)["predictions"][0]}
        for name, overrides, kinds in chosen:
            r, d = run_serve_config(base_cfg, name, overrides, kinds, scripts, args, CONNECTIONS, sample, bare)
            rows += r
            details[name] = d
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    if not args.no_teacher and teacher:
        targs = argparse.Namespace(**{**vars(args), "duration": args.teacher_duration})
        r, d = run_serve_config(base_cfg, *TEACHER, scripts, targs, [1, 8], sample)
        rows += r
        details[TEACHER[0]] = {**d, "teacher": teacher}
    ray.shutdown()
    shutil.rmtree(scratch, ignore_errors=True)
    from gkd.gnn.distill import load_student

    _, info = load_student(ckpt)
    result = {
        "profile": args.profile,
        "student": {"checkpoint": str(ckpt), "graph": info.get("graph"), "gnn": info.get("gnn"),
                    "method": info.get("method"), "spec": info.get("spec"), "test_acc": info.get("test_acc")},
        "teacher": teacher, "duration_s": args.duration,
        "wrk": "wrk -t1 -c{1,8,32} --latency -s <script cycling 256 POST bodies> on 127.0.0.1",
        **summarize(rows, [n for n, _, _ in chosen]), "configs": details, "runs": rows,
        "bench_wall_s": round(time.time() - t0, 1),
    }
    write_result(args.out, result, "gkd.bench.serve", argv)
    return 0


# ---------------------------------------------------------------- BENCHMARKS.md section (gkd.bench.markdown)


MARKDOWN_TITLE = "Serve: Ray Serve vs a bare uvicorn app"
# what each payload of payloads() is
PAYLOADS = {"ids1": "one random node id per request", "ids64": "64 random node ids per request",
            "new1": "one new node (its text and up to 32 neighbours) per request: the inductive path, encoder included"}


def _serve_runs(r: dict) -> dict[tuple[str, str, int], dict]:
    return {(x["config"], x["payload"], int(x["connections"])): x for x in r.get("runs", [])}


def _serve_settings(r: dict) -> dict[str, str]:
    """Config name -> what it is, from the overrides stored in the result over ServeConfig's defaults."""
    from gkd.bench.markdown import num

    from gkd.config import ServeConfig

    out = {}
    for name, c in r.get("configs", {}).items():
        if "serve" not in c:
            out[name] = "the same FastAPI routes and student in one uvicorn process, no Ray Serve"
            continue
        overrides = c["serve"]
        keys = ["ingress", "access_log", "max_ongoing_requests", "batching"]
        settings = {k: overrides.get(k, ServeConfig.model_fields[k].default) for k in keys}
        text = ", ".join(f"{k} {num(v)}" for k, v in settings.items())
        if not overrides:
            text = "ServeConfig's defaults: " + text
        if "cascade" in overrides:
            text += ", cascade " + ", ".join(f"{k} {num(v)}" for k, v in overrides["cascade"].items())
        if (c.get("sample_answer") or {}).get("answered_by") == "teacher":
            text += " (every answer comes from the teacher LLM)"
        out[name] = text
    return out


def _serve_point(r: dict) -> tuple[str, str] | None:
    """The (payload, connections) at which serve_vs_bare_rps_ratio was taken."""
    for payload, by_conn in r.get("serve_vs_bare_rps_ratio_by_point", {}).items():
        for conn, v in by_conn.items():
            if v == r["serve_vs_bare_rps_ratio"]:
                return payload, conn
    return None


def markdown_headline(r: dict) -> tuple[str, str]:
    from gkd.bench.markdown import ratio

    point = _serve_point(r)
    where = f", {point[0]} payload ({PAYLOADS.get(point[0], point[0])}), {point[1]} connections" if point else ""
    return (ratio(r["serve_vs_bare_rps_ratio"]),
            f"req/s of the best Ray Serve config ({r['best_serve_config']}) vs a bare uvicorn app serving the same "
            f"student{where}")


def markdown_section(r: dict, plot) -> list[str]:
    from gkd.bench.markdown import num, ratio, seconds, table
    from gkd.plots import pyplot

    rps, runs, settings = r["rps_table"], _serve_runs(r), _serve_settings(r)
    conns = sorted({int(c) for by_payload in rps.values() for by_conn in by_payload.values() for c in by_conn})
    student = r.get("student", {})
    out = [f"Student {student.get('gnn', '?')}/{student.get('method', '?')} on {student.get('graph', '?')} "
           f"behind `POST /v1/predict`; load from `{r.get('wrk', 'wrk')}`, {num(r.get('duration_s'))} s per point. "
           f"Best Serve config **{r['best_serve_config']}**: **{ratio(r['serve_vs_bare_rps_ratio'])}** the bare app's "
           "req/s" + (" ({}, {} connections).".format(*_serve_point(r)) if _serve_point(r) else "."), ""]
    out += table(["config", "what it is", "start-up"],
                 [[name, text, seconds(r["configs"][name]["startup_s"]) if "startup_s" in r["configs"][name] else "–"]
                  for name, text in settings.items()])
    out += table(["payload", "what it is"], [[k, PAYLOADS.get(k, "")] for k in
                                            dict.fromkeys(p for by_payload in rps.values() for p in by_payload)])
    out += ["Requests per second (in brackets: vs the bare app's same point, measured seconds apart):", ""]
    rows = []
    for cfg, by_payload in rps.items():
        for payload, by_conn in by_payload.items():
            line = [cfg, payload]
            for c in conns:
                v = by_conn.get(str(c))
                run = runs.get((cfg, payload, c), {})
                paired = f" ({ratio(run['vs_bare'])})" if "vs_bare" in run else ""
                line.append("–" if v is None else num(v) + paired)
            rows.append(line)
    out += table(["config", "payload"] + [f"{c} conn." for c in conns], rows)
    if any("p99_ms" in x for x in runs.values()):
        out += ["Latency, p50 / p99 in ms:", ""]
        rows = [[cfg, payload] + [f"{num(runs[cfg, payload, c]['p50_ms'])} / {num(runs[cfg, payload, c]['p99_ms'])}"
                                  if (cfg, payload, c) in runs else "–" for c in conns]
                for cfg, by_payload in rps.items() for payload in by_payload]
        out += table(["config", "payload"] + [f"{c} conn." for c in conns], rows)

    batching = _serve_batching(r)
    if batching:
        out += ["Batching (`@serve.batch`): req/s of each config vs the unbatched one on the same payload "
                "(haproxy_batch_off where measured; gkd_defaults batches only requests with new nodes, so it is "
                "unbatched for node-id payloads):", ""]
        rows = [[payload, cfg, base] + [("–" if v is None else f"{num(v)} ({ratio(q)})") for v, q in points]
                for payload, cfg, base, points in batching]
        out += table(["payload", "config", "vs"] + [f"{c} conn." for c in conns], rows)
    tvs = r.get("teacher_vs_student_rps")
    if tvs:
        out += ["Teacher-only cascade vs the student, req/s: " + "; ".join(
            f"{c} conn.: teacher {num(v['teacher'])}, student {num(v['student'])} "
            f"({ratio(v['student'] / v['teacher'])})" for c, v in tvs.items() if v.get("teacher")) + ".", ""]
    if r.get("best_nodes_per_s_ids64"):
        out += ["Best nodes/s with 64 node ids per request: " + ", ".join(
            f"{num(v)} at {c} connections" for c, v in r["best_nodes_per_s_ids64"].items()) + ".", ""]

    plt = pyplot()
    for key, what, unit, name in (("rps", "req/s", "req/s", "serve_rps.png"),
                                  ("p99_ms", "p99 latency", "ms", "serve_p99.png")):
        lines = {}
        for cfg in rps:
            pts = [(c, runs[cfg, "ids1", c][key]) for c in conns if key in runs.get((cfg, "ids1", c), {})]
            if key == "rps" and not pts:  # a file without runs: the rps table alone
                pts = [(int(c), v) for c, v in rps[cfg].get("ids1", {}).items()]
            if pts:
                lines[cfg] = pts
        if not lines:
            continue
        fig, ax = plt.subplots(figsize=(8, 4))
        for cfg, pts in lines.items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=cfg)
        ax.set_xscale("log", base=2)
        ax.set_xticks(conns, [str(c) for c in conns])
        ax.set_yscale("log")
        ax.set_xlabel("concurrent connections")
        ax.set_ylabel(f"{unit} (log scale)")
        ax.set_title(f"{what} vs concurrency, ids1 payload")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        out.append(plot(fig, name, f"{what} vs concurrency"))
    return out


def _serve_batching(r: dict) -> list[tuple[str, str, str, list]]:
    """(payload, batched config, unbatched config, [(req/s, ratio) or (None, None) per connection count])."""
    rps = r["rps_table"]
    conns = sorted({int(c) for by_payload in rps.values() for by_conn in by_payload.values() for c in by_conn})
    out = []
    for payload in dict.fromkeys(p for by_payload in rps.values() for p in by_payload):
        base = next((c for c in ("haproxy_batch_off", "gkd_defaults") if payload in rps.get(c, {})), None)
        for cfg in ("gkd_defaults", "haproxy_batch_all"):
            if base is None or cfg == base or payload not in rps.get(cfg, {}):
                continue
            points = []
            for c in conns:
                v, b = rps[cfg][payload].get(str(c)), rps[base][payload].get(str(c))
                points.append((v, v / b) if v is not None and b else (None, None))
            out.append((payload, cfg, base, points))
    return out


def markdown_losses(r: dict) -> list[str]:
    from gkd.bench.markdown import num, ratio

    out, runs = [], _serve_runs(r)
    point = _serve_point(r)
    if r["serve_vs_bare_rps_ratio"] < 1:
        bare = ""
        if point and (r["best_serve_config"], point[0], int(point[1])) in runs:
            run = runs[r["best_serve_config"], point[0], int(point[1])]
            if "bare_rps" in run:
                bare = f": {num(run['rps'])} vs {num(run['bare_rps'])} req/s"
        out.append(f"Ray Serve overhead: the best Serve config ({r['best_serve_config']}) reaches "
                   f"{ratio(r['serve_vs_bare_rps_ratio'])} the req/s of a bare uvicorn app serving the same student"
                   + (f" ({point[0]}, {point[1]} connections)" if point else "") + bare + ".")
    for cfg, by_payload in r["rps_table"].items():
        for payload, by_conn in by_payload.items():
            conns = sorted(by_conn, key=int)
            peak = max(conns, key=lambda c: by_conn[c])
            last = conns[-1]
            if by_conn[last] < 0.5 * by_conn[peak]:
                p99 = runs.get((cfg, payload, int(last)), {}).get("p99_ms")
                out.append(f"{cfg} collapses under load on {payload}: {num(by_conn[last])} req/s at {last} "
                           f"connections vs {num(by_conn[peak])} at {peak}"
                           + (f" (p99 {num(p99)} ms)" if p99 is not None else "") + ".")
    for payload, cfg, base, points in _serve_batching(r):
        conns = sorted({int(c) for bp in r["rps_table"].values() for bc in bp.values() for c in bc})
        lost = [(c, q) for c, (_, q) in zip(conns, points) if q is not None and q < 1]
        if lost:
            out.append(f"Batching costs throughput: {cfg} on {payload} is below {base} at "
                       + ", ".join(f"{c} conn. ({ratio(q)})" for c, q in lost) + ".")
    return out


if __name__ == "__main__":
    sys.exit(main())
