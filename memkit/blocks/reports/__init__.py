"""The reports' code, reproduced as named options (docs/design.md, the reports' options).

Everything here exists only to run the layer as the reports' code ran it; the careful modules of
memkit/blocks/ hold no branch on it. ``ReportsSpec`` (parts.py) is the one sub-spec of
``MemoryAttentionSpec`` that sets it, and hands the layer's builder the parts it changes:
``local`` (the clamped linear local branch), ``segmentation`` (each call one segment), ``selector``
(σ(q) scores, whole-call selection, unwritten memories kept), ``landmark`` (report 000's per-head HSA
over the last raw keys), ``gate`` (the expansion gate on the coarse read), ``batch_shared`` (one memory
for the whole batch, carried across steps), and the NaN guard.
"""
