"""Training: the trainer (``trainer``: AdamW, early stopping that restores the best epoch, gate
learning rate) and the OACD Phase 1 pretrainer of context-KV models (``oacd``)."""

from memkit.training.oacd import OACDPretrainer, OACDSpec, effective_rank, oacd_loss
from memkit.training.trainer import TrainSpec, evaluate, train

__all__ = ["OACDPretrainer", "OACDSpec", "TrainSpec", "effective_rank", "evaluate", "oacd_loss", "train"]
