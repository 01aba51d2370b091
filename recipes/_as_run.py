"""The reports' system as their code ran it (docs/design.md, "Choices the reports' code made"): the fields a text
report recipe's ``as_run`` arm sets (reports 001-003), and what that arm leaves out."""

# The reports' memory layer as their code ran it (DESIGN.md, last section; reports 001-003), and their
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
