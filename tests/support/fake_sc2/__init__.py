"""A stand-in StarCraft II install for tests (see ``fake_game.py``)."""
