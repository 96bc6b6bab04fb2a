"""The student in the MLflow model registry: log as a pickle-free pyfunc, register, alias, promote.

The logged model holds the student checkpoint dir (model.safetensors + student.json) as an
artifact; `StudentModel` rebuilds the GNN from it. Its pyfunc input is a table of nodes, one row
each: `x` (the node's feature vector) and `neighbors` (row numbers of its neighbours in the same
table); the output adds `label`, `confidence` and `probs` per row, so a registered student can
classify new nodes anywhere MLflow loads it (`models:/<name>@champion`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from gkd.errors import GkdError

log = logging.getLogger(__name__)

CANDIDATE, CHAMPION = "candidate", "champion"
GATE_METRIC = "val_acc"
STUDENT_KEY = "gkd.student_key"  # the register stage's content hash, on the version and on the run that logged it


def predict_table(gnn, class_names: list[str], x: np.ndarray, neighbors: list) -> dict:
    """x (n, d), neighbors[i] = row ids of node i's neighbours -> {label, confidence, probs} per row."""
    import torch

    n = len(x)
    src = [int(j) for i, nb in enumerate(neighbors) for j in (nb if nb is not None else [])]
    dst = [i for i, nb in enumerate(neighbors) for _ in (nb if nb is not None else [])]
    if any(j < 0 or j >= n for j in src):
        raise GkdError(f"neighbors must be row numbers 0..{n - 1} of the same table")
    x = np.asarray(x, dtype=np.float32)
    if gnn.kind == "sign":  # its inputs are the table's own hops [x, Āx, ..]
        from gkd.data.store import build_csr
        from gkd.gnn.propagate import hop_features

        indptr, indices = build_csr(np.asarray(dst, dtype=np.int64), np.asarray(src, dtype=np.int64), n,
                                    directed=True)
        x = hop_features(x, indptr, indices, gnn.num_layers)
    edge_index = torch.tensor([src, dst], dtype=torch.long).reshape(2, -1)
    with torch.no_grad():
        logits, _ = gnn.eval()(torch.as_tensor(x), edge_index)
        probs = torch.softmax(logits, dim=1).numpy()
    best = probs.argmax(1)
    return {"label": [class_names[i] for i in best], "confidence": probs.max(1).astype(float).tolist(),
            "probs": probs.astype(float).tolist()}


try:
    import mlflow.pyfunc

    class StudentModel(mlflow.pyfunc.PythonModel):
        """pyfunc wrapper: artifacts["checkpoint"] is a student checkpoint dir."""

        def load_context(self, context):
            from gkd.gnn.distill import load_refined, load_student

            self.gnn, self.info = load_student(context.artifacts["checkpoint"])
            self.refined = load_refined(context.artifacts["checkpoint"], self.info)

        def predict(self, context, model_input, params=None):
            import pandas as pd

            frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
            missing = {"x", "neighbors"} - set(frame.columns)
            if missing:
                raise GkdError(f"the student's input needs columns x and neighbors; missing {sorted(missing)}")
            x = np.stack([np.asarray(v, dtype=np.float32) for v in frame["x"]])
            if x.shape[1] != self.gnn.in_dim:
                raise GkdError(f"x rows have {x.shape[1]} values; this student takes {self.gnn.in_dim} "
                               f"({self.info.get('encoder', {}).get('id', 'its encoder')} features)")
            out = predict_table(self.gnn, self.info["class_names"], x, list(frame["neighbors"]))
            return pd.DataFrame(out)
except ImportError:  # pragma: no cover - mlflow is a dependency; this keeps the core importable without it
    StudentModel = None


def registered_name(experiment_name: str) -> str:
    return f"{experiment_name}-student"


def log_student(checkpoint_dir: str | Path, model_name: str, metrics: dict) -> dict:
    """Log the student (in the active run) as a pyfunc, register it, give the new version alias `candidate`.

    metrics: at least val_acc (the promotion gate), stored as version tags. Returns {name, version, uri}.
    """
    import mlflow
    from mlflow import MlflowClient

    if GATE_METRIC not in metrics or metrics[GATE_METRIC] is None:
        raise GkdError(f"log_student needs metrics[{GATE_METRIC!r}] for the promotion gate")
    info = mlflow.pyfunc.log_model(name="student", python_model=StudentModel(),
                                   artifacts={"checkpoint": str(Path(checkpoint_dir).resolve())},
                                   registered_model_name=model_name)
    client = MlflowClient()
    version = str(info.registered_model_version)
    for k, v in metrics.items():
        if v is not None:
            client.set_model_version_tag(model_name, version, k, str(v))
    client.set_registered_model_alias(model_name, CANDIDATE, version)
    log.info("registered %s version %s (alias %s)", model_name, version, CANDIDATE)
    return {"name": model_name, "version": version, "uri": f"models:/{model_name}/{version}"}


def _gate_value(client, name: str, version: str) -> float | None:
    tags = client.get_model_version(name, version).tags
    return float(tags[GATE_METRIC]) if GATE_METRIC in tags else None


