"""Documents, not rows: a packed row holds several documents joined by the end-of-document id, and each
document starts afresh (memory state, pending segment, landmark sums, plain-layer attention, contexts).

``by_document`` lays the call out again as one row per document (padded at the end, which no causal model
sees), runs the model's streaming forward on it and puts the logits back where the tokens were. So a row
of three packed documents gives the outputs of the three documents fed one by one. The end-of-document
token belongs to the document it ends; the token after it starts the next one.

The state a call returns continues each row's last document. A batched state holds one write count for all
rows, so it can only be returned when the rows' last documents line up: every row holds a boundary and the
documents after the last boundaries are equally long (always so for one row). Then the state is exact, and
None (a fresh start) when they are empty (every row ends with the end-of-document id). Otherwise the call
returns None: to stream packed rows with a carried state, feed one row at a time or cut calls at
boundaries. Rows without any boundary need none of this: the call runs as it is.

Axes: B batch, T tokens, R document rows, M their width, V vocab.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

Step = Callable[[torch.Tensor, object], tuple[torch.Tensor, object]]  # (ids [R,M], state) -> (outputs [R,M,F], state)


def pieces(ids: torch.Tensor, eos_id: int) -> list[list[tuple[int, int]]]:
    """Per row, the (start, end) of its documents, each ending after an end-of-document id; the last one may be
    empty (the row ends with the id)."""
    B, T = ids.shape
    out = []
    for row in (ids == eos_id).cpu():
        cuts = [0] + (row.nonzero().flatten() + 1).tolist()
        if cuts[-1] != T:
            cuts.append(T)
        out.append(list(zip(cuts[:-1], cuts[1:])) + ([(T, T)] if cuts[-1] == T and row[-1] else []))
    return out


def by_document(step: Step, ids: torch.Tensor, state, eos_id: int):
    """The model's streaming ``step`` run document by document: (its per-token outputs [B,T,F] (logits, or hidden
    states before the head), state or None; see the module docstring). ``state`` continues each row's first document; the others start from a fresh state."""
    B, T = ids.shape
    rows = pieces(ids, eos_id)
    if all(len(r) == 1 for r in rows):  # no boundary: the call as it is
        return step(ids, state)
    firsts = [(b, *r[0]) for b, r in enumerate(rows)]
    rest = [(b, s, e) for b, r in enumerate(rows) for s, e in r[1:] if e > s]
    last = [r[-1][1] - r[-1][0] for r in rows]
    carry = all(len(r) > 1 for r in rows) and len(set(last)) == 1  # the last documents line up
    alone = []  # the last documents, run unpadded for an exact state
    if carry and last[0]:
        alone = [(b, *r[-1]) for b, r in enumerate(rows)]
        rest = [p for p in rest if p[2] != T]
    groups = [(firsts + rest, None)] if state is None else [(firsts, state), (rest, None)]
    groups.append((alone, None))
    flat, where, new_state = [], torch.empty(B, T, dtype=torch.long), None
    offset = 0
    for group, start in groups:
        if not group:
            continue
        width = max(e - s for _, s, e in group)
        x = torch.stack([F.pad(ids[b, s:e], (0, width - (e - s))) for b, s, e in group])
        logits, new_state = step(x, start)
        for r, (b, s, e) in enumerate(group):
            where[b, s:e] = offset + r * width + torch.arange(e - s)
        flat.append(logits.reshape(-1, logits.shape[-1]))
        offset += len(group) * width
    logits = torch.cat(flat)[where.flatten().to(ids.device)].view(B, T, -1)
    return logits, (new_state if alone else None)
