"""Trainer: AdamW, a warmup then constant or cosine learning rate, training until convergence
(early stopping on val loss or on the task's accuracy, restoring the best epoch; or until solved),
seed control, progress.

A run ends for one of three reasons (``TrainResult.stop``): ``solved`` (val accuracy reached
``solve_at``), ``converged`` (the monitored figure did not improve by more than ``min_delta`` for
``patience`` epochs, and at least ``min_epochs`` ran) or ``cap`` (``max_epochs``, a safety cap: such a run was still improving and
is flagged ``capped``).

Gate logits (parameters tagged ``memkit_group = "gate"``) get their own learning rate and no
weight decay: public Infini-attention ports saw gates stuck at 0.5 without this.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Literal, Union

import torch
from pydantic import Field
from torch import nn

from memkit.eval.metrics import IGNORE, correct_count, peak_memory_mb, perplexity, token_nll
from memkit.models.inference import batch_logits
from memkit.spec import Spec
from memkit.training.resume import (  # noqa: F401  (EpochHook: its old home)
    EpochHook,
    Resumable,
    TrainState,
    export_shared_memories,
    restore_shared_memories,
)
from memkit.training.step import OptimiserStep, lr_factor  # noqa: F401  (lr_factor: its old home)

log = logging.getLogger("memkit.train")

Data = tuple[torch.Tensor, torch.Tensor]
# training data: fixed tensors, or a function epoch (1, 2, ...) -> tensors drawn for that epoch
TrainData = Union[Data, Callable[[int], Data]]


class TrainSpec(Spec):
    lr: float = Field(1e-3, gt=0, le=10, description="learning rate")
    gate_lr: float = Field(1e-2, gt=0, le=10, description="learning rate of memory gates")
    weight_decay: float = Field(0.01, ge=0, le=1)
    batch_size: int = Field(32, ge=1)
    max_epochs: int = Field(10, ge=1, description="safety cap; a run still improving there is flagged capped")
    patience: int = Field(3, ge=1, description="epochs without val improvement before stopping (converged)")
    min_epochs: int = Field(1, ge=1, description="no convergence stop before this epoch: a recall task sits on a "
                            "plateau at chance before it learns, which patience alone would read as converged")
    monitor: Literal["loss", "acc"] = Field("loss", description="early stopping and best epoch on val loss, or on "
                                            "val accuracy (a recall task's own metric)")
    min_delta: float = Field(0.0, ge=0, description="an epoch improves only if the monitored figure gets better by more")
    solve_at: float | None = Field(None, gt=0, le=1, description="stop once val accuracy reaches this (solved)")
    grad_clip: float = Field(1.0, gt=0)
    warmup_steps: int = Field(50, ge=0)
    schedule: Literal["constant", "cosine"] = Field("constant", description="after warmup: constant, or cosine decay "
                                                    "to final_lr × lr at max_epochs")
    final_lr: float = Field(0.1, ge=0, le=1, description="cosine: the last learning rate as a share of lr")
    fresh_samples: bool = Field(False, description="draw new synthetic training samples every epoch")
    seed: int = Field(0, ge=0)
    threads: int = Field(0, ge=0, description="torch CPU threads (0 = leave as is)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: autocast the forward to bfloat16 (CUDA or CPU); weights and memory states stay fp32")
    grad_accumulation: int = Field(1, ge=1, le=1024, description="micro-batches per optimiser step (batch_size is "
                                   "the step's batch)")
    compile_model: bool = Field(False, description="torch.compile the whole model before training")
    loss_at: Literal["scored", "every_position"] = Field(
        "scored", description="the head and its log-softmax only at scored positions, chunked (models taking "
        "targets=: memkit's); or logits at every position, then the masked loss (the plain reference)")
    loss_chunk_rows: int = Field(8192, ge=1, description="scored: past this many scored positions in a micro-batch the "
                                 "head runs in chunks of it, recomputed in backward (less memory, more time)")
    param_groups: Literal["gates_apart", "one_group"] = Field(
        "gates_apart", description="gates with their own lr and no weight decay, biases and norms undecayed; or one "
        "group, weight decay on everything (gates too) at one lr (the reports')")


@dataclass
class TrainResult:
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best: dict = field(default_factory=dict)
    seconds_per_epoch: float = 0.0
    tokens_per_second: float = 0.0
    stopped_early: bool = False
    stop: Literal["solved", "converged", "cap"] = "cap"
    tokens_per_epoch: int = 0
    peak_memory_mb: float = 0.0  # the GPU allocator's peak on CUDA, the process's peak RSS on CPU

    @property
    def capped(self) -> bool:
        """Ended at max_epochs neither solved nor flat for ``patience`` epochs: still improving."""
        return self.stop == "cap"

    def time_to(self, share: float, key: str = "val_acc", chance: float = 0.0) -> tuple[int | None, int | None]:
        """(epochs, training tokens) until ``key`` first covered ``share`` of the way from ``chance``
        to its best-epoch value (the value the restored model has); (None, None): never, also when
        the best is under twice chance (a run still on its plateau has nothing to time)."""
        final = self.best.get(key)
        if final is None or not math.isfinite(final) or final <= 0 or final < 2 * chance:
            return None, None
        for row in self.history:
            if row[key] >= chance + share * (final - chance):
                return row["epoch"], row["epoch"] * self.tokens_per_epoch
        return None, None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def param_groups(model: nn.Module, spec: TrainSpec) -> list[dict]:
    """AdamW's groups: ``gates_apart`` (gate logits at ``gate_lr`` without decay, biases and norms without
    decay, the rest decayed) or ``one_group`` (the reports': every parameter decayed, one learning rate)."""
    if spec.param_groups == "one_group":
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": spec.lr,
                 "weight_decay": spec.weight_decay}]
    gates, decay, no_decay = [], [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if getattr(p, "memkit_group", None) == "gate":
            gates.append(p)
        elif p.dim() < 2:  # biases and norms
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [
        {"params": decay, "lr": spec.lr, "weight_decay": spec.weight_decay},
        {"params": no_decay, "lr": spec.lr, "weight_decay": 0.0},
        {"params": gates, "lr": spec.gate_lr, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def reset_shared_memories(model: nn.Module, moment: str) -> None:
    """Tell every batch-shared memory (the reports' ``memory_scope``) that ``moment`` has come: "training"
    starts, an "epoch" starts, or a "validation" starts; each resets as its ``shared_reset`` says."""
    for mod in model.modules():
        if hasattr(mod, "reset_shared"):
            mod.reset_shared(moment)


def evaluate(model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], batch_size: int) -> dict:
    """val loss, perplexity and accuracy over scored positions of ``data`` = (ids, targets). A validation
    starts: batch-shared memories reset as their regime says."""
    reset_shared_memories(model, "validation")
    nll, count, hits = 0.0, 0, 0
    for logits, y in batch_logits(model, data, batch_size):
        nll += float(token_nll(logits, y).sum())
        h, c = correct_count(logits, y)
        hits, count = hits + h, count + c
    return {"loss": nll / max(count, 1), "ppl": perplexity(nll, count), "acc": hits / max(count, 1)}



def _place(model: nn.Module, spec: TrainSpec) -> torch.device:
    """Moves the model where ``spec.device`` says; on CUDA, fp32 matmuls on tensor cores and a fresh memory peak."""
    if spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available()):
        model.to("cuda")
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)
    return device


