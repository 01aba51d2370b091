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


def logger_callbacks(names: list[str], out: Path, experiment: str) -> list:
    """Ray Tune callbacks for ``names``."""
    callbacks = []
    if "tensorboard" in names:
        from ray.tune.logger import TBXLoggerCallback

        # a figure may be NaN by design (a recall time never reached, a metric without scored tokens); tensorboardX
        # would print an unlabelled "NaN or Inf found in input tensor." for each
        logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)
        callbacks.append(TBXLoggerCallback())
    if "wandb" in names:
        from ray.air.integrations.wandb import WandbLoggerCallback

        os.environ.setdefault("WANDB_MODE", "offline")  # no network needed; `wandb sync` uploads later
        callbacks.append(WandbLoggerCallback(project=experiment, dir=str(out)))
    if "mlflow" in names:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(out / 'mlflow.db').resolve()}"
        callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=experiment))
    return callbacks
