"""MLflow tracking: one parent run per pipeline invocation, a nested run per stage.

Default store: `sqlite:///<workdir>/mlflow.db` (MLflow 3 deprecates the file store);
`MLFLOW_TRACKING_URI` points it anywhere else, e.g. a real `mlflow server` over HTTP.
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

MAX_PARAMS_PER_CALL = 100  # MLflow's log_batch limit


def tracking_uri(workdir: str | Path) -> str:
    """$MLFLOW_TRACKING_URI, else a SQLite file in the work dir."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(Path(workdir) / 'mlflow.db').resolve()}"


def ensure_experiment(name: str, workdir: str | Path) -> None:
    """Make `name` the active experiment; a new one on a local store keeps its artifacts in
    <workdir>/mlartifacts (MLflow's default would be ./mlruns under whatever the current directory is)."""
    import mlflow

    if mlflow.get_experiment_by_name(name) is None and not mlflow.get_tracking_uri().startswith("http"):
        mlflow.create_experiment(name, artifact_location=(Path(workdir) / "mlartifacts").resolve().as_uri())
    mlflow.set_experiment(name)


def flatten(d: dict, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": 1}} -> {"a.b": "1"}: the config as MLflow params."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
    return out


class Tracker:
    """Parent run + nested stage runs for one experiment (name = cfg.name, store = tracking_uri)."""

    def __init__(self, experiment: str, workdir: str | Path):
        import mlflow

        Path(workdir).mkdir(parents=True, exist_ok=True)
        self.uri = tracking_uri(workdir)
        mlflow.set_tracking_uri(self.uri)
        ensure_experiment(experiment, workdir)
        self.experiment = experiment

    @contextmanager
    def parent(self, run_name: str, config: dict):
        """The pipeline's run: params = the flattened config, artifact config.json."""
        import mlflow

        with mlflow.start_run(run_name=run_name) as run:
            log_params(flatten(config))
            mlflow.log_dict(config, "config.json")
            log.info("MLflow run %s (%s) at %s", run.info.run_id, run_name, self.uri)
            yield run

    @contextmanager
    def stage(self, name: str, params: dict | None = None):
        """A nested run for one stage under the active parent run."""
        import mlflow

        with mlflow.start_run(run_name=name, nested=True) as run:
            if params:
                log_params(flatten(params))
            yield run


def log_params(params: dict[str, str]) -> None:
    import mlflow

    items = list(params.items())
    for i in range(0, len(items), MAX_PARAMS_PER_CALL):
        mlflow.log_params(dict(items[i : i + MAX_PARAMS_PER_CALL]))


def log_history(history: list[dict], step_key: str = "epoch") -> None:
    """Per-epoch metrics of a training curve, step = the epoch; non-numbers are skipped."""
    import mlflow

    for row in history:
        step = int(row.get(step_key, 0))
        mlflow.log_metrics({k: float(v) for k, v in row.items()
                            if k != step_key and isinstance(v, (int, float)) and v == v}, step=step)


def numeric_metrics(d: dict, prefix: str = "", depth: int = 1) -> dict[str, float]:
    """Numbers in a nested dict as flat MLflow metric names ({"test": {"acc": .5}} -> test.acc), down to
    `depth` levels of nesting; lists, strings, bools and NaN are left out."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and depth > 0:
            out.update(numeric_metrics(v, key + ".", depth - 1))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
            out[key] = float(v)
    return out


def log_metrics(metrics: dict, prefix: str = "", depth: int = 1) -> None:
    """Nested numeric metrics flattened with dots into the active run (see numeric_metrics)."""
    import mlflow

    flat = numeric_metrics(metrics, prefix, depth)
    if flat:
        mlflow.log_metrics(flat)
