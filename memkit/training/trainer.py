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
import inspect
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

from memkit.eval.metrics import correct_count, masked_loss, peak_memory_mb, perplexity, token_nll
from memkit.models.inference import batch_logits
from memkit.spec import Spec

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


def lr_factor(step: int, total: int, spec: TrainSpec) -> float:
    """The learning rate at optimiser step ``step`` (0-based) as a share of ``lr``: linear warmup
    over ``warmup_steps``, then constant, or cosine from 1 down to ``final_lr`` at step ``total``."""
    if spec.warmup_steps and step < spec.warmup_steps:
        return (step + 1) / spec.warmup_steps
    if spec.schedule == "constant":
        return 1.0
    done = min(1.0, (step - spec.warmup_steps) / max(1, total - spec.warmup_steps))
    return spec.final_lr + (1 - spec.final_lr) * 0.5 * (1 + math.cos(math.pi * done))


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


@dataclass
class TrainState:
    """Where a training run stands after an epoch: all ``train`` needs to go on as if it never stopped.

    ``as_dict`` gives plain tensors and numbers (``torch.save``-able, loadable with ``weights_only``);
    ``from_dict`` reads them back. ``model``/``optimizer`` are the current weights and optimiser state,
    ``best_state`` the best epoch's weights, ``rng`` the generators (data order, torch, Python),
    ``shared`` the reports' batch-shared memories (they can carry across epochs)."""

    epoch: int = 0
    step: int = 0
    best_score: float = -math.inf
    bad: int = 0
    done: bool = False  # solved, converged or capped: nothing left to train
    train_seconds: float = 0.0
    train_tokens: int = 0
    result: dict = field(default_factory=dict)
    best_state: dict | None = None
    model: dict | None = None
    optimizer: dict | None = None
    rng: dict | None = None
    shared: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainState":
        return cls(**data)


class EpochHook:
    """What a caller may pass as ``on_epoch`` to keep a run resumable (the grid's trials do): called
    with each epoch's figures like any ``on_epoch``; ``save_state(state, model)`` comes first, after
    every epoch, with the ``TrainState`` to keep; ``resume_state()`` gives one back to continue from
    (None: start afresh). Any callable works as ``on_epoch``; these two methods are optional."""

    def __call__(self, row: dict) -> None:
        pass

    def save_state(self, state: TrainState, model: nn.Module) -> None:
        pass

    def resume_state(self) -> TrainState | None:
        return None

    def keep_beside_model(self, write) -> None:
        """``write(folder)`` runs each time the model is saved, into its folder (its tokenizer, its data)."""


def _shared_memories(model: nn.Module) -> dict:
    return {name: mod.shared for name, mod in model.named_modules() if getattr(mod, "shared", None) is not None}


def _snapshot(state: TrainState, model: nn.Module, opt, gen: torch.Generator) -> TrainState:
    """The state with copies of everything live (weights, optimiser, generators, shared memories)."""
    state.model = copy.deepcopy(model.state_dict())
    state.optimizer = copy.deepcopy(opt.state_dict())
    state.rng = {"order": gen.get_state(), "torch": torch.get_rng_state(), "python": random.getstate()}
    state.shared = {name: mem.export() for name, mem in _shared_memories(model).items()}
    return state


def _restore(state: TrainState, model: nn.Module, opt, gen: torch.Generator) -> TrainResult:
    model.load_state_dict(state.model)
    opt.load_state_dict(state.optimizer)
    gen.set_state(state.rng["order"])
    torch.set_rng_state(state.rng["torch"])
    random.setstate(state.rng["python"])
    for name, mem in _shared_memories(model).items():
        mem.restore(state.shared.get(name))
    return TrainResult(**state.result)


