"""TFDS dataset ``sc2_replays``: SC2LE-style supervised samples from replays.

This builder does not run the pipeline: it reads the TFRecord shards that
``beam_runner.py`` wrote (``DIR/tfrecord/<split>/*.tfrecord.gz``) and the
manifest (``DIR/manifest.json``) for provenance, where ``DIR`` is the
builder's *manual dir*.  Features come from ``SampleSchema.tfds_features()``;
example keys are ``schemas.sample.sample_key`` (``{replay_id}_{player}_{loop}``).

    python -m datasets.sc2_replays.build --pipeline_output DIR --data_dir TFDS_DIR
    import datasets.sc2_replays  # registers the builder
    tfds.load("sc2_replays", data_dir=TFDS_DIR, split="train", try_gcs=False)
"""
from __future__ import annotations

import json
import os
from typing import Any

import tensorflow_datasets as tfds

from schemas.sample import SPLITS, Group, SampleSchema, sample_key

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


class Sc2Replays(tfds.core.GeneratorBasedBuilder):
    """SC2LE-style replay samples, from the pipeline's TFRecord shards."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
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
        return self.dataset_info_from_configs(
            description=_DESCRIPTION,
            features=schema.tfds_features(),
            supervised_keys=supervised_keys(schema),
            homepage="https://arxiv.org/abs/1708.04782",
            citation=_CITATION,
            metadata=tfds.core.MetadataDict(),
        )

    def _read_manifest(self, pipeline_output: str) -> dict[str, Any]:
        path = os.path.join(pipeline_output, "manifest.json")
        with tfds.core.Path(path).open("r") as f:
            manifest = json.load(f)
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

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        pipeline_output = os.fspath(dl_manager.manual_dir)
        manifest = self._read_manifest(pipeline_output)
        self.info.metadata.update({
            "provenance": {k: manifest[k] for k in ("source", "filters", "splits",
                                                    "packages", "schema")},
            "counts": manifest["counts"],
            "labels": manifest["labels"],
            "pipeline_output": pipeline_output,
        })
        shards = manifest["shards"]["tfrecord"]
        generators = {}
        for split in SPLITS:
            files = [os.path.join(pipeline_output, "tfrecord", split,
                                  os.path.basename(s["path"]))
                     for s in shards.get(split, [])]
            if files:
                generators[split] = self._generate_examples(files)
        return generators

    def _generate_examples(self, files: list[str]):
        # Here, not at the top: it imports apache_beam (~2 s), which tfds.load never needs.
        from pipeline.output.writers import read_tfrecord_file
        schema = self.builder_config.schema
        for path in files:
            for record in read_tfrecord_file(path):
                sample = schema.from_example(record)
                yield sample_key(sample["replay_id"], sample["player_id"],
                                 sample["game_loop"]), sample
