"""The ``sc2_replays`` TFDS dataset's definition and preparation.

Importing this package registers the builder with TFDS; reading the dataset
does not need it (``tfds.load("sc2_replays", data_dir="DIR/tfds")`` and
``tfds.builder_from_directory`` read the standard metadata on their own).
"""
from datasets.sc2_replays.sc2_replays import Sc2Replays, Sc2ReplaysConfig

__all__ = ["Sc2Replays", "Sc2ReplaysConfig"]
