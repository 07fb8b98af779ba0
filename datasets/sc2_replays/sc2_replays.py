"""TFDS dataset ``sc2_replays``: SC2LE-style supervised samples from replays.

One copy of the data: this builder does not copy or re-encode samples.
Preparing it reads the pipeline's manifest (``DIR/manifest.json``, the
builder's *manual dir*), checks that the output matches the builder config,
and writes only TFDS metadata (``dataset_info.json``, ``features.json``,
split sizes, provenance).  Reading it streams the pipeline's own GZIP TFRecord
shards (``DIR/tfrecord/<split>/*.tfrecord.gz``) where they lie and decodes
them with the features of ``SampleSchema.tfds_features()`` -- the compact
layers through ``schemas.tfds_features.CompactTensor``.  ``beam_runner.py``
prepares it in ``DIR/tfds`` at the end of every run with TFRecord output; the
metadata names the shards relative to itself, so ``DIR`` can be moved whole.
The stable key of an example is ``schemas.sample.sample_key``
(``{replay_id}_{player}_{loop}``), from its own fields.

    import datasets.sc2_replays  # registers the builder
    tfds.load("sc2_replays", data_dir="DIR/tfds", split="train", try_gcs=False)
    python -m datasets.sc2_replays.build --pipeline_output DIR --data_dir TFDS_DIR
"""
from __future__ import annotations

import json
import os
from typing import Any

import tensorflow_datasets as tfds
from etils import epath
# TFDS' lazy module: TensorFlow loads on first use (reading), not when the
# metadata is prepared, so beam_runner.py never pays its ~4 s import.
from tensorflow_datasets.core.utils.lazy_imports_utils import tensorflow as tf

from schemas.sample import SPLITS, Group, SampleSchema

_DESCRIPTION = """\
Supervised learning data from StarCraft II replays, reproducing section 5 of
the SC2LE paper (Vinyals et al. 2017): each example is one (replay, player,
game loop) sampled every `step_mul` (8) game loops. The observation holds the
pysc2 feature layers (minimap and screen), the player vector and the mask of
available actions (the union over the window); the target is the first action
the player issued in the window (`no_op` if none) with its arguments; the value
label is 1 if the player won. Splits are assigned by a hash of the replay id,
so both players and every loop of a game are in one split. Layers the
observation source cannot know are zeros and named in `unavailable_layers`.
Provenance (observation source, fog of war, filters, package versions, counts)
is in the dataset metadata, copied from the pipeline's manifest.
"""

_CITATION = """\
@article{vinyals2017starcraft,
  title   = {StarCraft II: A New Challenge for Reinforcement Learning},
  author  = {Vinyals, Oriol and Ewalds, Timo and Bartunov, Sergey and Georgiev, Petko
             and Vezhnevets, Alexander Sasha and Yeo, Michelle and Makhzani, Alireza
             and K{\\"u}ttler, Heinrich and Agapiou, John and Schrittwieser, Julian
             and others},
  journal = {arXiv preprint arXiv:1708.04782},
  year    = {2017}
}
"""

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Run the pipeline first, e.g.
  python beam_runner.py --replays REPLAYS_DIR --output DIR --engine events
then point the builder's manual dir at DIR
  python -m datasets.sc2_replays.build --pipeline_output DIR --data_dir TFDS_DIR
