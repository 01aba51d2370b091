"""Evaluation: statistics over seeds (``stats``: bootstrap intervals, paired differences, solve
rates), metrics over next-token predictions (``metrics``: perplexity, position-wise
perplexity, accuracy by segment, completion scores, peak memory) and synthetic tasks with their configs beside their
generators (``tasks``: recall / MQAR, zoology's MQAR, passkey, reversal curse, memory selection accuracy), whether a
model's memory is used (``memory_use``: knock-outs, gates, shares, selection entropy) and the tables of grid rows
(``tables``)."""

from memkit.eval.memory_use import (
    gate_figures,
    knockout_figures,
    memory_use_figures,
    position_gain_figures,
    share_figures,
)
from memkit.eval.metrics import accuracy_by_segment, completion_scores, peak_memory_mb, position_buckets, position_ppl
from memkit.eval.tasks.mqar import MQARTask
from memkit.eval.tasks.passkey import PasskeyTask, accuracy_by_depth
from memkit.eval.tasks.recall import RecallTask, accuracy_by_distance
from memkit.eval.tasks.reversal import ReversalTask
from memkit.eval.tasks.selection import selection_accuracy

__all__ = ["MQARTask", "gate_figures", "knockout_figures", "memory_use_figures", "position_gain_figures",
           "share_figures", "PasskeyTask", "RecallTask", "ReversalTask", "accuracy_by_depth", "accuracy_by_distance", "accuracy_by_segment",
           "completion_scores", "peak_memory_mb", "position_buckets", "position_ppl", "selection_accuracy"]
