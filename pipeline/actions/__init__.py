"""Stage 3, a player's inputs as pysc2 actions, read from the replay file.

``action`` defines :class:`Action` (one input in pysc2's action space) and
``no_op``; ``player_inputs`` converts the game events of each player into
actions and per-player streams; ``ability_table`` maps replay ability links to
pysc2 functions (the committed table in ``data/``).

Imports: ``pipeline.replay``, ``pipeline.index``.
"""
