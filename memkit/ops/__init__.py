"""Pure tensor functions of the memory maths: ``memory`` (batched reads and writes, local attention)
beside ``naive`` (per-token loops, the reference every fast path is tested against); ``delta`` (the chunked
delta rule and gated delta rule of the DeltaNet baselines); ``cross_entropy``: the
loss at scored positions only (its reference is ``memkit.eval.metrics.masked_loss``)."""

from memkit.ops.cross_entropy import scored_cross_entropy

__all__ = ["scored_cross_entropy"]