class _Draws:
    """epoch -> (ids, targets): the fixed tensors every epoch, or the function's draw for that epoch (epoch 1's
    drawn once, at the start: its shape sizes the run)."""

    def __init__(self, train_data: TrainData, spec: TrainSpec):
        if spec.fresh_samples and not callable(train_data):
            raise ValueError("fresh_samples needs train_data as a function epoch -> (ids, targets)")
        self.draw = train_data if callable(train_data) else None
        self.first = self.draw(1) if self.draw is not None else train_data

    def __call__(self, epoch: int) -> Data:
        return self.first if epoch == 1 or self.draw is None else self.draw(epoch)


class _Stopping:
    """Early stopping on the monitored figure (val loss or val accuracy), and the best epoch.

    ``judge(row, state)`` -> whether the epoch is the best so far (``state.best_score``, ``state.bad`` move);
    ``reason(row, state)`` -> "solved", "converged" or None (go on)."""

    def __init__(self, spec: TrainSpec):
        self.spec = spec

    def score(self, row: dict) -> float:
        """The monitored figure, signed so that larger is better."""
        return row["val_acc"] if self.spec.monitor == "acc" else -row["val_loss"]

    def judge(self, row: dict, state: TrainState) -> bool:
        # the best epoch is kept whenever the figure is higher; patience counts only gains over min_delta
        score = self.score(row)
        state.bad = 0 if score > state.best_score + self.spec.min_delta else state.bad + 1
        if score <= state.best_score:
            return False
        state.best_score = score
        return True

    def reason(self, row: dict, state: TrainState) -> str | None:
        if self.spec.solve_at is not None and row["val_acc"] >= self.spec.solve_at:
            return "solved"
        if state.bad >= self.spec.patience and row["epoch"] >= self.spec.min_epochs:
            return "converged"
        return None


