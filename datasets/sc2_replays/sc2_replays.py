"""TFDS dataset ``sc2_replays``: its definition and the metadata over a run.

Why this module exists: it defines the dataset (configs, description,
citation, version, supervised keys) and *prepares* it -- writes the TFDS
metadata (``dataset_info.json``, ``features.json``, ``metadata.json``) over a
pipeline output, with no copy of any sample.  It is not needed to *read* the
dataset: the metadata is standard, so ``tfds.builder_from_directory`` and
``tfds.load``/``tfds.builder`` read it through TFDS's own reader in a process
that never imports this package (``schemas.tfds_features`` says how, and
TFDS imports that module by itself).  This package's top-level name
(``datasets``) collides with Hugging Face's; readers should not import it.

How the metadata reads the run's shards in place: each split's
``filename_template`` is the pipeline's shard path relative to the dataset
directory (``../../../../tfrecord/{SPLIT}/{SPLIT}-{SHARD_X_OF_Y}.tfrecord.gz``
under ``DIR/tfds/sc2_replays/<config>/<version>``), checked at preparation
against every shard the manifest lists, and ``shard_lengths`` are the
manifest's records per shard, so TFDS's split slicing (``train[:10%]``) and
``+`` work.  ``DIR`` can be moved or renamed whole.

    tfds.load("sc2_replays", data_dir="DIR/tfds", split="train[:10%]")
    sc2-tfds-build --data DIR --out TFDS_DIR
"""
from __future__ import annotations

import dataclasses
import os
import posixpath

import tensorflow_datasets as tfds
from tensorflow_datasets.core.dataset_builder import FileReaderBuilder
from tensorflow_datasets.core.utils import file_utils

from schemas.run_output import EXTENSIONS, RunOutput, RunOutputError, open_run
from schemas.sample import Group, SampleSchema

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
  sc2-pipeline --replays REPLAYS_DIR --out DIR --engine events
(it prepares this dataset in DIR/tfds itself), or point the builder's manual
dir at DIR:
  sc2-tfds-build --data DIR --out TFDS_DIR
"""

#: The TFRecord shards as TFDS names them: ``DIR``-relative, the split and
#: shard numbers as TFDS's template variables.  Checked against every
#: shard path of the manifest (``schemas.run_output``) when preparing.
SHARD_TEMPLATE = "tfrecord/{SPLIT}/{SPLIT}-{SHARD_X_OF_Y}" + EXTENSIONS["tfrecord"]


class Sc2ReplaysConfig(tfds.core.BuilderConfig):
    """A variant: observation source and resolution."""

    def __init__(self, *, source: str, resolution: int, **kwargs):
        super().__init__(**kwargs)
        self.source = source
        self.resolution = resolution

    @property
    def schema(self) -> SampleSchema:
        return SampleSchema(self.resolution, self.resolution)


def config_name(source: str, resolution: int) -> str:
    """``events_64``: the config of a source at a resolution."""
    return f"{source}_{resolution}"


def _config(source: str, resolution: int, what: str) -> Sc2ReplaysConfig:
    return Sc2ReplaysConfig(name=config_name(source, resolution), source=source,
                            resolution=resolution, description=what)


def supervised_keys(schema: SampleSchema):
    """(observation, (target, value label)), as nested feature names."""
    observation = {f.name: f.name for f in schema.fields if f.group == Group.OBSERVATION
                   and f.is_array}
    target = {f.name: f.name for f in schema.fields if f.group == Group.TARGET}
    return observation, (target, "value")


def check_run(run: RunOutput, config: Sc2ReplaysConfig) -> None:
    """:class:`RunOutputError`, one line naming the manifest, unless ``run``
    can back ``config``: it holds samples, in TFRecord shards, of the
    config's source and schema, and its shards hold what it counts."""
    where, manifest = run.layout.manifest, run.manifest
    counts = manifest.counts
    if counts.samples_total <= 0:
        status = ", ".join(f"{n} {s}" for s, n in sorted(counts.replays_by_status.items()) if n)
        raise RunOutputError(
            f"{where}: the run holds no samples ({counts.input_files} input files: "
            f"{status or 'none read'}); a TFDS dataset needs at least one")
    if "tfrecord" not in manifest.formats:
        raise RunOutputError(f"{where}: the run wrote no TFRecord shards (formats: "
                             f"{', '.join(manifest.formats) or 'none'}; rerun "
                             "beam_runner.py with --formats including tfrecord)")
    source = manifest.source
    if (source.name, source.resolution) != (config.source, config.resolution):
        raise RunOutputError(
            f"{where}: the run holds source={source.name} resolution={source.resolution}; "
            f"builder config {config.name} wants source={config.source} "
            f"resolution={config.resolution}")
    if manifest.schema.repr != repr(config.schema):
        raise RunOutputError(f"{where}: schema {manifest.schema.repr} != {config.schema!r} "
                             f"(builder config {config.name})")
    for split in manifest.split_names():
        listed = sum(s.num_samples for s in manifest.shard_files("tfrecord", split))
        if listed != manifest.split_samples(split):
            raise RunOutputError(f"{where}: split {split} counts "
                                 f"{manifest.split_samples(split)} samples but its "
                                 f"TFRecord shards list {listed}")


