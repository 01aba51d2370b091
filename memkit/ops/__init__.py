"""Pure tensor functions of the memory maths: ``memory`` (batched reads and writes, local attention)
beside ``naive`` (per-token loops, the reference every fast path is tested against)."""
