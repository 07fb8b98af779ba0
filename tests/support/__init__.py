"""Test helpers, never collected as tests nor used by library code: synthetic
bad inputs (``bad_replays``), Beam test doubles (``beam_doubles``), the
trainer's tiny synthetic shards (``trainer_synthetic``) and a stand-in
StarCraft II install (``fake_sc2``).  Import them as ``support.<name>``
(``tests/`` is on ``sys.path``, see ``conftest.py``)."""