class _Progress:
    """A bar per epoch where a terminal shows it, and a line per epoch on the ``memkit.train`` logger (and on
    stderr with ``progress``; None: when stderr is a terminal)."""

    def __init__(self, progress: bool | None):
        self.lines = sys.stderr.isatty() if progress is None else progress
        self.bar_on = self.lines and sys.stderr.isatty()  # a bar redraws in place: only on a terminal

    def bar(self, steps: int, epoch: int):
        from tqdm.auto import tqdm

        return tqdm(range(steps), desc=f"epoch {epoch}", disable=not self.bar_on, leave=False)

    def epoch(self, row: dict, improved: bool) -> None:
        line = (f"epoch {row['epoch']:3d}  train_ppl={row['train_ppl']:.3f}  val_ppl={row['val_ppl']:.3f}  "
                f"val_acc={row['val_acc']:.3f}  lr={row['lr']:.3g}  {row['seconds']:.1f}s {'*' if improved else ''}")
        log.info(line)
        if self.lines:
            print(line, file=sys.stderr, flush=True)


def _train_epoch(model: nn.Module, step: OptimiserStep, draws: _Draws, epoch: int, state: TrainState,
                 gen: torch.Generator, progress: _Progress) -> tuple[float, int, float]:
    """One pass over the epoch's data in a shuffled order: (summed NLL, scored tokens, seconds)."""
    t0 = time.perf_counter()
    ids, targets = draws(epoch)
    device = next(model.parameters()).device
    batch_size = step.spec.batch_size
    reset_shared_memories(model, "training" if epoch == 1 else "epoch")  # the reports' batch-shared memories
    order = torch.randperm(len(ids), generator=gen)
    nll_sum, scored = 0.0, 0
    steps = math.ceil(len(ids) / batch_size)
    bar = progress.bar(steps, epoch)
    for i in bar:
        idx = order[i * batch_size : (i + 1) * batch_size]
        x, y = ids[idx].to(device), targets[idx].to(device)
        nll = step(x, y, state.step, at=f"epoch {epoch}, step {i + 1} of {steps}")
        state.step += 1
        k = int((y != IGNORE).sum())
        nll_sum, scored = nll_sum + nll * k, scored + k
        if progress.bar_on:
            bar.set_postfix(loss=f"{nll:.3f}")
    seconds = time.perf_counter() - t0
    state.train_seconds += seconds
    state.train_tokens += ids.numel()
    return nll_sum, scored, seconds


