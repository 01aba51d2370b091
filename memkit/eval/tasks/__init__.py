"""Synthetic tasks; each config lives beside its generator."""

from memkit.eval.tasks.recall import RecallTask

__all__ = ["RecallTask"]