def promote(model_name: str, version: str | None = None, force: bool = False) -> dict:
    """Give `version` (default: the `candidate` alias) alias `champion` if its val_acc >= the champion's.

    Returns {promoted, version, candidate_val_acc, champion_version, champion_val_acc, reason}.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        if version is None:
            version = str(client.get_model_version_by_alias(model_name, CANDIDATE).version)
        cand = _gate_value(client, model_name, version)
    except MlflowException as err:
        raise GkdError(f"no model version to promote for {model_name!r} (version {version or '@' + CANDIDATE}): "
                       f"{err.message}") from err
    try:
        champ = client.get_model_version_by_alias(model_name, CHAMPION)
        champ_version, champ_val = str(champ.version), _gate_value(client, model_name, str(champ.version))
    except MlflowException:
        champ_version, champ_val = None, None
    out = {"model": model_name, "version": version, "candidate_val_acc": cand, "champion_version": champ_version,
           "champion_val_acc": champ_val}
    if champ_version == version:
        return {**out, "promoted": False, "reason": f"version {version} already is the champion"}
    if champ_version is None:
        ok, reason = True, "no champion yet"
    elif cand is None or champ_val is None:
        ok, reason = force, f"{GATE_METRIC} is missing on one side; only --force promotes"
    else:
        ok = cand >= champ_val or force
        reason = (f"{GATE_METRIC} {cand:.4f} {'>=' if cand >= champ_val else '<'} champion v{champ_version}'s "
                  f"{champ_val:.4f}" + (" (forced)" if force and cand < champ_val else ""))
    if ok:
        client.set_registered_model_alias(model_name, CHAMPION, version)
    return {**out, "promoted": bool(ok), "reason": reason}


def load_champion(model_name: str, alias: str = CHAMPION):
    """mlflow.pyfunc model behind models:/<name>@<alias>."""
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(f"models:/{model_name}@{alias}")


def version_of(model_name: str, key: str) -> str | None:
    """The version of `model_name` that holds the student with content hash `key` (its tag, or the tag of the
    run that logged it), else None: what makes registering idempotent across killed and rerun jobs."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{model_name}'")
    except MlflowException:
        return None
    for v in sorted(versions, key=lambda v: int(v.version)):
        if v.tags.get(STUDENT_KEY) == key:
            return str(v.version)
        try:
            if v.run_id and client.get_run(v.run_id).data.tags.get(STUDENT_KEY) == key:
                return str(v.version)
        except MlflowException:  # the run was deleted
            continue
    return None


def register_student(cfg) -> dict:
    """Log <workdir>/student (metrics + model) to MLflow and register it as <name>-student, alias candidate.

    Runs inside the active MLflow run when there is one (the pipeline's), else in a new run "register".
    """
    import json

    import mlflow
    from mlflow import MlflowClient

    from gkd.config import content_hash
    from gkd.gnn.stage import served_checkpoint
    from gkd.tracking.tracker import Tracker, log_metrics

    sdir = cfg.stage_dir("distill")
    mpath = sdir / "metrics.json"
    checkpoint = served_checkpoint(cfg)
    if not mpath.is_file() or not checkpoint.is_dir():
        raise GkdError(f"{sdir} has no trained student (metrics.json) or {checkpoint} is missing: run `gkd distill`"
                       f"{' and `gkd refine`' if cfg.refine.enabled else ''} first")
    m = json.loads(mpath.read_text())
    refined = cfg.stage_dir("refine") / "metrics.json"
    if cfg.refine.enabled and refined.is_file():  # the served student's numbers, refined ones for known nodes
        r = json.loads(refined.read_text())
        nn_ = r.get("new_nodes") or {}
        new = r["glnn"] if nn_.get("served", "glnn" if r.get("glnn") else "student") == "glnn" else r["raw"]
        m = {**m, "test": new["test"], "val": new["val"], "refined_test": r["refined"]["test"],
             "holdout": nn_.get("holdout") or new["holdout"]}
    tracker = Tracker(cfg.name, cfg.workdir)
    own_run = mlflow.active_run() is None
    run = mlflow.start_run(run_name="register") if own_run else mlflow.active_run()
    try:
        log_metrics({"student": {"test_acc": m["test"]["acc"], "test_macro_f1": m["test"]["macro_f1"],
                                 "val_acc": m["val"]["acc"]}})
        if "refined_test" in m:
            log_metrics({"refined": {"test_acc": m["refined_test"]["acc"],
                                     "holdout_acc": (m.get("holdout") or {}).get("acc")}})
        mlflow.log_dict({k: v for k, v in m.items() if k != "history"}, "student_metrics.json")
        name, key = registered_name(cfg.name), content_hash(cfg, "register")
        known = version_of(name, key)
        if known is not None:  # an earlier run registered this very student, then died before its marker
            MlflowClient().set_registered_model_alias(name, CANDIDATE, known)
            log.info("%s version %s already holds student %s: reused (alias %s)", name, known, key, CANDIDATE)
            out = {"name": name, "version": known, "uri": f"models:/{name}/{known}", "reused": True}
        else:
            mlflow.set_tag(STUDENT_KEY, key)  # before the version exists: a kill after it still finds it
            out = log_student(checkpoint, name,
                              {GATE_METRIC: m["val"]["acc"], "test_acc": m["test"]["acc"], "gnn": m["gnn"],
                               "method": m["method"], "graph": cfg.name, STUDENT_KEY: key})
    finally:
        if own_run:
            mlflow.end_run()
    return {**out, "run_id": run.info.run_id, "tracking_uri": tracker.uri, "alias": CANDIDATE}
