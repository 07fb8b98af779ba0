"""The headless StarCraft II source through pysc2 (the paper's feature layers).

``source`` (``SC2ObservationSource``) replays a game in the binary and reads
pysc2's observations; ``game_process`` owns one game process per worker
(start, restart, retries); ``versions`` picks the binary and data version a
replay needs (the committed table in ``data/``).

Imports: ``pipeline.sources.interface`` and the stages before ``sources``.
"""
