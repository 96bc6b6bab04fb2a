"""The register stage's record: the student -> an MLflow registered model version (alias candidate)."""

from __future__ import annotations

from gkd.stages import Stage


def _run(cfg) -> dict:
    from gkd.tracking.registry import register_student

    return register_student(cfg)


def still_registered(summary: dict) -> bool:
    """A register marker is only 'done' if the version it made exists in the current registry."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient().get_model_version(summary["name"], summary["version"])
        return summary.get("tracking_uri") == mlflow.get_tracking_uri()
    except (MlflowException, KeyError):
        return False


REGISTER = Stage(
    name="register", dir="registry", sections=("name",), inputs=("distill", "refine"), run=_run,
    still_valid=still_registered,
    line=lambda s: f"{s.get('name')} version {s.get('version')} (alias {s.get('alias')})",
    report=lambda cfg, s: (f"registered {s['name']} version {s['version']} (alias {s['alias']}), MLflow run "
                           f"{s['run_id']} at {s['tracking_uri']}"),
    help="log the student to MLflow and register it (alias candidate)")
