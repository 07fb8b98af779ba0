"""Stage 4, the SC2LE sampling rule and sample assembly, shared by both sources.

``rule`` turns one player's action stream and availability into windows every
``step_mul`` loops (first action as target, union of available actions as the
mask); ``assembly`` turns windows plus observations into schema samples.

Imports: ``pipeline.actions`` (and ``schemas``).
"""
