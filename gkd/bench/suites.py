"""`gkd bench`: run benchmark suites (each in its own process) and regenerate BENCHMARKS.md.

  gkd bench                          # every suite, full profile -> bench/results/*.json, BENCHMARKS.md
  gkd bench --suite quality,cost     # some of them
  gkd bench --profile quick          # the smoke test of every suite -> bench/quick/
  gkd bench --report                 # only regenerate the document from the JSON files
  gkd bench --work /data/gkd-bench   # keep the work dirs (graph, teacher, students, scale stages) elsewhere

Every suite resumes from its work dir (stage files and student metrics are keyed by their inputs), so a
killed run, a second session or a fresh clone given `--work` of an earlier run recomputes only what is
missing. Each run records its per-suite walls and total in <results>/run.json (shown in BENCHMARKS.md).

Suites run in separate processes so that one's Ray cluster, threads and memory do not leak into the
next one's numbers, and a failed suite does not stop the others (the exit code says it failed).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("gkd.bench")

SUITES = ["quality", "cost", "sampler", "stream", "serve", "scale", "reliability"]


def layout(profile: str, root: Path | None = None, work: Path | None = None) -> dict[str, Path]:
    """Where a profile's results, work dirs and document go (full: bench/results + BENCHMARKS.md)."""
    if root is None:
        root = Path("bench") if profile == "full" else Path("bench") / "quick"
    doc = Path("BENCHMARKS.md") if profile == "full" and root == Path("bench") else root / "BENCHMARKS.md"
    return {"results": root / "results", "work": Path(work) if work else root / "work", "doc": doc,
            "plots": root / "plots"}


def command(suite: str, profile: str, paths: dict[str, Path]) -> list[str]:
    """The one command line that runs `suite` (cost, stream and serve measure on the quality suite's world)."""
    results, work = paths["results"], paths["work"]
    world = str(work / "quality")
    args = {
        "quality": ["--workdir", world],
        "cost": ["--workdir", world],
        "sampler": ["--workdir", str(work / "sampler"), "--graph-dir", str(work / "quality" / "graph")],
        "stream": ["--workdir", world],
        "serve": ["--workdir", world],
        "scale": ["--workdir", str(work / "scale")],
        "reliability": ["--workdir", str(work / "reliability")],
    }[suite]
    return [sys.executable, "-m", f"gkd.bench.{suite}", "--profile", profile,
            "--out", str(results / f"{suite}.json"), *args]


def render(paths: dict[str, Path]) -> Path:
    from gkd.bench.markdown import render as render_markdown

    render_markdown(paths["results"], paths["doc"], paths["plots"])
    log.info("wrote %s", paths["doc"])
    return paths["doc"]


def record_run(paths: dict[str, Path], profile: str, status: dict, started: float) -> dict:
    """<results>/run.json: this invocation's per-suite exit codes and walls, and its total."""
    from gkd.bench.report import machine

    rec = {"command": "gkd bench " + shlex.join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else shlex.join(sys.argv),
           "profile": profile, "work": str(paths["work"]), "suites": status,
           "total_s": round(time.time() - started, 1), "machine": machine(),
           "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
           "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = paths["results"] / "run.json.tmp"
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    os.replace(tmp, paths["results"] / "run.json")
    return rec


def run(suites: list[str], profile: str, root: Path | None = None, report_only: bool = False,
        work: Path | None = None) -> dict:
    """Run `suites` in order, then the document: {suite: {rc, wall_s}} (+ doc path).
    `work`: the suites' work dirs (default <root>/work); point it at an earlier run's to resume from it."""
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise ValueError(f"unknown suite(s) {unknown}; choose from {SUITES}")
    paths = layout(profile, root, work)
    paths["results"].mkdir(parents=True, exist_ok=True)
    status = {}
    t0 = time.time()
    for suite in [] if report_only else suites:
        cmd = command(suite, profile, paths)
        log.info("suite %s (%s): %s", suite, profile, " ".join(cmd))
        t = time.time()
        rc = subprocess.run(cmd).returncode
        status[suite] = {"rc": rc, "wall_s": round(time.time() - t, 1)}
        log.info("suite %s: %s in %.0f s", suite, "ok" if rc == 0 else f"FAILED (exit {rc})", time.time() - t)
    if status:
        record_run(paths, profile, status, t0)
    doc = render(paths)
    return {"suites": status, "doc": str(doc), "wall_s": round(time.time() - t0, 1)}
