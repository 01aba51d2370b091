"""The grid's Tune callback: what a running grid prints and writes as its trials report.

One compact line per epoch, printed and appended to ``progress.log`` (the epoch's figures to ``epochs.jsonl``) as it
comes; each finished trial appended to ``trials.jsonl`` (the record ``--resume`` and the tables read) with its best
model's checkpoint, the node it ran on, and how it ended. Imports Ray: the grid loads it only once Ray runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ray.tune import Callback

from ablations.gates import epoch_figures
from ablations.results import fmt, is_figure
from ablations.trial import trial_point


class Progress(Callback):
    """``labels``: a point's JSON (sorted keys) -> its label in lines and records; ``total``: the trials of the round
    (for "3/8"); ``out``: the grid folder; ``metrics``: the figures a record keeps even when not numbers;
    ``seed_path``: where a search's repeat puts the seed."""

    def __init__(self, labels: dict[str, str], total: int, out: Path, metrics: list[str], seed_path: str | None = None):
        self.labels, self.total, self.out, self.metrics, self.seed_path = labels, total, out, metrics, seed_path
        self.done, self.last = 0, {}

    def say(self, line: str) -> None:
        print(line, flush=True)
        with (self.out / "progress.log").open("a") as f:
            f.write(line + "\n")

    def _label(self, trial) -> str:
        point = trial_point(trial.config, self.seed_path)
        return self.labels.get(json.dumps(point, sort_keys=True)) or ",".join(f"{k}={v}" for k, v in point.items())

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.last[trial.trial_id] = result
        if not result.get("final"):
            epoch = epoch_figures(result)
            with (self.out / "epochs.jsonl").open("a") as f:
                f.write(json.dumps({"trial": self._label(trial), **epoch}, default=str) + "\n")
            self.say(f"  [{self._label(trial)}] epoch {result.get('epoch')}  val_acc={fmt(result.get('val_acc'))}"
                     f"  val_ppl={fmt(result.get('val_ppl'))}  lr={fmt(result.get('lr'))}  {fmt(result.get('seconds'))}s")

    def _record(self, trial, status: str, error: str = "") -> None:
        self.done += 1
        last = self.last.get(trial.trial_id, {})
        if status == "ok" and not last.get("final"):  # stopped early by the scheduler
            status, last = "stopped", {**last, "recall_acc": last.get("val_acc")}
        if last.get("failure"):  # diverged or out of memory: ended on purpose, not retried
            status, error = last["failure"], last.get("error", "")
        checkpoint = getattr(trial, "checkpoint", None)
        row = {"trial": self._label(trial), "status": status, "error": error,
               "point": trial_point(trial.config, self.seed_path), "history": epochs_of(self.out, self._label(trial)),
               "node": last.get("node"), "checkpoint": f"{checkpoint.path}/model" if checkpoint else None}
        # every figure the trial returned (report recipes read more than the table shows)
        row.update({k: v for k, v in last.items() if k in self.metrics or is_figure(k, v)})
        row.update({k: last[k] for k in ("capped", "stop") if k in last})  # how the run ended
        with (self.out / "trials.jsonl").open("a") as f:
            f.write(json.dumps(row, default=str) + "\n")
        ended = {"cap": ", CAPPED: still improving at max_epochs"}.get(row.get("stop"), "")
        ended = ended or (f", {row['stop']} after {row.get('epochs')} epochs" if row.get("stop") else "")
        self.say(f"  [{row['trial']}] {status}{ended} ({self.done}/{self.total})" + (f": {error}" if error else ""))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._record(trial, "ok")

    def on_trial_error(self, iteration, trials, trial, **info):
        self._record(trial, "failed", trial_error(trial))


def epochs_of(out: Path, label: str) -> list[dict]:
    """A trial's whole history from ``epochs.jsonl``: every epoch it reported, before a ``--resume`` or a retry too
    (an epoch reported twice, once before a restart from an earlier checkpoint, keeps its last report)."""
    by_epoch: dict = {}
    path = out / "epochs.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        row = json.loads(line)
        if row.pop("trial", None) == label:
            by_epoch[row.get("epoch")] = row
    return sorted(by_epoch.values(), key=lambda r: (r.get("epoch") is None, r.get("epoch") or 0))


def trial_error(trial) -> str:
    err = getattr(trial, "error_msg", None) or ""
    path = getattr(trial, "error_file", None)
    if not err and path and os.path.exists(path):
        err = Path(path).read_text()
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "trial failed"
