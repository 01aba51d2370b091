"""The reports' system as their code ran it (docs/design.md, "The reports' options"): the fields a text
report recipe's ``as_run`` arm sets (reports 001-003), and what that arm leaves out."""

# The reports' memory layer as their code ran it (docs/design.md; reports 001-003), and their
# optimiser. Each report recipe's ``as_run`` starts from these and changes what its script did otherwise.
AS_RUN_LAYER = dict(segmentation="whole_call", local="linear_clamped", bias=False, key_shift=False, rotary_dim=0,
                    update="delta", memory_scope="batch_shared", write_scale="reports", shared_reset="each_epoch",
                    shared_validation="writes", selection="soft", selection_query="q", selection_score="reports",
                    selection_scope="whole_call_leaks_future", unwritten_memories="kept_at_zero",
                    gate_input="coarse_read_relu")
AS_RUN_TRAIN = dict(param_groups="one_group", weight_decay=0.01, monitor="loss", min_delta=0.0)
# Passkey and MQAR need the memory: as run, a call is one segment and every layer sees all of it, so
# attention alone answers them. The as-run arm leaves them out rather than report a figure that tests nothing.
AS_RUN_SKIPS = {"passkey", "mqar"}

# The as-run arm's choices as the ladder flips them (``python -m ablations.grid --ladder``): each a name and the
# spec paths it sets together (fields that act only together are one choice: a batch-shared memory's write scale
# and regimes mean nothing without it). A path the as-run arm changes and no choice names is a choice of its own.
AS_RUN_CHOICES = [
    ("whole call as one segment", ["model.memory.segmentation"]),
    ("local branch: linear attention, clamped", ["model.memory.local"]),
    ("projections without bias", ["model.memory.bias"]),
    ("no key shift, no rotary", ["model.memory.key_shift", "model.memory.rotary_dim"]),
    ("one memory per batch (scaled writes, the script's regimes)",
     ["model.memory.memory_scope", "model.memory.write_scale", "model.memory.shared_reset",
      "model.memory.shared_validation"]),
    ("selection as run (unscaled, over the whole call, unwritten kept)",
     ["model.memory.selection_score", "model.memory.selection_scope", "model.memory.unwritten_memories",
      "model.memory.selection", "model.memory.selection_query"]),
    ("expansion gate reads the coarse read", ["model.memory.gate_input"]),
    ("landmark as run", ["model.memory.landmark", "model.memory.hsa_keys", "model.memory.hsa_dropout"]),
    ("sequential residual, NaN guard", ["model.memory_residual", "model.memory.nan_guard"]),
    ("documents run together", ["model.documents"]),
    ("one optimiser group, weight decay on gates", ["train.param_groups", "train.weight_decay"]),
    ("early stopping as run", ["train.patience", "train.min_delta", "train.monitor"]),
    ("reversal facts and order as run", ["reversal.kind", "reversal.eval_order"]),
]
