"""Stage 2, the replay index: one row per replay and per player, and the filters.

``scan`` turns an archive into index rows (or an error record) and writes the
index tables; ``filters`` decides which replays are sampled; ``apm`` measures
actions per minute from game events; ``splits`` assigns each replay to
train/validation/test by a hash of its id; ``player_context`` is what the index
hands an observation source about each player; ``scan_cli`` is the scan-only
command line.

Imports: ``pipeline.replay``.
"""
