"""What every benchmark result file carries: the machine, the command that produced it, when."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path


def machine() -> dict:
    import psutil
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
                 platform.processor())
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "loadavg_1m": round(os.getloadavg()[0], 2)}


def write_result(path: str | Path, result: dict, module: str, argv: list[str] | None) -> dict:
    """Add command, machine and measured_at to `result`, write it as JSON, print it; returns it."""
    args = argv if argv is not None else sys.argv[1:]
    result = {**result, "command": f"python -m {module} " + " ".join(shlex.quote(a) for a in args),
              "machine": {**machine(), **result.get("machine", {})},
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (dict, list))}, indent=2))
    return result


def suite_parser(doc: str, suite: str, profiles, workdir: str, default: str = "full") -> argparse.ArgumentParser:
    """The arguments every suite takes: --profile, --out bench/results/<suite>.json, --workdir, --set."""
    ap = argparse.ArgumentParser(prog=f"python -m gkd.bench.{suite}", description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", choices=sorted(profiles), default=default)
    ap.add_argument("--out", default=f"bench/results/{suite}.json")
    ap.add_argument("--workdir", default=workdir)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    return ap


def suite_main(doc: str, suite: str, profiles, run, argv: list[str] | None = None,
               workdir: str = "bench/work/quality") -> int:
    """The command line of a suite that runs on a world: parse suite_parser's arguments, log, then
    run(profile, out, workdir, overrides, argv)."""
    from gkd.config import parse_overrides
    from gkd.runtime import setup_logging

    args = suite_parser(doc, suite, profiles, workdir).parse_args(argv)
    setup_logging()
    run(args.profile, Path(args.out), Path(args.workdir), parse_overrides(args.set), argv)
    return 0
