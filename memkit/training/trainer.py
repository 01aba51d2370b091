"""Trainer: AdamW, early stopping that restores the best epoch, seed control, progress.

Gate logits (parameters tagged ``memkit_group = "gate"``) get their own learning rate and no
weight decay: public Infini-attention ports saw gates stuck at 0.5 without this.
"""

from __future__ import annotations

import copy
import math
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
from pydantic import Field
from torch import nn

from memkit.eval.metrics import correct_count, masked_loss, perplexity, token_nll
from memkit.models.inference import batch_logits
from memkit.spec import Spec


class TrainSpec(Spec):
    lr: float = Field(1e-3, gt=0, le=10, description="learning rate")
    gate_lr: float = Field(1e-2, gt=0, le=10, description="learning rate of memory gates")
    weight_decay: float = Field(0.01, ge=0, le=1)
    batch_size: int = Field(32, ge=1)
    max_epochs: int = Field(10, ge=1)
    patience: int = Field(3, ge=1, description="epochs without val improvement before stopping")
    grad_clip: float = Field(1.0, gt=0)
    warmup_steps: int = Field(50, ge=0)
    seed: int = Field(0, ge=0)
    threads: int = Field(0, ge=0, description="torch CPU threads (0 = leave as is)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available")
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


def train(
    model: nn.Module,
    train_data: tuple[torch.Tensor, torch.Tensor],
    val_data: tuple[torch.Tensor, torch.Tensor],
    spec: TrainSpec,
    on_epoch: Callable[[dict], None] | None = None,
    progress: bool | None = None,
) -> TrainResult:
    """Train ``model`` (forward(ids) -> (logits, state)) on (ids [n,T], targets [n,T]).

    Each epoch: one pass over shuffled train data, then validation. Stops after ``patience``
    epochs without a lower val loss and restores the best epoch's weights. ``on_epoch``
    receives each epoch's figures as they come.
    """
    from tqdm.auto import tqdm

    seed_everything(spec.seed)
    if spec.threads:
        torch.set_num_threads(spec.threads)
    if progress is None:
        progress = sys.stderr.isatty()
    if spec.device == "cuda" or (spec.device == "auto" and torch.cuda.is_available()):
        model.to("cuda")
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(param_groups(model, spec))
    base_lrs = [g["lr"] for g in opt.param_groups]
    ids, targets = train_data
    n, T = ids.shape
    steps_per_epoch = math.ceil(n / spec.batch_size)
    gen = torch.Generator().manual_seed(spec.seed)

    result, best_loss, best_state, bad, step = TrainResult(), math.inf, None, 0, 0
    train_seconds, train_tokens = 0.0, 0
    model.train()
    for epoch in range(1, spec.max_epochs + 1):
        t0 = time.perf_counter()
        reset_shared_memories(model, "training" if epoch == 1 else "epoch")  # the reports' batch-shared memories
        order = torch.randperm(n, generator=gen)
        nll_sum, scored = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}", disable=not progress, leave=False)
        for i in bar:
            idx = order[i * spec.batch_size : (i + 1) * spec.batch_size]
            x, y = ids[idx].to(device), targets[idx].to(device)
            warm = min(1.0, (step + 1) / spec.warmup_steps) if spec.warmup_steps else 1.0
            for g, lr in zip(opt.param_groups, base_lrs):
                g["lr"] = lr * warm
            logits, _ = model(x)
            loss = masked_loss(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), spec.grad_clip)
            opt.step()
            step += 1
            k = int((y != -100).sum())
            nll_sum, scored = nll_sum + float(loss.detach()) * k, scored + k
            if progress:
                bar.set_postfix(loss=f"{float(loss):.3f}")
        seconds = time.perf_counter() - t0
        train_seconds += seconds
        train_tokens += n * T
        val = evaluate(model, val_data, spec.batch_size)
        row = {
            "epoch": epoch,
            "train_loss": nll_sum / max(scored, 1),
            "train_ppl": perplexity(nll_sum, scored),
            "val_loss": val["loss"],
            "val_ppl": val["ppl"],
            "val_acc": val["acc"],
            "seconds": seconds,
        }
        if not math.isfinite(row["val_loss"]) or not math.isfinite(row["train_loss"]):
            raise FloatingPointError(f"loss is not finite at epoch {epoch}: {row}")
        improved = row["val_loss"] < best_loss
        if improved:
            best_loss, bad, result.best_epoch = row["val_loss"], 0, epoch
            best_state = copy.deepcopy(model.state_dict())
            result.best = dict(row)
        else:
            bad += 1
        row["best"] = improved
        result.history.append(row)
        if on_epoch is not None:
            on_epoch(dict(row))
        if progress:
            mark = "*" if improved else ""
            print(
                f"epoch {epoch:3d}  train_ppl={row['train_ppl']:.3f}  val_ppl={row['val_ppl']:.3f}  "
                f"val_acc={row['val_acc']:.3f}  {seconds:.1f}s {mark}",
                file=sys.stderr,
            )
        if bad >= spec.patience:
            result.stopped_early = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    result.seconds_per_epoch = train_seconds / len(result.history)
    result.tokens_per_second = train_tokens / train_seconds if train_seconds else 0.0
    return result