def check_finite(loss: float, grad_norm: torch.Tensor, epoch: int, step: int, steps: int) -> None:
    """Stop at the first step whose loss or gradient is not finite, before the optimiser applies it (the weights
    stay those of the step before); ``FloatingPointError`` says where (a grid trial ends as ``nan``)."""
    if not math.isfinite(loss):
        raise FloatingPointError(f"loss is not finite ({loss}) at epoch {epoch}, step {step} of {steps}")
    norm = float(grad_norm)  # one sync per step, as the loss's float() above it already is
    if not math.isfinite(norm):
        raise FloatingPointError(f"gradient is not finite (norm {norm}) at epoch {epoch}, step {step} of {steps}, "
                                 f"loss {loss:.4g}")


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
    ``max_epochs``; restores the best epoch's weights. ``on_epoch`` receives each epoch's figures
    as they come; each epoch is also a line on the ``memkit.train`` logger (and on stderr with
    ``progress``). An ``on_epoch`` with ``save_state``/``resume_state`` (``EpochHook``) keeps the run
    resumable: resumed, it goes on from the saved epoch exactly as if it had never stopped.
    """
    from tqdm.auto import tqdm

    seed_everything(spec.seed)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    if progress is None:
        progress = sys.stderr.isatty()
    bar_on = progress and sys.stderr.isatty()  # a bar redraws in place: only where a terminal shows it
    draw = train_data if callable(train_data) else None
    if spec.fresh_samples and draw is None:
        raise ValueError("fresh_samples needs train_data as a function epoch -> (ids, targets)")
    if spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available()):
        model.to("cuda")
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 matmuls on tensor cores
        torch.backends.cudnn.allow_tf32 = True
        torch.cuda.reset_peak_memory_stats(device)
    opt = torch.optim.AdamW(param_groups(model, spec), fused=device.type == "cuda")
    forward = torch.compile(model) if spec.compile_model else model
    scored_path = spec.loss_at == "scored" and "targets" in inspect.signature(model.forward).parameters
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.precision == "bf16")
    base_lrs = [g["lr"] for g in opt.param_groups]
    ids, targets = draw(1) if draw is not None else train_data
    n, T = ids.shape
    steps_per_epoch = math.ceil(n / spec.batch_size)
    gen = torch.Generator().manual_seed(spec.seed)
    # the monitored figure, signed so that larger is better
    score = (lambda r: r["val_acc"]) if spec.monitor == "acc" else (lambda r: -r["val_loss"])
    save_state = getattr(on_epoch, "save_state", None)
    resumed = getattr(on_epoch, "resume_state", lambda: None)()

    state, result = TrainState(), TrainResult(tokens_per_epoch=n * T)
    if resumed is not None:
        state = resumed
        result = _restore(state, model, opt, gen)
    model.train()
    while not state.done and state.epoch < spec.max_epochs:
        epoch = state.epoch + 1
        t0 = time.perf_counter()
        if draw is not None and epoch > 1:
            ids, targets = draw(epoch)
        reset_shared_memories(model, "training" if epoch == 1 else "epoch")  # the reports' batch-shared memories
        order = torch.randperm(n, generator=gen)
        nll_sum, scored = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}", disable=not bar_on, leave=False)
        for i in bar:
            idx = order[i * spec.batch_size : (i + 1) * spec.batch_size]
            x, y = ids[idx].to(device), targets[idx].to(device)
            factor = lr_factor(state.step, spec.max_epochs * steps_per_epoch, spec)
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * factor
            opt.zero_grad(set_to_none=True)
            k = int((y != -100).sum())
            step_nll = 0.0
            for xs, ys in zip(x.chunk(spec.grad_accumulation), y.chunk(spec.grad_accumulation)):
                with autocast:
                    if scored_path:
                        # 0, with a graph, when nothing is scored here
                        loss = forward(xs, targets=ys, loss_chunk_rows=spec.loss_chunk_rows).loss
                    else:
                        logits, _ = forward(xs)
                        loss = masked_loss(logits, ys) if (ys != -100).any() else logits.sum() * 0.0
                # each micro-batch's mean NLL, weighted by its share of the step's scored tokens
                loss = loss * (int((ys != -100).sum()) / max(k, 1))
                loss.backward()
                step_nll += float(loss.detach())
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
            check_finite(step_nll, grad_norm, epoch, i + 1, steps_per_epoch)
            opt.step()
            state.step += 1
            nll_sum, scored = nll_sum + step_nll * k, scored + k
            if bar_on:
                bar.set_postfix(loss=f"{step_nll:.3f}")
        seconds = time.perf_counter() - t0
        state.train_seconds += seconds
        state.train_tokens += n * T
        val = evaluate(model, val_data, spec.batch_size)
        row = {
            "epoch": epoch,
            "train_loss": nll_sum / max(scored, 1),
            "train_ppl": perplexity(nll_sum, scored),
            "val_loss": val["loss"],
            "val_ppl": val["ppl"],
            "val_acc": val["acc"],
            "seconds": seconds,
            "lr": base_lrs[0] * factor,
        }
        if not math.isfinite(row["val_loss"]) or not math.isfinite(row["train_loss"]):
            raise FloatingPointError(f"loss is not finite at epoch {epoch}: {row}")
        # the best epoch is kept whenever the figure is higher; patience counts only real gains
        if score(row) > state.best_score + spec.min_delta:
            state.bad = 0
        else:
            state.bad += 1
        improved = score(row) > state.best_score
        if improved:
            state.best_score, result.best_epoch = score(row), epoch
            state.best_state = copy.deepcopy(model.state_dict())
            result.best = dict(row)
        row["best"] = improved
        result.history.append(row)
        if spec.solve_at is not None and row["val_acc"] >= spec.solve_at:
            result.stop, state.done = "solved", True
        elif state.bad >= spec.patience and epoch >= spec.min_epochs:
            result.stop, state.done = "converged", True
        state.epoch = epoch
        if save_state is not None:  # before on_epoch: a trial reports the epoch's figures with its state
            state.result = {f: getattr(result, f) for f in result.__dataclass_fields__}
            save_state(_snapshot(state, model, opt, gen), model)
        if on_epoch is not None:
            on_epoch(dict(row))
        line = (f"epoch {epoch:3d}  train_ppl={row['train_ppl']:.3f}  val_ppl={row['val_ppl']:.3f}  "
                f"val_acc={row['val_acc']:.3f}  lr={row['lr']:.3g}  {seconds:.1f}s {'*' if improved else ''}")
        log.info(line)
        if progress:
            print(line, file=sys.stderr, flush=True)
    result.stopped_early = result.stop != "cap"
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    result.seconds_per_epoch = state.train_seconds / max(len(result.history), 1)
    result.tokens_per_second = state.train_tokens / state.train_seconds if state.train_seconds else 0.0
    result.peak_memory_mb = peak_memory_mb(device)
    return result
