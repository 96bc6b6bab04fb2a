"""Stage records and the one content hash: every config field, changed alone, reuses or reruns the right stages."""

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from gkd.config import ExperimentConfig, build_config, content_hash, section
from gkd.errors import ConfigError, GkdError
from gkd.pipeline import stage_hashes
from gkd.stages import Stage, pipeline, stage_names, stage_record

ALL = ("ingest", "rationale", "teacher", "distill", "refine", "register")
# a content field of this top-level section reruns these stages (the first that reads it and all after it)
RERUNS = {"ingest": ALL, "llm": ALL[1:], "prompt": ALL[1:], "rationale": ALL[1:], "teacher": ALL[2:],
          "distill": ALL[3:], "refine": ALL[4:], "name": ALL[5:], "serve": (), "ray": (), "workdir": (),
          "stage_dirs": ()}
# the teacher's measured (eval / val) nodes are kept out of the rationale budget: these fields reach back to it
RERUNS.update({f"teacher.{k}": ALL[1:] for k in ("eval_budget", "val_budget", "seed")})


def _is_runtime(field) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("runtime"))


def leaf_fields(model: BaseModel, prefix: str = ""):
    """(dotted path, value, is_runtime) for every leaf field of a config, the runtime flag inherited."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        path = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            for p, v, rt in leaf_fields(value, path + "."):
                yield p, v, rt or _is_runtime(field)
        else:
            yield path, value, _is_runtime(field)


def candidates(value, annotation) -> list:
    """Other values of a field's type, tried in order until one validates."""
    literals = [a for a in typing.get_args(annotation) if typing.get_origin(a) is typing.Literal] or (
        [annotation] if typing.get_origin(annotation) is typing.Literal else [])
    options = [v for lit in literals for v in typing.get_args(lit)]
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1, value - 1, 2]
    if isinstance(value, float):
        return [value / 2, value + 0.05, 0.5]
    if isinstance(value, str) and options:
        return [o for o in options if o != value]
    if isinstance(value, str):
        return [value + "x", "x"]
    if isinstance(value, Path):
        return [value / "x"]
    if isinstance(value, list) and value and isinstance(value[0], int):
        return [[value[0] + 1, *value[1:]]]
    if isinstance(value, list):
        return [value[:-1], value + value[-1:]] if value else [["x"]]
    if isinstance(value, dict):
        return [{"RAY_SERVE_X": "1"}, {}]
    if value is None:
        return [1, 0.5, "/tmp/x", 8]
    return []


def annotation_of(cfg: BaseModel, path: str):
    *parents, leaf = path.split(".")
    obj = section(cfg, ".".join(parents)) if parents else cfg
    return type(obj).model_fields[leaf].annotation


# fields that only validate together with another one
COUPLED = {"stage_dirs": [("stage_dirs", {"distill": "/x"})],
           "ingest.source.kind": [("ingest.source", {"kind": "synthetic"})],
           "ingest.split.train_fraction": [("ingest.split.train_fraction", 0.5), ("ingest.split.val_fraction", 0.2)],
           "distill.num_layers": [("distill.num_layers", 3), ("distill.fanouts", [15, 10, 5])],
           "distill.label_pool_per_class": [("distill.labels_per_class", 5), ("distill.label_pool_per_class", 10)],
           "teacher.label_pool_per_class": [("teacher.labels_per_class", 5), ("teacher.label_pool_per_class", 10)]}


def changed_config(cfg: ExperimentConfig, path: str, value):
    """cfg with one field changed, validated like a YAML override; None if no other value validates."""
    data = cfg.model_dump(mode="json")
    if path in COUPLED:
        return build_config(data, "(test)", COUPLED[path])
    for v in candidates(value, annotation_of(cfg, path)):
        try:
            other = build_config(data, "(test)", [(path, v)])
        except ConfigError:
            continue
        if section(other, path) != value:
            return other
    return None


def test_each_field_reuses_or_reruns_exactly_its_stage_and_those_after_it():
    cfg = build_config({})
    base = stage_hashes(cfg)
    checked = {"runtime": 0, "content": 0}
    untested = []
    for path, value, runtime in leaf_fields(cfg):
        other = changed_config(cfg, path, value)
        if other is None:
            untested.append(path)
            continue
        got = stage_hashes(other)
        rerun = tuple(s for s in ALL if got[s] != base[s])
        top = path if path in RERUNS else path.split(".")[0]
        want = () if runtime else RERUNS[top]
        assert rerun == want, f"{path}={value!r} changed: reruns {rerun}, expected {want}"
        checked["runtime" if runtime and RERUNS[top] else "content"] += 1
    # every runtime knob of the stages was exercised, and nearly every field
    assert checked["runtime"] >= 25 and checked["content"] >= 100, checked
    assert untested == []


def test_runtime_fields_are_marked_on_the_models():
    cfg = build_config({})
    runtime = {p for p, _, rt in leaf_fields(cfg) if rt}
    for path in ("ingest.encoder.num_actors", "ingest.encoder.cache_dir", "ingest.overwrite", "llm.device",
                 "llm.torch_threads", "rationale.num_actors", "rationale.batch_size", "teacher.checkpoint_every",
                 "teacher.use_gpu", "distill.use_gpu", "distill.checkpoint_every", "distill.infer_batch_size",
                 "distill.interpreter_dir", "stage_dirs"):
        assert path in runtime, path
    for path in ("distill.num_workers", "teacher.num_workers", "ingest.encoder.name", "distill.seed"):
        assert path not in runtime, path  # these change what a stage writes


def test_records_cover_the_pipeline_and_stage_dirs_move_a_stage():
    assert stage_names() == ALL
    assert [r.dir for r in pipeline()] == ["graph", "rationale", "teacher", "student", "refined", "registry"]
    for rec in pipeline():
        assert set(rec.inputs) <= set(ALL[:ALL.index(rec.name)]), rec.name  # reads only earlier stages
    cfg = build_config({"workdir": "/w", "stage_dirs": {"distill": "/elsewhere/s1"}})
    assert cfg.stage_dir("distill") == Path("/elsewhere/s1")
    assert cfg.stage_dir("teacher") == Path("/w/teacher") and cfg.graph_dir == Path("/w/graph")
    assert stage_hashes(cfg) == stage_hashes(build_config({"workdir": "/w"}))  # where is not what
    with pytest.raises(ConfigError, match="unknown stage"):
        build_config({"stage_dirs": {"students": "/x"}})
    with pytest.raises(GkdError, match="unknown stage 'nope'"):
        stage_record("nope")


def test_a_bench_record_hashes_its_sections_inputs_and_extra():
    cfg = build_config({})
    rec = Stage(name="partition", dir="partition", sections=("ingest.partition.seed",), inputs=("ingest",),
                run=lambda c: {}, extra={"num_parts": 8})
    h = content_hash(cfg, rec)
    assert content_hash(cfg, Stage(**{**rec.__dict__, "extra": {"num_parts": 4}})) != h
    assert content_hash(build_config({}, "", [("ingest.partition.seed", 1)]), rec) != h
    assert content_hash(build_config({}, "", [("ingest.split.seed", 1)]), rec) != h  # through ingest's hash
    assert content_hash(build_config({}, "", [("distill.seed", 1)]), rec) == h
    assert cfg.stage_dir(rec) == cfg.workdir / "partition"
