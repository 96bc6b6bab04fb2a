"""Metrics logged live from inside Ray Train workers: only world rank 0 writes, into the stage's run.

The driver hands `live_target()` (tracking URI + run id of the active MLflow run) to the workers in
`train_loop_config["mlflow"]`; each worker builds a `RankZeroLogger` and calls `log(metrics, step)`
per epoch or step. The other ranks' loggers do nothing, so a curve has one point per step however
many workers train. A tracking server that goes away must not kill training: failures are counted
and logged once.

It sits beside the stage packages, not in gkd/tracking, so that llm/ and gnn/ (which run before
tracking in the data flow) log live without importing tracking.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)


def live_target(prefix: str = "") -> dict | None:
    """{tracking_uri, run_id, prefix} of the active MLflow run in this (driver) process, else None."""
    try:
        import mlflow
    except ImportError:  # pragma: no cover - mlflow is a dependency
        return None
    run = mlflow.active_run()
    if run is None:
        return None
    return {"tracking_uri": mlflow.get_tracking_uri(), "run_id": run.info.run_id, "prefix": prefix}


class RankZeroLogger:
    def __init__(self, target: dict | None, rank: int):
        self.enabled = bool(target) and rank == 0
        self.failures = 0
        if self.enabled:
            from mlflow import MlflowClient

            self.client = MlflowClient(tracking_uri=target["tracking_uri"])
            self.run_id = target["run_id"]
            self.prefix = target.get("prefix", "")

    def log(self, metrics: dict, step: int) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(f"{self.prefix}{k}", float(v), now, int(step)) for k, v in metrics.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v]
        try:
            self.client.log_batch(self.run_id, metrics=rows)
        except Exception as err:  # noqa: BLE001 - tracking is best effort inside a training loop
            self.failures += 1
            if self.failures == 1:
                log.warning("MLflow logging to run %s failed (%s); training goes on, failures are counted",
                            self.run_id, err)

    def artifact_png(self, draw, name: str, artifact_path: str) -> None:
        """Rank 0 draws a PNG with `draw(path)` into a temp dir and logs it to the run (best effort, counted)."""
        if not self.enabled:
            return
        import tempfile
        from pathlib import Path

        try:
            with tempfile.TemporaryDirectory(prefix="gkd-live-") as tmp:
                path = Path(tmp) / name
                draw(path)
                self.client.log_artifact(self.run_id, str(path), artifact_path)
        except Exception as err:  # noqa: BLE001 - as for metrics: tracking never stops training
            self.failures += 1
            log.warning("MLflow artifact %s for run %s failed (%s)", name, self.run_id, err)
