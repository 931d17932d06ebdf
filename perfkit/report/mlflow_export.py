"""``perfkit report RUN --mlflow URI``: a run's candidates logged to an MLflow tracking server.

Needs the optional extra ``perfkit[mlflow]``. One MLflow run stands for the perfkit run (named after
it; the command as a param, the environment as ``environment.json`` and the HTML report, when one was
written, as artifacts) and holds one nested MLflow run per row of the CSV (``perfkit.report.candidates``:
a candidate at one batch): params are its identity columns, metrics its numeric columns (those
measured), tags the rest (parity, int8 calibration, contention, failed steps). Every MLflow run carries
the tag ``perfkit.run_id``. The experiment is the one MLflow's own variables name
(MLFLOW_EXPERIMENT_NAME / MLFLOW_EXPERIMENT_ID), else ``perfkit``.
"""

from __future__ import annotations

import os
from pathlib import Path

from perfkit.deps import require
from perfkit.errors import PerfkitError
from perfkit.report.candidates import IDENTITY, candidate_rows
from perfkit.store import Record

EXPERIMENT = "perfkit"
RUN_TAG = "perfkit.run_id"


def require_mlflow():
    """The mlflow module, or one line naming the extra that installs it."""
    return require("mlflow", extra="mlflow", why="--mlflow")


def _split(row: dict) -> tuple[dict, dict, dict]:
    """A candidate row as MLflow params (identity), metrics (numbers) and tags (the rest), leaving out
    what was not measured."""
    params = {k: row[k] for k in IDENTITY if row[k] is not None}
    rest = {k: v for k, v in row.items() if k not in IDENTITY and v is not None}
    # a bool is an int to Python, but parity passed / contended are verdicts, not measurements
    metrics = {k: v for k, v in rest.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    tags = {k: str(v) for k, v in rest.items() if k not in metrics}
    return params, metrics, tags


def _name(row: dict) -> str:
    batch = None if row["batch"] is None else f"batch {row['batch']}"
    return " ".join(str(v) for v in (row["model"], row["runtime"], row["precision"], batch) if v is not None)


def log_run(uri: str, run: dict, records: list[Record], html: str | Path | None = None) -> tuple[str, int]:
    """Log ``run`` (a store's run dict) and its candidates to the tracking server at ``uri``; returns
    the id of the MLflow run that holds them and how many candidate rows were logged."""
    mlflow = require_mlflow()
    rows = candidate_rows(records, run.get("env"))
    try:
        mlflow.set_tracking_uri(uri)
        if not (os.environ.get("MLFLOW_EXPERIMENT_NAME") or os.environ.get("MLFLOW_EXPERIMENT_ID")):
            mlflow.set_experiment(EXPERIMENT)
        with mlflow.start_run(run_name=f"perfkit run {run['id']}", tags={RUN_TAG: run["id"]}) as parent:
            mlflow.log_params({"perfkit_run": run["id"], "command": run.get("command") or ""})
            mlflow.log_dict(run.get("env") or {}, "environment.json")
            if html is not None:
                mlflow.log_artifact(str(html))
            for row in rows:
                params, metrics, tags = _split(row)
                with mlflow.start_run(run_name=_name(row), nested=True, tags={RUN_TAG: run["id"], **tags}):
                    mlflow.log_params(params)
                    mlflow.log_metrics(metrics)
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PerfkitError(f"--mlflow {uri}: {why}") from None
    return parent.info.run_id, len(rows)