def _epoch_row(epoch: int, nll_sum: float, scored: int, seconds: float, val: dict, lr: float) -> dict:
    row = {"epoch": epoch, "train_loss": nll_sum / max(scored, 1), "train_ppl": perplexity(nll_sum, scored),
           "val_loss": val["loss"], "val_ppl": val["ppl"], "val_acc": val["acc"], "seconds": seconds, "lr": lr}
    if not math.isfinite(row["val_loss"]) or not math.isfinite(row["train_loss"]):
        raise FloatingPointError(f"loss is not finite at epoch {epoch}: {row}")
    return row


def train(
    model: nn.Module,
    train_data: TrainData,
    val_data: Data,
    spec: TrainSpec,
    on_epoch: Callable[[dict], None] | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train ``model`` (forward(ids) -> (logits, state)) on (ids [n,T], targets [n,T]).

    ``train_data`` is the tensors, or a function epoch -> tensors (``fresh_samples``: new draws
    every epoch, the same n each time). Each epoch: one pass over shuffled train data, then
    validation. Stops when solved (val accuracy >= ``solve_at``), after ``patience`` epochs without
    the monitored figure (val loss, or val accuracy) improving by more than ``min_delta``, or at
    ``max_epochs``; restores the best epoch's weights (and its batch-shared memories, as its validation
    found them). ``on_epoch`` receives each epoch's figures
    as they come; each epoch is also a line on the ``memkit.train`` logger (and on stderr with
    ``progress``). An ``on_epoch`` with ``save_state``/``resume_state`` (``EpochHook``) keeps the run
    resumable: resumed, it goes on from the saved epoch exactly as if it had never stopped.
    """
    seed_everything(spec.seed)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    shown, draws = _Progress(progress), _Draws(train_data, spec)
    device = _place(model, spec)
    opt = torch.optim.AdamW(param_groups(model, spec), fused=device.type == "cuda")
    n, T = draws.first[0].shape
    step = OptimiserStep(model, opt, spec, total_steps=spec.max_epochs * math.ceil(n / spec.batch_size))
    gen = torch.Generator().manual_seed(spec.seed)  # the data order's
    resumable, stopping = Resumable(on_epoch, model, opt, gen), _Stopping(spec)
    state, saved = resumable.start()
    result = TrainResult(**saved) if saved is not None else TrainResult(tokens_per_epoch=n * T)
    model.train()
    while not state.done and state.epoch < spec.max_epochs:
        epoch = state.epoch + 1
        nll_sum, scored, seconds = _train_epoch(model, step, draws, epoch, state, gen, shown)
        # the batch-shared memories as this validation starts (a "once" memory is not reset there: this is what the
        # validation reads, and with shared_validation="writes" it then writes them): kept with the weights if the
        # epoch is the best, so that the best model measures again as it did here
        shared = export_shared_memories(model)
        row = _epoch_row(epoch, nll_sum, scored, seconds, evaluate(model, val_data, spec.batch_size), step.lr)
        improved = stopping.judge(row, state)
        if improved:
            result.best_epoch, result.best = epoch, dict(row)
            state.best_state, state.best_shared = copy.deepcopy(model.state_dict()), shared
        result.history.append({**row, "best": improved})
        reason = stopping.reason(row, state)
        if reason is not None:
            result.stop, state.done = reason, True
        state.epoch = epoch
        resumable.save(state, result)  # before on_epoch: a trial reports the epoch's figures with its state
        if on_epoch is not None:
            on_epoch(dict(result.history[-1]))
        shown.epoch(row, improved)
    return _finish(model, state, result, device)


def _finish(model: nn.Module, state: TrainState, result: TrainResult, device: torch.device) -> TrainResult:
    """Restores the best epoch's weights and batch-shared memories (as its validation found them); fills in how
    the run ended and its speed."""
    result.stopped_early = result.stop != "cap"
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
        if state.best_shared is not None:
            restore_shared_memories(model, state.best_shared)
    result.seconds_per_epoch = state.train_seconds / max(len(result.history), 1)
    result.tokens_per_second = state.train_tokens / state.train_seconds if state.train_seconds else 0.0
    result.peak_memory_mb = peak_memory_mb(device)
    return result
