"""The ``sc2_replays`` TFDS dataset; importing this package registers it."""
from datasets.sc2_replays.sc2_replays import Sc2Replays, Sc2ReplaysConfig

__all__ = ["Sc2Replays", "Sc2ReplaysConfig"]
