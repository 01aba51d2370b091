"""Generation with the memory carried: ``model.generate(input_ids, max_new_tokens=..., do_sample=...)``.

memkit's own loop with transformers' arguments (greedy or sampling with temperature, top-k, top-p; stop ids and
padding of finished rows; ``return_dict_in_generate`` with per-step ``logits`` and ``scores``), not
transformers' ``generate``: that one drives a model through positions and a ``Cache`` of per-layer keys and
values it sizes itself, while a memkit model's plain layers restart positions every segment in ``segment``
mode, its memory layer carries a compressive memory and a pending segment, and context-KV carries recurrent
contexts. Here every step is one call of the model's own streaming forward with its state: the prompt goes in
segment by segment, each new token continues the open segment, which is written when complete.

Rows that have finished (a stop id) leave the batch; their later tokens are ``pad_token_id`` and their
per-step logits 0.

Axes: B batch, P prompt tokens, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import ModelOutput

from memkit.errors import InputTooLong


@dataclass
class GenerateOutput(ModelOutput):
    """As transformers' ``GenerateDecoderOnlyOutput``: ``sequences`` [B,P+n]; ``scores`` and ``logits``: tuples of
    n tensors [B,V] (processed and raw, with ``output_scores`` / ``output_logits``); and ``state``, the model's
    state after the last token fed (the last generated token is not in it)."""

    sequences: torch.Tensor | None = None
    scores: tuple[torch.Tensor, ...] | None = None
    logits: tuple[torch.Tensor, ...] | None = None
    state: Any = None


def sampling_errors(temperature: float, top_k: int | None, top_p: float) -> list[tuple[str, Any, str]]:
    """The sampling arguments out of range, each as (name, value, what is allowed); [] when all are fine."""
    rules = [("temperature", temperature, temperature > 0, "temperature > 0"),
             ("top_p", top_p, 0 < top_p <= 1, "0 < top_p <= 1"), ("top_k", top_k, (top_k or 0) >= 0, "top_k >= 0")]
    return [(name, value, allowed) for name, value, ok, allowed in rules if not ok]


def warp(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float) -> torch.Tensor:
    """Sampling's logit processors, in transformers' order: temperature, top-k, top-p. [B,V] -> [B,V]."""
    out = logits / temperature
    if top_k:
        kth = out.topk(min(top_k, out.shape[-1]), dim=-1).values[:, -1:]
        out = out.masked_fill(out < kth, -float("inf"))
    if top_p < 1.0:
        sorted_logits, order = out.sort(dim=-1, descending=True)
        before = sorted_logits.softmax(-1).cumsum(-1) - sorted_logits.softmax(-1)  # mass of the better tokens
        drop = before >= top_p  # keep the smallest set reaching top_p (the best token always stays)
        out = out.masked_fill(drop.scatter(-1, order, drop), -float("inf"))
    return out


@dataclass(frozen=True)
class Decoding:
    """How ``generate`` picks its tokens: transformers' argument names and defaults, checked once."""

    max_new_tokens: int | None = None
    max_length: int | None = None
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = 50
    top_p: float = 1.0
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    return_dict_in_generate: bool = False
    output_logits: bool = False
    output_scores: bool = False

    @classmethod
    def of(cls, options: dict) -> "Decoding":
        unknown = sorted(set(options) - set(cls.__dataclass_fields__))
        if unknown:
            raise TypeError(f"generate: unknown argument(s) {', '.join(unknown)}; it takes input_ids, attention_mask, "
                            f"state and {', '.join(cls.__dataclass_fields__)}")
        decoding = cls(**options)
        bad = sampling_errors(decoding.temperature, decoding.top_k, decoding.top_p) if decoding.do_sample else []
        if bad:
            raise ValueError("generate: sampling needs " + "; ".join(f"{allowed} (got {name}={value})"
                                                                     for name, value, allowed in bad))
        return decoding

    def new_tokens(self, prompt: int) -> int:
        """Tokens to generate after a prompt of ``prompt`` tokens (default 20)."""
        steps = self.max_new_tokens
        if steps is None:
            steps = self.max_length - prompt if self.max_length is not None else 20
        if steps < 1 or prompt < 1:
            raise ValueError(f"generate: needs a prompt and max_new_tokens >= 1 (got {prompt} prompt tokens, "
                             f"max_new_tokens={steps})")
        return steps

    def stops(self, model_eos: int | None, device) -> torch.Tensor:
        """The ids that end a row: ``eos_token_id``, else the model's end-of-document id, else none."""
        eos = self.eos_token_id if self.eos_token_id is not None else model_eos
        ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        return torch.tensor(ids, dtype=torch.long, device=device)

    def pick(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B,V] -> (the processed scores [B,V], the next token [B]): greedy, or sampled from the warped scores."""
        if not self.do_sample:
            return logits, logits.argmax(-1)
        scores = warp(logits, self.temperature, self.top_k, self.top_p)
        return scores, torch.multinomial(scores.float().softmax(-1), 1)[:, 0]


class GenerateMixin:
    """``generate`` for a model whose ``forward(ids, state)`` unpacks as (logits, state) and streams exactly. The
    model says how long a stream may be (``max_stream_tokens``: None for no limit) and whether its end-of-document
    id restarts it (``eos_token_id``, ``documents``)."""

    @property
    def max_stream_tokens(self) -> int | None:
        return None

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, state=None, **options):
        """input_ids [B,P] (unpadded, equal lengths) -> sequences [B,P+n], or a ``GenerateOutput``.

        ``options`` are transformers' (``Decoding``): ``max_new_tokens`` (or ``max_length``, prompt included;
        default 20 new tokens), ``do_sample`` with ``temperature``/``top_k``/``top_p``, ``eos_token_id`` (stops a
        row; default: the model's end-of-document id), ``pad_token_id``, ``return_dict_in_generate``,
        ``output_logits``, ``output_scores``. ``state`` starts from a given state (e.g. pre-built memories).
        Sampling draws from torch's global generator (``torch.manual_seed``)."""
        self.check_plain_input(attention_mask)
        decoding = Decoding.of(options)
        B, P = input_ids.shape
        steps = decoding.new_tokens(P)
        self._check_length(P, steps)
        stops = decoding.stops(self.eos_token_id, input_ids.device)
        pad = decoding.pad_token_id if decoding.pad_token_id is not None else int(stops[0]) if len(stops) else 0
        was = self.training
        self.eval()
        try:
            tokens, raw, processed, state = self._decode(input_ids, state, steps, decoding, stops, pad)
        finally:
            self.train(was)
        sequences = torch.cat([input_ids, *tokens], dim=1)
        if not decoding.return_dict_in_generate:
            return sequences
        return GenerateOutput(sequences=sequences, scores=tuple(processed) if decoding.output_scores else None,
                              logits=tuple(raw) if decoding.output_logits else None, state=state)

    def _check_length(self, prompt: int, new: int) -> None:
        limit = self.max_stream_tokens  # a prompt longer than the limit: the model's forward says so
        if limit is not None and prompt <= limit and prompt + new - 1 > limit:
            raise InputTooLong(f"max_new_tokens: the prompt ({prompt}) and {new} new tokens pass max_position_embeddings "
                               f"({limit}) in full-window mode; ask for at most {limit - prompt + 1} new tokens")

    def _decode(self, ids, state, steps: int, decoding: "Decoding", stops: torch.Tensor, pad: int):
        B = ids.shape[0]
        logits, state = self(ids, state)
        last = logits[:, -1]
        alive = torch.arange(B, device=ids.device)  # rows still generating
        finished = torch.zeros(B, dtype=torch.bool, device=ids.device)
        tokens, raw, processed = [], [], []
        document_end = self.eos_token_id if getattr(self, "documents", None) == "separate" else None
        for step in range(steps):
            step_logits = last.new_zeros(B, last.shape[-1])
            step_logits[alive] = last
            scores, nxt = decoding.pick(step_logits)
            nxt = nxt.masked_fill(finished, pad)
            tokens.append(nxt[:, None])
            raw.append(step_logits)
            processed.append(scores)
            finished |= torch.isin(nxt, stops)
            if finished.all() or step == steps - 1:
                break
            keep = ~finished[alive]
            if not keep.all():  # finished rows leave the batch
                alive = alive[keep]
                state = None if state is None else state.select(keep.nonzero()[:, 0])
            fed = nxt[alive]
            if document_end is not None and len(alive) > 1 and bool((fed == document_end).any()) \
                    and not bool((fed == document_end).all()):
                raise ValueError("generate: some rows ended a document and others did not; a batched state cannot "
                                 "restart some rows only: pass eos_token_id (so rows stop there) or generate one row "
                                 "at a time")
            logits, state = self(fed[:, None], state)
            last = logits[:, -1]
        return tokens, raw, processed, state