def relative_path(target: str, start: str) -> str:
    """``target`` relative to the directory ``start`` (``/``-separated).
    Both local, or both under one ``scheme://bucket``; otherwise TFDS's
    templates (joined to the dataset directory) cannot name it."""
    if "://" not in target and "://" not in start:
        return os.path.relpath(target, start).replace(os.sep, "/")
    t_root, _, t_path = target.partition("://")[2].partition("/")
    s_root, _, s_path = start.partition("://")[2].partition("/")
    if target.partition("://")[0] != start.partition("://")[0] or t_root != s_root:
        raise RunOutputError(f"{target}: not on the filesystem or bucket of the TFDS "
                             f"data dir {start}; prepare the dataset beside the output")
    return posixpath.relpath("/" + t_path, "/" + s_path)


def split_infos(run: RunOutput, builder_dir: str, name: str
                ) -> list[tfds.core.SplitInfo]:
    """The SplitInfo of every split with samples: shard lengths and bytes
    from the manifest, and a filename template naming the run's own
    shards relative to ``builder_dir`` (the final dataset directory).
    :class:`RunOutputError` if a listed shard is not where it names."""
    up = relative_path(run.root, builder_dir)
    template = posixpath.join(up, SHARD_TEMPLATE)
    infos = []
    for split in run.manifest.split_names():
        files = run.manifest.shard_files("tfrecord", split)
        named = tfds.core.ShardedFileTemplate(
            data_dir=builder_dir, template=template, dataset_name=name, split=split,
            filetype_suffix="tfrecord")
        for index, entry in enumerate(files):
            path = named.relative_filepath(shard_index=index, num_shards=len(files))
            if posixpath.normpath(path) != posixpath.normpath(posixpath.join(up, entry.path)):
                raise RunOutputError(
                    f"{run.layout.path(entry.path)}: shard {index} of {len(files)} of split "
                    f"{split}; TFDS's template {template} names {path} for it")
        infos.append(tfds.core.SplitInfo(
            name=split, shard_lengths=[s.num_samples for s in files],
            num_bytes=sum(s.bytes for s in files), filename_template=named))
    return infos


class Sc2Replays(FileReaderBuilder):
    """SC2LE-style replay samples: TFDS metadata over the pipeline's shards."""

    VERSION = tfds.core.Version("1.3.0")
    RELEASE_NOTES = {
        "1.3.0": "Standard TFDS metadata, the same examples: each split's "
                 "filename template names the pipeline's own GZIP TFRecord shards "
                 "relative to the dataset directory, so tfds.builder_from_directory "
                 "and tfds.load read the dataset with TFDS's own reader and without "
                 "this package imported (schemas.tfds_features, which TFDS imports "
                 "to restore the features, lets that reader open .gz shards); split "
                 "slicing ('train[:10%]') works. The data dir's default config is "
                 "the one prepared last. Preparing refuses a run with no samples.",
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

    #: The output's path to record in the metadata when it is prepared
    #: elsewhere (beam_runner.py's staging directory); else the manual dir.
    recorded_output: str | None = None

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

    def get_default_builder_config(self) -> Sc2ReplaysConfig | None:
        """When preparing, the config being prepared: the data dir's default
        (``.config/metadata.json``), so that ``tfds.load("sc2_replays")``
        finds a run's only config without the code that defines it."""
        return getattr(self, "_builder_config", None) or super().get_default_builder_config()

    def _download_and_prepare(self, dl_manager: tfds.download.DownloadManager,
                              download_config: tfds.download.DownloadConfig) -> None:
        del download_config
        manual = os.fspath(dl_manager.manual_dir)
        run = open_run(manual if "://" in manual else os.path.abspath(manual))
        check_run(run, self.builder_config)
        manifest = run.manifest
        # The final directory (self.data_dir is a sibling work directory now).
        builder_dir = os.fspath(file_utils.get_dataset_dir(
            self.data_dir_root, self.name, self.builder_config.name, self.version))
        self.info.metadata.update({
            "provenance": {"source": dataclasses.asdict(manifest.source),
                           "schema": dataclasses.asdict(manifest.schema),
                           "filters": manifest.filters, "splits": manifest.splits,
                           "packages": manifest.packages},
            "counts": dataclasses.asdict(manifest.counts),
            "labels": manifest.labels,
            "pipeline_output": self.recorded_output or run.root,
        })
        self.info.set_splits(tfds.core.SplitDict(split_infos(run, builder_dir, self.name)))


def open_for(pipeline_output: str, config: str | None = None
             ) -> tuple[RunOutput, Sc2ReplaysConfig]:
    """The run at ``pipeline_output`` and the builder config it backs
    (``config``, or the one matching its source and resolution), checked
    with :func:`check_run`."""
    run = open_run(pipeline_output)
    name = config or config_name(run.manifest.source.name, run.manifest.source.resolution)
    configs = Sc2Replays.builder_configs
    if name not in configs:
        raise RunOutputError(f"{run.layout.manifest}: no sc2_replays config {name} "
                             f"(configs: {', '.join(configs)})")
    check_run(run, configs[name])
    return run, configs[name]
