"""Where a grid's runs are logged besides its own files: Ray Tune's logger callbacks, each trial's
per-epoch figures as they come.

- ``tensorboard`` (default): event files per trial under the grid's Ray folder (``tensorboard --logdir``);
- ``wandb``: Weights & Biases, offline unless ``WANDB_MODE`` says otherwise (``wandb sync`` uploads later);
- ``mlflow``: an MLflow store in the grid's folder (``mlflow.db``, SQLite: ``mlflow ui --backend-store-uri
  sqlite:///<grid>/mlflow.db``) unless ``MLFLOW_TRACKING_URI`` points elsewhere (a server);
- ``none``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

LOGGERS = ("tensorboard", "wandb", "mlflow", "none")
PACKAGES = {"tensorboard": "tensorboardX", "wandb": "wandb", "mlflow": "mlflow"}


def check_loggers(names: list[str]) -> list[str]:
    """The loggers asked for, without duplicates; ValueError names an unknown one or a missing package."""
    chosen = list(dict.fromkeys(n.strip() for name in names for n in name.split(",") if n.strip()))
    for name in chosen:
        if name not in LOGGERS:
            raise ValueError(f"--logger {name!r}: unknown; choose from {', '.join(LOGGERS)}")
        package = PACKAGES.get(name)
        if package and importlib.util.find_spec(package) is None:
            raise ValueError(f"--logger {name}: the {package} package is not installed (pip install {package})")
    if "none" in chosen and len(chosen) > 1:
        raise ValueError("--logger none: cannot go with other loggers")
    return [n for n in chosen if n != "none"]


def quiet_tune_loggers() -> None:
    """Before a Tuner runs (a new one, or one restored by --resume, whose callbacks come back from its pickle):
    Ray Tune adds a TensorBoard logger of its own unless told not to, so ``--logger none``/``mlflow`` would still
    write event files; and a figure may be NaN by design (a recall time never reached, a metric without scored
    tokens), for which tensorboardX prints an unlabelled "NaN or Inf found in input tensor." each time."""
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)


def worker_env(names: list[str]) -> dict[str, str]:
    """Environment every Ray worker needs for ``names``: wandb's logging actors run in workers, which do not see
    the driver's environment once Ray has started (online without a key, they failed in silence)."""
    return {"WANDB_MODE": os.environ.get("WANDB_MODE", "offline")} if "wandb" in names else {}


def logger_callbacks(names: list[str], out: Path, experiment: str) -> list:
    """Ray Tune callbacks for ``names``, and Tune's own CSV and JSON trial files (``quiet_tune_loggers`` turns off
    the defaults that would add them)."""
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    callbacks = [CSVLoggerCallback(), JsonLoggerCallback()]
    if "tensorboard" in names:
        from ray.tune.logger import TBXLoggerCallback

        callbacks.append(TBXLoggerCallback())
    if "wandb" in names:
        from ray.air.integrations.wandb import WandbLoggerCallback

        os.environ.setdefault("WANDB_MODE", "offline")  # no network needed; `wandb sync` uploads later (workers: worker_env)
        callbacks.append(WandbLoggerCallback(project=experiment, dir=str(out)))
    if "mlflow" in names:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(out / 'mlflow.db').resolve()}"
        callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment))
    return callbacks
