"""What the text report recipes' presets share (sizes, data, training) and their ``--space`` keys."""

from __future__ import annotations


def tiny_parts() -> dict:
    """What the report recipes' ``tiny`` presets share: a 2-layer, hidden-128 model with 4 memories of
    32-token segments, 1,500 samples of 128 BPE tokens (vocab 1,024) from the Debian corpus."""
    return dict(
        model=dict(hidden_size=128, num_layers=2, num_heads=4, intermediate_size=512, max_position_embeddings=512,
                   local_window="full", memory=dict(segment_len=32, num_memories=4, update="delta", key_shift=True)),
        data=dict(source="debian", max_chars=400_000, seq_len=128, num_train=1500, num_val=200,
                  tokenizer=dict(kind="bpe", vocab_size=1024)),
        train=dict(lr=3e-3, batch_size=32, max_epochs=30, patience=2, min_delta=0.005),
        mqar=dict(write_segments=3, query_segments=1, num_groups=4, keys_per_group=16, num_values=16,
                  num_train=1024, num_val=128),
        recall_train=dict(lr=3e-3, batch_size=32, max_epochs=30, patience=3, monitor="acc", min_delta=0.01,
                          solve_at=0.99),
    )


def report_parts(patience: int) -> dict:
    """The reports' settings: Pythia-70M shape, 4 memories, delta rule, 5,000 samples of 256 tokens,
    lr 1e-4, up to 30 epochs with ``patience`` as the report had it. Meant for a GPU."""
    return dict(
        model=dict(hidden_size=512, num_layers=6, num_heads=8, intermediate_size=2048, max_position_embeddings=2048,
                   local_window="full", memory=dict(segment_len=64, num_memories=4, update="delta", key_shift=True,
                                                    rotary_dim=16)),
        data=dict(source="debian", max_chars=4_000_000, seq_len=256, num_train=5000, num_val=500,
                  tokenizer=dict(kind="bpe", vocab_size=16384)),
        train=dict(lr=1e-4, batch_size=8, max_epochs=30, patience=patience),
        mqar=dict(write_segments=3, query_segments=1, num_groups=8, keys_per_group=64, num_values=512,
                  num_train=5000, num_val=500),
        recall_train=dict(lr=1e-4, batch_size=8, max_epochs=30, patience=5, monitor="acc", min_delta=0.01,
                          solve_at=0.99),
    )


# --space keys of the data and training parts, for every text recipe
DATA_TRAIN_ALIASES = {
    "source": "data.source",
    "tokenizer": "data.tokenizer.kind",
    "vocab": "data.tokenizer.vocab_size",
    "seq_len": "data.seq_len",
    "samples": "data.num_train",
    "lr": "train.lr",
    "epochs": "train.max_epochs",
    "patience": "train.patience",
    "seed": "train.seed",
}


def text_aliases() -> dict[str, str]:
    """--space keys every memory text recipe has."""
    return {
        "arm": "arm",
        "memories": "model.memory.num_memories",
        "layer": "model.design.name",
        "landmark": "model.memory.landmark",
        "gate": "model.memory.hierarchy",
        "update": "model.memory.update",
        "selection": "model.memory.selection",
        "top_k": "model.memory.top_k",
        "segment_len": "model.memory.segment_len",
        "compile": "model.memory.compile",
        "window": "model.local_window",
        "hidden": "model.hidden_size",
        "layers": "model.num_layers",
        **DATA_TRAIN_ALIASES,
    }
