"""What a stage is: one record per stage, declared next to its code (`gkd/<folder>/stage.py`).

    ingest ──> rationale ──> teacher ──> distill ──> refine ──> register
    graph/     rationale/    teacher/    student/    refined/    registry/

A record holds everything the pipeline, the CLI, jobs/ and the bench need to know about a stage: its
name, its folder under the work dir (`cfg.stage_dir(name)`), the config sections its content hash
covers, the stages it reads, its `run(cfg)`, its MLflow artifacts and its summary lines. Importing this
module (and the records) is cheap: each record imports its stage's code only when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from gkd.config import ExperimentConfig


def no_artifacts(cfg: "ExperimentConfig", summary: dict, tmp: Path) -> list[Path]:
    return []


@dataclass(frozen=True)
class Stage:
    name: str
    dir: str  # folder under the work dir (cfg.stage_dirs may move it)
    sections: tuple[str, ...]  # dotted config sections its content hash covers (runtime fields left out)
    inputs: tuple[str, ...]  # the stages whose outputs it reads: their hashes are part of its own
    run: Callable[["ExperimentConfig"], dict]  # does the work -> its summary (JSON-able)
    line: Callable[[dict], str] = lambda summary: ""  # one line on a summary, for the pipeline's progress
    report: Callable[["ExperimentConfig", dict], str] = lambda cfg, summary: str(summary)  # `gkd <stage>` prints
    help: str = ""  # one line for `gkd <stage> --help`
    artifacts: Callable[["ExperimentConfig", dict, Path], list] = no_artifacts  # files for its MLflow run
    # a finished marker is only trusted if this says its outputs still exist (e.g. a registry version)
    still_valid: Callable[[dict], bool] | None = None
    # a changed config wipes the stage's folder before it reruns; ingest refuses instead (ingest.overwrite)
    wipe_on_change: bool = True
    # constants outside the config that a bench stage adds to its content (e.g. METIS parts)
    extra: dict = field(default_factory=dict)


def pipeline() -> tuple[Stage, ...]:
    """The pipeline's stages, in order."""
    from gkd.data.stage import INGEST
    from gkd.gnn.stage import DISTILL, REFINE
    from gkd.llm.stage import RATIONALE, TEACHER
    from gkd.tracking.stage import REGISTER

    return INGEST, RATIONALE, TEACHER, DISTILL, REFINE, REGISTER


def stage_names() -> tuple[str, ...]:
    return tuple(s.name for s in pipeline())


def stage_record(stage: str | Stage) -> Stage:
    """A stage's record by name (a Stage passes through: the bench declares stages of its own)."""
    from gkd.errors import GkdError

    if isinstance(stage, Stage):
        return stage
    for rec in pipeline():
        if rec.name == stage:
            return rec
    raise GkdError(f"unknown stage {stage!r}; stages are {', '.join(stage_names())}")
