"""`gkd <stage> --config experiment.yaml`: the CLI and jobs/ call the same run(cfg) functions."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from gkd.config import SOURCE_KINDS, ExperimentConfig, build_config, parse_overrides, read_config_dict
from gkd.errors import ConfigError, GkdError
from gkd.runtime import setup_logging

log = logging.getLogger("gkd")

# Which key of each source names its local data.
SOURCE_PATH_KEY = {"byo": "path", "debian": "lists_dir", "ogbn-products": "root", "ogbn-arxiv": "root",
                   "cora": "root", "pubmed": "root"}


def config_from_args(args) -> ExperimentConfig:
    """YAML (or defaults) + --source/--path/--out + --set overrides, validated once."""
    data = read_config_dict(args.config) if args.config else {}
    ingest = data.setdefault("ingest", {})
    if not isinstance(ingest, dict):
        raise ConfigError(f"{args.config}: ingest must be a mapping")
    source = ingest.get("source") or {}
    if getattr(args, "source", None) and (not isinstance(source, dict) or source.get("kind", "debian") != args.source):
        ingest["source"] = {"kind": args.source}  # another kind: start from its defaults
    if getattr(args, "path", None):
        kind = (ingest.get("source") or {}).get("kind", "debian")
        if kind not in SOURCE_PATH_KEY:
            raise GkdError(f"--path is not used by source {kind!r}")
        ingest.setdefault("source", {"kind": kind})[SOURCE_PATH_KEY[kind]] = args.path
    if getattr(args, "out", None):
        data["workdir"] = args.out
    return build_config(data, args.config or "(defaults)", parse_overrides(args.set or []))


def run_one(args, stage: str) -> tuple[ExperimentConfig, dict]:
    """One stage through the pipeline's bookkeeping (content-hash skip, stage.json, MLflow run)."""
    from gkd.pipeline import run_stage

    cfg = config_from_args(args)
    result = run_stage(cfg, stage, track=not getattr(args, "no_track", False))
    return cfg, result["summary"]


def cmd_stage(args) -> int:
    """`gkd <stage>`: one stage, then its record's report."""
    from gkd.stages import stage_record

    cfg, summary = run_one(args, args.command)
    print(stage_record(args.command).report(cfg, summary))
    return 0


def cmd_validate(args) -> int:
    from gkd.data.store import validate_store

    meta = validate_store(args.graph)
    print(f"{args.graph}: valid ({meta['num_nodes']:,} nodes, {meta['num_edges']:,} edges)")
    return 0


def cmd_summary(args) -> int:
    from gkd.data.stage import format_summary
    from gkd.data.store import read_meta

    meta = read_meta(args.graph)
    print(json.dumps(meta, indent=2) if args.json else format_summary(meta))
    return 0


def cmd_promote(args) -> int:
    import mlflow

    from gkd.tracking.registry import promote
    from gkd.tracking.tracker import tracking_uri

    mlflow.set_tracking_uri(tracking_uri(config_from_args(args).workdir))
    out = promote(args.model, args.version, args.force)
    verdict = "promoted to champion" if out["promoted"] else "not promoted"
    print(f"{out['model']} version {out['version']}: {verdict} ({out['reason']}); candidate val_acc "
          f"{out['candidate_val_acc']}, champion v{out['champion_version']} val_acc {out['champion_val_acc']}")
    return 0


def cmd_serve(args) -> int:
    """Deploy the student (MLflow alias, or --checkpoint) on Ray Serve; block until Ctrl-C unless --detach."""
    import time

    from gkd.serve.app import run_local, shutdown

    flags = [("alias", args.alias), ("checkpoint", args.checkpoint), ("host", args.host), ("port", args.port),
             ("cascade.enabled", True if args.cascade else None)]
    args.set = (args.set or []) + [f"serve.{k}={json.dumps(v)}" for k, v in flags if v is not None]
    cfg = config_from_args(args)
    s = cfg.serve
    source = f"checkpoint {s.checkpoint}" if s.checkpoint else f"models:/{s.model or cfg.name + '-student'}@{s.alias}"
    print(f"deploying {source} on Ray Serve (ingress {s.ingress}{', cascade to the teacher' if s.cascade.enabled else ''})")
    url = run_local(cfg, blocking=False)
    print(f"serving at {url}: POST {url}/v1/predict, GET {url}/v1/model, {url}/healthz, docs at {url}/docs")
    if args.detach:
        return 0
    print("Ctrl-C stops the server")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        shutdown()
    return 0


def cmd_models_fetch(args) -> int:
    from gkd.llm.models import load_teacher, resolve_model

    cfg = config_from_args(args)
    path = resolve_model(cfg.llm.model, cfg.llm.cache_dir)
    model, _ = load_teacher(cfg.llm)
    print(f"{cfg.llm.model}: {path} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, "
          f"{model.config.num_hidden_layers} layers, hidden {model.config.hidden_size})")
    return 0


