"""Synthetic tasks; each config lives beside its generator."""

from memkit.tasks.recall import RecallTask

__all__ = ["RecallTask"]
