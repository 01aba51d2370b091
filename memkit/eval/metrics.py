"""Metrics over next-token predictions. Targets use -100 for positions that are not scored.

Axes: B batch, T tokens, V vocab.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from memkit.models.inference import batch_logits, eval_mode
from memkit.ops.cross_entropy import at_least_fp32

IGNORE = -100


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood per position, [B,T]; 0 where the target is ignored."""
    nll = F.cross_entropy(at_least_fp32(logits.flatten(0, 1)), targets.flatten(), ignore_index=IGNORE,
                          reduction="none")
    return nll.view(targets.shape)


def masked_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean NLL over scored positions (the training loss)."""
    return F.cross_entropy(at_least_fp32(logits.flatten(0, 1)), targets.flatten(), ignore_index=IGNORE)


def perplexity(total_nll: float, count: int) -> float:
    """exp(mean NLL); inf when the mean overflows."""
    if count == 0:
        return float("nan")
    mean = total_nll / count
    return math.exp(mean) if mean < 700 else float("inf")


def correct_count(logits: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    """(argmax hits, scored positions)."""
    mask = targets != IGNORE
    hits = (logits.argmax(-1) == targets) & mask
    return int(hits.sum()), int(mask.sum())


def accuracy_by_segment(model, data: tuple[torch.Tensor, torch.Tensor], segment_len: int,
                        batch_size: int = 32) -> dict[int, float]:
    """{segment index: share of its scored targets the argmax gets right}, for any ``data`` =
    (ids [n,T], targets [n,T]) with -100 where nothing is scored; segments of ``segment_len``
    tokens (the last may be shorter), only those with scored targets."""
    T = data[0].shape[1]
    S = -(-T // segment_len)
    hits = torch.zeros(S, dtype=torch.long)
    count = torch.zeros(S, dtype=torch.long)
    seg = torch.arange(T) // segment_len
    for logits, y in batch_logits(model, data, batch_size):
        mask = (y != IGNORE).cpu()
        hit = ((logits.argmax(-1) == y).cpu() & mask)
        hits.index_add_(0, seg, hit.sum(0))
        count.index_add_(0, seg, mask.sum(0))
    return {s: float(hits[s]) / int(count[s]) for s in range(S) if count[s] > 0}


def position_buckets(seq_len: int) -> list[tuple[int, int]]:
    """The reports' buckets 0-16, 16-32, 32-64, 64-96, 96-256, then doubling (256-512, ...), cut at seq_len."""
    edges = [0, 16, 32, 64, 96, 256]
    while edges[-1] < seq_len:
        edges.append(edges[-1] * 2)
    edges = [e for e in edges if e < seq_len] + [seq_len]
    return list(zip(edges[:-1], edges[1:]))


def bucket_name(lo: int, hi: int) -> str:
    return f"{lo}-{hi}"


def nll_by_position(model, data: tuple[torch.Tensor, torch.Tensor], batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of NLL [T], count of scored targets [T]) per position over ``data`` = (ids, targets)."""
    total = torch.zeros(data[0].shape[1], dtype=torch.float64)
    count = torch.zeros(data[0].shape[1], dtype=torch.long)
    for logits, y in batch_logits(model, data, batch_size):
        total += token_nll(logits, y).sum(0).double().cpu()
        count += (y != IGNORE).sum(0).cpu()
    return total, count


def position_ppl(model, data, batch_size: int = 32, buckets: list[tuple[int, int]] | None = None) -> dict[str, float]:
    """Perplexity per position bucket: {"0-16": ppl, ...} (``position_buckets`` by default)."""
    total, count = nll_by_position(model, data, batch_size)
    buckets = buckets or position_buckets(len(total))
    return {bucket_name(lo, hi): perplexity(float(total[lo:hi].sum()), int(count[lo:hi].sum())) for lo, hi in buckets}


def completion_scores(model, pairs: list[tuple[list[int], list[int]]], batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """For (prompt ids, completion ids) pairs: (exact match [n] bool, log-prob of the completion [n]).

    Exact match is greedy decoding's: every completion token is the argmax given the true prefix
    (if all are, greedy decoding yields the completion; if one is not, greedy decoding leaves it
    there). Sequences are right-padded; padding comes after every scored token, so causal models
    are unaffected by it.
    """
    # a model whose plain layers see one segment at a time takes whole segments only
    multiple = model.segment_len if getattr(model, "local_window", None) == "segment" and model.segment_len else 1
    hits, logps = [], []
    with eval_mode(model) as device:
        for i in range(0, len(pairs), batch_size):
            hit, logp = _score_chunk(model, pairs[i : i + batch_size], multiple, device)
            hits.append(hit)
            logps.append(logp)
    return torch.cat(hits), torch.cat(logps)


def _score_chunk(model, chunk, multiple: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """One right-padded batch of (prompt, completion) pairs -> (exact match [b], log-prob [b])."""
    T = max(len(p) + len(c) for p, c in chunk) - 1
    T = -(-T // multiple) * multiple
    x = torch.zeros(len(chunk), T, dtype=torch.long)
    y = torch.full((len(chunk), T), IGNORE, dtype=torch.long)
    for j, (p, c) in enumerate(chunk):
        seq = torch.tensor(list(p) + list(c))
        x[j, : len(seq) - 1] = seq[:-1]
        y[j, len(p) - 1 : len(seq) - 1] = seq[len(p) :]
    logits = model(x.to(device))[0].float().cpu()
    mask = y != IGNORE
    logp = torch.log_softmax(logits, -1).gather(-1, y.clamp_min(0)[..., None])[..., 0]
    return ((logits.argmax(-1) == y) | ~mask).all(1), (logp * mask).sum(1)


def peak_memory_mb(device: torch.device | str | None = None) -> float:
    """Peak memory so far: CUDA's allocator peak on a GPU, the process's peak RSS on CPU."""
    if device is not None and torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource
    import sys

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB on Linux
