"""Which layer sits in a ``MemoryLM``'s memory place: the Infini-attention layer or a baseline, by name.

``DesignSpec.name``: ``infini`` (``MemoryAttention``, the model's ``memory`` spec), ``deltanet`` and
``gated_deltanet`` (``DeltaNetAttention``, its settings in ``deltanet``), ``sliding_window`` (``WindowAttention``
over the last ``attention.window`` tokens; None: the memory's ``segment_len``) and ``full_attention``
(``WindowAttention`` over every token of the model's context, ``max_position_embeddings``: its state is sized
for that context). The layers' width and heads are the model's and the attention's rotary is GPT-NeoX's
(``rotary_pct``, ``rotary_base``): derived, never set twice.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field
from torch import nn

from memkit.blocks.deltanet import DeltaNetAttentionSpec
from memkit.blocks.window import WindowAttentionSpec
from memkit.spec import Spec


class DesignSpec(Spec):
    """The layer in the memory place, by name, with the baselines' own settings."""

    name: Literal["infini", "deltanet", "gated_deltanet", "sliding_window", "full_attention"] = Field(
        "infini", description="the layer in the memory place: the memory layer, or a baseline")
    deltanet: DeltaNetAttentionSpec = Field(default_factory=DeltaNetAttentionSpec,
                                            description="deltanet, gated_deltanet: the layer's settings")
    attention: WindowAttentionSpec = Field(default_factory=WindowAttentionSpec, description="sliding_window: "
                                           "its window (None: the memory's segment_len); full_attention: unused")


def _fields(v) -> dict:
    """A spec's fields, or a dict of them."""
    return v.model_dump() if isinstance(v, Spec) else dict(v)


# Designs by the name a comparison uses: the memory layer's three shapes, and the baselines
NamedDesign = Literal["single", "multi", "hierarchical", "sliding_window", "full_attention", "deltanet",
                      "gated_deltanet"]
NAMED_DESIGNS: tuple[str, ...] = get_args(NamedDesign)


def named_design(model: dict, design: str) -> dict:
    """A ``MemoryLMSpec``'s fields (as a dict) with ``design`` in its memory place: ``single`` is the memory layer
    with one memory; ``multi`` with ``memory.num_memories`` memories (4 where the model sets one);
    ``hierarchical`` is multi with the soft expansion gate (or the model's ``hierarchy`` where set); any other
    name is that baseline (``design.name``), the memory fields left as they are (a baseline never reads them)."""
    if design not in NAMED_DESIGNS:
        raise ValueError(f"design: unknown {design!r}; one of {', '.join(NAMED_DESIGNS)}")
    model = _fields(model or {})
    layer = {**_fields(model.get("design") or {}), "name": design if design not in ("single", "multi", "hierarchical")
             else "infini"}
    memory = _fields(model.get("memory") or {})
    if design == "single" and memory.get("num_memories", 1) > 1:
        raise ValueError(f"design: 'single' has one memory, but memory.num_memories is {memory['num_memories']}; "
                         "give design=multi for several")
    if design == "multi" and memory.get("hierarchy", "none") != "none":
        raise ValueError(f"design: 'multi' has no hierarchy, but memory.hierarchy is {memory['hierarchy']!r}; "
                         "give design=hierarchical")
    if design == "single":
        memory["num_memories"] = 1
    elif design in ("multi", "hierarchical"):
        memory["num_memories"] = memory.get("num_memories", 1) if memory.get("num_memories", 1) > 1 else 4
        if design == "hierarchical" and memory.get("hierarchy", "none") == "none":
            memory["hierarchy"] = "soft"
    return {**model, "design": layer, "memory": memory}


def derive_design_shape(data: dict, hidden_size: int, num_heads: int, rotary_pct: float, rotary_base: float) -> dict:
    """For ``MemoryLMSpec``'s ``mode="before"`` validator: ``data["design"]`` with the model's width, heads and
    rotary in its layers' specs, and ``gated`` from the name. A width, heads or rotary share that is not a number is
    left for the model's own fields to name in their error."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (hidden_size, num_heads, rotary_pct)) \
            or num_heads <= 0:
        return data
    design = _fields(data.get("design", {}))
    shape = dict(hidden_size=hidden_size, num_heads=num_heads)
    deltanet = _fields(design.get("deltanet", {}))
    design["deltanet"] = {**deltanet, **shape, "gated": design.get("name") == "gated_deltanet"}
    attention = _fields(design.get("attention", {}))
    rotary = int(hidden_size // max(num_heads, 1) * rotary_pct) // 2 * 2  # GPT-NeoX's rotary dims, made even
    design["attention"] = {**attention, **shape, "rotary_dim": rotary, "rotary_base": rotary_base}
    return {**data, "design": design}


def build_layer(spec) -> nn.Module:
    """The layer a ``MemoryLMSpec`` puts in its memory place."""
    design = spec.design
    if design.name == "infini":
        return spec.memory.build()
    if design.name in ("deltanet", "gated_deltanet"):
        return design.deltanet.build()
    if design.name == "sliding_window":
        window = design.attention.window or spec.memory.segment_len
    else:  # full attention over the model's context (in full-window mode no stream is longer)
        window = spec.max_position_embeddings
    return design.attention.with_overrides(window=window).build()