"""


class MismatchError(ValueError):
    """The pipeline output does not match the builder config."""


class Sc2ReplaysConfig(tfds.core.BuilderConfig):
    """A variant: observation source and resolution."""

    def __init__(self, *, source: str, resolution: int, **kwargs):
        super().__init__(**kwargs)
        self.source = source
        self.resolution = resolution

    @property
    def schema(self) -> SampleSchema:
        return SampleSchema(self.resolution, self.resolution)


def _config(source: str, resolution: int, what: str) -> Sc2ReplaysConfig:
    return Sc2ReplaysConfig(name=f"{source}_{resolution}", source=source,
                            resolution=resolution, description=what)


def supervised_keys(schema: SampleSchema):
    """(observation, (target, value label)), as nested feature names."""
    observation = {f.name: f.name for f in schema.fields if f.group == Group.OBSERVATION
                   and f.is_array}
    target = {f.name: f.name for f in schema.fields if f.group == Group.TARGET}
    return observation, (target, "value")


class Sc2Replays(tfds.core.DatasetBuilder):
    """SC2LE-style replay samples, read from the pipeline's TFRecord shards."""

    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {
        "1.2.0": "Reads the pipeline's shards in place (no second copy). Feature "
                 "layers and the action mask are stored as compact byte strings "
                 "(schemas.layer_codec: empty when all zeros, else run-length or "
                 "raw) and decode to the same dense tensors as before. A window's "
                 "target is always the player's first input: an input the source "
                 "cannot express gives function_id -2 (target unknown, every "
                 "argument -2 too) instead of the next input or no_op; an argument "
                 "the source cannot derive (the screen point of a selection whose "
                 "units' positions are unknown) is -2, distinct from -1 (unused).",
        "1.1.0": "Adds 'score': the 20 score entries (pysc2 score_cumulative "
                 "collection rates and score_by_category used / killed / lost "
                 "minerals and vespene by army, economy and technology) that "
                 "both sources fill.",
        "1.0.0": "Initial release: engine-free and headless-game sources, 64x64 and "
                 "32x32 feature layers, sampling every 8 game loops.",
    }
    BUILDER_CONFIGS = [
        _config("events", 64, "Engine-free source (tracker events + player inputs), 64x64."),
        _config("sc2", 64, "Headless StarCraft II through pysc2, 64x64."),
        _config("events", 32, "Engine-free source, 32x32 (smaller, for quick experiments)."),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        schema = self.builder_config.schema
        return tfds.core.DatasetInfo(
            builder=self,
            description=_DESCRIPTION,
            features=schema.tfds_features(),
            supervised_keys=supervised_keys(schema),
            homepage="https://arxiv.org/abs/1708.04782",
            citation=_CITATION,
            metadata=tfds.core.MetadataDict(),
        )

    def _read_manifest(self, pipeline_output: str) -> dict[str, Any]:
        path = os.path.join(pipeline_output, "manifest.json")
        if not epath.Path(path).exists():
            raise MismatchError(f"{path}: no manifest (not a finished beam_runner.py output)")
        manifest = json.loads(epath.Path(path).read_text())
        cfg = self.builder_config
        if manifest["source"]["name"] != cfg.source or \
                manifest["source"]["resolution"] != cfg.resolution:
            raise MismatchError(
                f"{pipeline_output} holds source={manifest['source']['name']} resolution="
                f"{manifest['source']['resolution']}; builder config {cfg.name} wants "
                f"source={cfg.source} resolution={cfg.resolution}")
        if manifest["schema"]["repr"] != repr(cfg.schema):
            raise MismatchError(f"schema {manifest['schema']['repr']} != {cfg.schema!r}")
        if "tfrecord" not in manifest["config"]["formats"]:
            raise MismatchError("the pipeline output has no TFRecord shards "
                                "(run it with --formats including tfrecord)")
        return manifest

    def _download_and_prepare(self, dl_manager: tfds.download.DownloadManager,
                              download_config: tfds.download.DownloadConfig) -> None:
        del download_config
        pipeline_output = os.path.abspath(os.fspath(dl_manager.manual_dir))
        manifest = self._read_manifest(pipeline_output)
        shards = manifest["shards"].get("tfrecord", {})
        # Shard paths are relative to the output the manifest names (a moved
        # or staged DIR keeps them right).
        named_output = manifest.get("output_dir") or pipeline_output
        self.info.metadata.update({
            "provenance": {k: manifest[k] for k in ("source", "filters", "splits",
                                                    "packages", "schema")},
            "counts": manifest["counts"],
            "labels": manifest["labels"],
            "pipeline_output": getattr(self, "recorded_output", None) or pipeline_output,
            # The shards relative to this dataset directory (a moved DIR still reads).
            "pipeline_output_relative": os.path.relpath(pipeline_output,
                                                        os.fspath(self.data_dir)),
            "shards": {split: [os.path.relpath(s["path"], named_output)
                               if os.path.isabs(s["path"]) else s["path"]
                               for s in shards.get(split, [])] for split in SPLITS},
        })
        split_infos = []
        for split in SPLITS:
            entries = shards.get(split, [])
            if entries:
                split_infos.append(tfds.core.SplitInfo(
                    name=split, shard_lengths=[int(s["num_samples"]) for s in entries],
                    num_bytes=sum(int(s.get("bytes", 0)) for s in entries)))
        self.info.set_splits(tfds.core.SplitDict(split_infos))

    # ------------------------------------------------------------- reading
    def pipeline_output(self) -> str:
        """The pipeline output directory whose shards this dataset reads."""
        meta = self.info.metadata
        relative = os.path.normpath(os.path.join(os.fspath(self.data_dir),
                                                 meta["pipeline_output_relative"]))
        if epath.Path(relative, "manifest.json").exists():
            return relative
        return meta["pipeline_output"]

    def split_files(self, split: str) -> list[str]:
        """The TFRecord shards of ``split`` (a split name, or names joined by '+')."""
        names = [n.strip() for n in str(split).split("+")]
        unknown = [n for n in names if n not in self.info.splits]
        if unknown:
            raise ValueError(f"split {split!r}: {unknown} not in {sorted(self.info.splits)} "
                             "(slices such as 'train[:10%]' are not supported; use "
                             "Dataset.take/shard)")
        root = self.pipeline_output()
        return [os.path.join(root, rel) for n in names for rel in self.info.metadata["shards"][n]]

    def _as_dataset(self, split: Any, decoders: Any = None,
                    read_config: tfds.ReadConfig | None = None,
                    shuffle_files: bool = False) -> tf.data.Dataset:
        read_config = read_config or tfds.ReadConfig()
        files = self.split_files(split)
        ds = tf.data.Dataset.from_tensor_slices(files)
        if shuffle_files:
            ds = ds.shuffle(len(files), seed=read_config.shuffle_seed,
                            reshuffle_each_iteration=read_config.shuffle_reshuffle_each_iteration
                            is not False)
        cycle = read_config.interleave_cycle_length
        ds = ds.interleave(
            lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP", buffer_size=1 << 20),
            cycle_length=cycle if isinstance(cycle, int) else 16,   # TFDS' default: 'missing'
            block_length=read_config.interleave_block_length,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        features = self.info.features
        parser = tfds.core.example_parser.ExampleParser(features.get_serialized_info())

        def decode(serialized):
            return features.decode_example(parser.parse_example(serialized), decoders=decoders)

        return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
