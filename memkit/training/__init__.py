"""Training: the trainer (``trainer``: AdamW, early stopping that restores the best epoch, gate
learning rate), the OACD Phase 1 pretrainer of context-KV models (``oacd``), and the figures a trained model
is reported with (``figures``: what the recipes and ``python -m memkit.evaluate`` print)."""

from memkit.training.figures import (
    mqar_figures,
    passkey_figures,
    perplexity_figures,
    position_figures,
    reversal_figures,
)
from memkit.training.oacd import OACDPretrainer, OACDSpec, effective_rank, oacd_loss
from memkit.training.trainer import TrainSpec, evaluate, train

__all__ = ["OACDPretrainer", "OACDSpec", "TrainSpec", "effective_rank", "evaluate", "mqar_figures", "oacd_loss",
           "passkey_figures", "perplexity_figures", "position_figures", "reversal_figures", "train"]
