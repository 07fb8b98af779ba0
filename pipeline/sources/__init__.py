"""Stage 5, observation sources: one replay to schema samples for each player.

``interface`` is the contract both sources implement; ``events`` is the
engine-free source (tracker events plus the player's inputs, any game
version); ``sc2`` is the headless StarCraft II game through pysc2 (the paper's
feature layers). The two source packages do not import each other;
``registry`` names them (``--engine``) and builds the one a run chose.

Imports: ``pipeline.replay``, ``pipeline.index``, ``pipeline.actions``,
``pipeline.sampling``.
"""