def cmd_run(args) -> int:
    """The whole job; finished stages whose config is unchanged are reused."""
    from gkd.pipeline import run_pipeline
    from gkd.stages import stage_names

    cfg = config_from_args(args)
    stages = [s.strip() for s in args.stages.split(",")] if args.stages else list(stage_names())
    out = run_pipeline(cfg, stages, track=not args.no_track)
    print_outcome(cfg, out)
    return 0


def cmd_bench(args) -> int:
    """Benchmark suites -> bench/results/*.json and BENCHMARKS.md (quick profile -> bench/quick/)."""
    from gkd.bench.suites import SUITES, run

    suites = SUITES if args.suite == "all" else [s.strip() for s in args.suite.split(",") if s.strip()]
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise GkdError(f"--suite: unknown suite(s) {', '.join(unknown)}; choose from all, {', '.join(SUITES)}")
    out = run(suites, args.profile, Path(args.root) if args.root else None, report_only=args.report,
              work=Path(args.work) if args.work else None)
    for suite, st in out["suites"].items():
        print(f"{suite:8s} {'ok' if st['rc'] == 0 else 'FAILED (exit %d)' % st['rc']:>16s} {st['wall_s']:8.0f} s")
    print(f"wrote {out['doc']} ({out['wall_s']:.0f} s in all)")
    return 1 if any(st["rc"] != 0 for st in out["suites"].values()) else 0


def print_outcome(cfg: ExperimentConfig, out: dict) -> None:
    from gkd.gnn.stage import DISTILL, format_student
    from gkd.tracking.stage import REGISTER

    st = out["stages"]
    if DISTILL.name in st:
        print(format_student(st[DISTILL.name]["summary"]))
    if REGISTER.name in st:
        print(f"registered {REGISTER.line(st[REGISTER.name]['summary'])}")
    if out["run_id"]:
        print(f"MLflow run {out['run_id']} at {out['tracking_uri']}")
    reused = [s for s, r in st.items() if r["skipped"]]
    print(f"stages reused: {', '.join(reused) if reused else 'none'}; work dir {cfg.workdir}")


def cmd_demo(args) -> int:
    """The whole pipeline on the embedded defaults, the promotion gate, then one live prediction from Serve."""
    from gkd.pipeline import run_pipeline
    from gkd.tracking.registry import promote
    from gkd.tracking.stage import REGISTER

    cfg = config_from_args(args)
    print(f"gkd demo: ingest -> rationale -> teacher -> distill -> refine -> register -> promote -> serve ({cfg.name}, "
          f"work dir {cfg.workdir})")
    out = run_pipeline(cfg)
    reg = out["stages"][REGISTER.name]["summary"]
    gate = promote(reg["name"], reg["version"])
    verdict = "promoted to champion" if gate["promoted"] else "not promoted"
    print(f"promote {reg['name']} v{gate['version']}: {verdict} ({gate['reason']})")
    print_outcome(cfg, out)
    print(serve_once(cfg, out))
    return 0


def serve_once(cfg: ExperimentConfig, out: dict) -> str:
    """Deploy the champion on Ray Serve, ask it about one test node over HTTP, shut it down."""
    import urllib.request

    import numpy as np

    from gkd.data.store import node_arrays
    from gkd.serve.app import run_local, shutdown

    labels, split = node_arrays(cfg.graph_dir)
    node = int(np.flatnonzero((split == "test") & (labels >= 0))[0])
    base = run_local(cfg, blocking=False)
    try:
        req = urllib.request.Request(f"{base}/v1/predict", data=json.dumps({"node_ids": [node]}).encode(),
                                     headers={"Content-Type": "application/json", **_auth_header(cfg)})
        with urllib.request.urlopen(req, timeout=60) as resp:
            answer = json.loads(resp.read())
    finally:
        shutdown()
    return f"live prediction from {base}/v1/predict for node {node}: {json.dumps(answer)[:600]}"


def _auth_header(cfg: ExperimentConfig) -> dict:
    import os

    token = os.environ.get(cfg.serve.token_env) if cfg.serve.token_env else None
    return {"Authorization": f"Bearer {token}"} if token else {}


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="experiment YAML (jobs/configs/*.yaml); default: embedded defaults")
    p.add_argument("--no-track", action="store_true", help="do not log to MLflow")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set ingest.encoder.name=hashing (repeatable)")
    p.add_argument("--out", help="work dir (the graph store goes to <out>/graph)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gkd", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)
    from gkd.stages import pipeline

    for name, fn, help_ in [(pipeline()[0].name, cmd_stage, pipeline()[0].help),
                            ("run", cmd_run, "the pipeline: ingest -> rationale -> teacher -> distill -> refine -> register"),
                            ("demo", cmd_demo, "the pipeline on the embedded defaults, promotion, one live prediction")]:
        p = sub.add_parser(name, help=help_)
        add_config_args(p)
        p.add_argument("--source", choices=SOURCE_KINDS, help="source kind (replaces the config's source)")
        p.add_argument("--path", help="the source's local data (byo folder, apt lists dir, dataset root)")
        if name == "run":
            p.add_argument("--stages", help="comma-separated subset, e.g. distill,register (default: all)")
        p.set_defaults(fn=fn)
    for rec in pipeline()[1:]:  # the first stage (ingest) takes the source flags: its parser is above
        p = sub.add_parser(rec.name, help=rec.help)
        add_config_args(p)
        p.set_defaults(fn=cmd_stage)
    p = sub.add_parser("promote", help="move alias champion to a version if its val accuracy is at least the champion's")
    add_config_args(p)
    p.add_argument("--model", required=True, help="registered model name, e.g. debian-student")
    p.add_argument("--version", help="version to promote (default: the one with alias candidate)")
    p.add_argument("--force", action="store_true", help="promote even if validation accuracy is lower")
    p.set_defaults(fn=cmd_promote)
    p = sub.add_parser("serve", help="serve the student (MLflow alias or a checkpoint) over HTTP on Ray Serve")
    add_config_args(p)
    p.add_argument("--alias", help="registry alias to serve (default serve.alias: champion)")
    p.add_argument("--checkpoint", help="serve this student checkpoint dir instead of the registry")
    p.add_argument("--host", help="bind address (default serve.host: 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default serve.port: 8000)")
    p.add_argument("--cascade", action="store_true", help="send low-confidence answers to the teacher LLM")
    p.add_argument("--detach", action="store_true",
                   help="return once deployed; the app lives as long as the Ray cluster (use with RAY_ADDRESS)")
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("bench", help="benchmark suites -> bench/results/*.json and BENCHMARKS.md")
    p.add_argument("--suite", default="all", help="all, or a comma-separated subset of "
                   "quality,cost,sampler,stream,serve,scale,reliability")
    p.add_argument("--profile", choices=["full", "quick"], default="full",
                   help="quick: a few minutes per suite on small inputs (the CI smoke test; results in bench/quick/)")
    p.add_argument("--root", help="folder for results/, work/, plots/ (default bench/ for full, bench/quick/ for quick)")
    p.add_argument("--work", help="folder of the suites' work dirs (default <root>/work); an earlier run's "
                   "work dir makes the suites resume from it instead of recomputing")
    p.add_argument("--report", action="store_true", help="only regenerate the document from the results")
    p.set_defaults(fn=cmd_bench)
    p = sub.add_parser("models", help="embedded models")
    msub = p.add_subparsers(dest="models_command", required=True)
    p = msub.add_parser("fetch", help="unpack the teacher LLM (llm.model) into the cache and check it loads")
    add_config_args(p)
    p.set_defaults(fn=cmd_models_fetch)
    p = sub.add_parser("validate", help="check a graph store against its meta.json")
    p.add_argument("graph", type=Path, help="<workdir>/graph")
    p.set_defaults(fn=cmd_validate)
    p = sub.add_parser("summary", help="print a graph store's summary")
    p.add_argument("graph", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return args.fn(args)
    except GkdError as err:
        print(f"gkd {args.command}: error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a full disk or a tracking server gone: said plainly, anything else re-raised
        said = environment_error(err)
        if said is None:
            raise
        print(f"gkd {args.command}: error: {said}", file=sys.stderr)
        return 2


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def environment_error(err: BaseException) -> str | None:
    """What the machine around gkd did, in one sentence with what to do (None: not such an error).

    - no space left on a device (ENOSPC anywhere in the exception chain or in a wrapped worker error);
    - the MLflow tracking server not answering (an http(s) tracking URI and a connection or MLflow error).
    Stage markers are written only when a stage finishes, so either way a rerun continues where this stopped."""
    import errno

    for e in _chain(err):
        if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left on device" in str(e):
            where = getattr(e, "filename", None)
            return (f"no space left on the device{f' writing {where}' if where else ''}: free space (or point "
                    "workdir at a larger disk) and rerun; finished stages and finished batches are kept")
    try:
        import mlflow
        from mlflow.exceptions import MlflowException
        from requests.exceptions import RequestException
    except ImportError:  # pragma: no cover - dependencies
        return None
    uri = mlflow.get_tracking_uri()
    if str(uri).startswith(("http://", "https://")) and any(
            isinstance(e, (MlflowException, RequestException, ConnectionError)) for e in _chain(err)):
        first = str(err).strip().splitlines()[0][:240] if str(err).strip() else type(err).__name__
        return (f"the MLflow tracking server at {uri} failed ({first}); finished stages are kept: rerun once it "
                "answers again, or rerun with --no-track")
    return None


if __name__ == "__main__":
    sys.exit(main())
