"""The public contract of a pipeline run's output: its layout and its manifest.

A run of ``beam_runner.py --out DIR`` leaves::

    DIR/manifest.json                                   Manifest (this module), JSON
    DIR/README.md                                       the dataset card, from the manifest
    DIR/parquet/<split>/<split>-NNNNN-of-MMMMM.parquet  samples, zstd Parquet
    DIR/tfrecord/<split>/<split>-NNNNN-of-MMMMM.tfrecord.gz
                                                        the same samples, GZIP TFRecord
    DIR/index/replays.parquet, players.parquet          one row per input replay / player
    DIR/errors/errors.parquet                           one row per failed file
    DIR/tfds/sc2_replays/<config>/<version>/            TFDS metadata over the TFRecord shards

Everything that writes or reads one goes through here: the pipeline writes
the manifest with :meth:`Manifest.save` and names files with
:class:`RunLayout`; the trainers, the TFDS preparation, baselines and
inference open it with :func:`open_run` (or :meth:`Manifest.load`).  No other
module opens ``manifest.json`` or spells a shard path.  Anything that is not
a usable run output -- no manifest, unreadable JSON, a manifest of another
format version, a field of the wrong type -- is a :class:`RunOutputError`
whose one line names the file.

Format versions.  1: shard paths absolute (as the run wrote them); still
read, their paths made relative to the output.  2: shard paths relative to
the output directory (an output can be moved or copied whole), first files
of each error and filter category, provenance (command line, code version).
Fields added later within version 2 have defaults, so earlier version-2
manifests still load: per-split matchups and builds, empty splits with their
cause, and the run's outcome (failed or not, and why).
"""
from __future__ import annotations

import dataclasses
import json
import posixpath
from typing import Any, Iterator, Mapping

from pipeline import filesystem
from schemas import layer_codec
from schemas.sample import SPLITS, SampleSchema, SchemaError, schema_from_repr

#: The manifest format this code writes, and the ones it reads.
FORMAT_VERSION = 2
READABLE_VERSIONS: tuple[int, ...] = (1, 2)

#: What a model needs to know about how samples were made (a trained run
#: records these, and refuses data made otherwise).
DATA_CONFIG_KEYS: tuple[str, ...] = ("source_name", "resolution", "step_mul", "fog")

MANIFEST_NAME = "manifest.json"
CARD_NAME = "README.md"
FORMATS: tuple[str, ...] = ("parquet", "tfrecord")
EXTENSIONS: Mapping[str, str] = {"parquet": ".parquet", "tfrecord": ".tfrecord.gz"}
#: Top-level entries of an output directory (a directory holding anything
#: else is never replaced by a run: pipeline.output.run_directory).
TOP_LEVEL: frozenset[str] = frozenset({MANIFEST_NAME, CARD_NAME, "index", "errors",
                                       *FORMATS, "tfds", "_tmp"})


class RunOutputError(Exception):
    """Not a usable run output; the message is one line naming the file."""


# ------------------------------------------------------------------ layout
def shard_name(split: str, index: int, count: int, fmt: str) -> str:
    """``train-00003-of-00012.parquet``: the name of one shard of a split."""
    return f"{split}-{index:05d}-of-{count:05d}{EXTENSIONS[fmt]}"


def shard_relpath(fmt: str, split: str, index: int, count: int) -> str:
    """A shard's path relative to the output directory (``/``-separated)."""
    return posixpath.join(fmt, split, shard_name(split, index, count, fmt))


@dataclasses.dataclass(frozen=True)
class RunLayout:
    """Where each part of a run output lies under ``root`` (local or ``gs://``)."""
    root: str

    def path(self, relative: str) -> str:
        """A path relative to the output (``/``-separated) under ``root``."""
        return filesystem.join(self.root, *relative.split("/"))

    @property
    def manifest(self) -> str:
        return self.path(MANIFEST_NAME)

    @property
    def card(self) -> str:
        return self.path(CARD_NAME)

    @property
    def index_dir(self) -> str:
        return self.path("index")

    @property
    def replays_index(self) -> str:
        return self.path("index/replays.parquet")

    @property
    def players_index(self) -> str:
        return self.path("index/players.parquet")

    @property
    def errors_dir(self) -> str:
        return self.path("errors")

    @property
    def errors_file(self) -> str:
        return self.path("errors/errors.parquet")

    @property
    def tfds_dir(self) -> str:
        """The TFDS ``data_dir`` (``tfds.load('sc2_replays', data_dir=...)``)."""
        return self.path("tfds")

    @property
    def tmp_dir(self) -> str:
        """Work files of a running job (batches); gone from a finished output."""
        return self.path("_tmp")

    def batch_path(self, replay_id: str) -> str:
        """One replay's batch file (Arrow IPC) while the job runs."""
        return self.path(f"_tmp/batches/{replay_id}.arrow")

    def shard_dir(self, fmt: str, split: str) -> str:
        return self.path(f"{fmt}/{split}")

    def shard_path(self, fmt: str, split: str, index: int, count: int) -> str:
        return self.path(shard_relpath(fmt, split, index, count))


# --------------------------------------------------------------- manifest
@dataclasses.dataclass
class ShardFile:
    """One shard: its path relative to the output, records and bytes."""
    path: str
    num_samples: int
    bytes: int = 0


@dataclasses.dataclass
class SourceInfo:
    """The observation source that made the samples."""
    name: str
    factory: str                    # module:class of the source
    options: dict[str, Any]
    unavailable_layers: list[str]   # sample fields the source cannot fill (zeros)
    fog: bool
    step_mul: int
    resolution: int


@dataclasses.dataclass
class SchemaInfo:
    """The sample schema: ``repr(SampleSchema(...))``, its field names and
    the version of the layers' byte format (``schemas.layer_codec``), which
    TFRecord files, having no metadata of their own, cannot carry."""
    repr: str
    num_fields: int
    fields: list[str]
    layer_encoding_version: int = layer_codec.FORMAT_VERSION


@dataclasses.dataclass
class Counts:
    """What went in and what came out."""
    input_files: int
    replays_by_status: dict[str, int]          # sampled, filtered, error, duplicate
    filter_reasons: dict[str, int]
    error_reasons: dict[str, int]              # "stage:category" -> files
    replays_by_split: dict[str, int]
    samples_counted_by_split: dict[str, int]
    samples_by_split_and_format: dict[str, dict[str, int]]
    shards_by_split: dict[str, int]
    samples_total: int
    shard_bytes_by_format: dict[str, int]
    shard_bytes_per_sample: dict[str, float]
    degraded_replays: dict[str, int]
    #: sampled replays per split by matchup ("PvT"; "other" for games that
    #: are not two teams) and by game version ("5.0.8.86383")
    matchups_by_split: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    builds_by_split: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Outcome:
    """Whether the run made what it was asked for.  A failed run's output is
    still published (its index, errors and card are the evidence) and
    ``beam_runner.py`` exits non-zero with ``reason`` as its last line;
    readers should refuse to train on it."""
    failed: bool = False
    reason: str = ""                         # one line; "" when the run did not fail
    #: ``--max_error_fraction`` (None: only a run that sampled nothing fails)
    max_error_fraction: float | None = None


def _typed(cls, data: Any, where: str):
    """``cls(**data)`` for a dataclass, with one-line errors naming ``where``."""
    if not isinstance(data, Mapping):
        raise RunOutputError(f"{where}: expected an object for {cls.__name__}, "
                             f"got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING}
    missing = sorted(required - set(data))
    if missing:
        raise RunOutputError(f"{where}: {cls.__name__} lacks {', '.join(missing)}")
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclasses.dataclass
class Manifest:
    """``DIR/manifest.json``: configuration, versions, provenance, counts,
    label statistics, shards and timing of one run."""
    created_unix: float
    output_dir: str                  # where the run was published
    config: dict[str, Any]           # the run's configuration (beam_runner.py flags)
    packages: dict[str, str]
    schema: SchemaInfo
    source: SourceInfo
    filters: dict[str, Any]
    splits: dict[str, float]         # the split fractions asked for
    counts: Counts
    labels: dict[str, Any]           # label statistics (pipeline.output.manifest)
    duplicates: list[dict[str, Any]]
    shards: dict[str, dict[str, list[ShardFile]]]   # format -> split -> shards
    degraded: list[dict[str, Any]]
    timing: dict[str, Any] = dataclasses.field(default_factory=dict)
    metrics: dict[str, int] = dataclasses.field(default_factory=dict)
    tfds: dict[str, str] | None = None
    #: the first file of each error category ("stage:category") and filter reason
    examples: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    #: how the run was made: command line, code version
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: splits asked for (fraction > 0) that hold no samples -> why, one line
    #: (e.g. "11 replays at 5% expect 0.55; use --splits ...")
    empty_splits: dict[str, str] = dataclasses.field(default_factory=dict)
    outcome: Outcome = dataclasses.field(default_factory=Outcome)
    format_version: int = FORMAT_VERSION

    # ------------------------------------------------------------- JSON
    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)

    @classmethod
    def from_json(cls, data: Any, where: str = MANIFEST_NAME) -> "Manifest":
        """A manifest from its JSON object; old formats converted.
        :class:`RunOutputError` (naming ``where``) for anything else."""
        if not isinstance(data, Mapping):
            raise RunOutputError(f"{where}: not a manifest (a JSON object expected)")
        version = data.get("format_version")
        if version not in READABLE_VERSIONS:
            raise RunOutputError(
                f"{where}: manifest format_version {version!r}; this code reads "
                f"{', '.join(map(str, READABLE_VERSIONS))} (rerun beam_runner.py, or "
                "use the sc2-replay-pipeline version that wrote it)")
        data = dict(data)
        try:
            shards = {fmt: {split: [_typed(ShardFile, s, where) for s in entries]
                            for split, entries in by_split.items()}
                      for fmt, by_split in data.get("shards", {}).items()}
        except AttributeError as exc:
            raise RunOutputError(f"{where}: malformed shard list ({exc})") from exc
        if version == 1:   # absolute paths under the output the run named
            root = str(data.get("output_dir", ""))
            for entries in (e for by_split in shards.values() for e in by_split.values()):
                for s in entries:
                    if root and s.path.startswith(root.rstrip("/") + "/"):
                        s.path = s.path[len(root.rstrip("/")) + 1:]
        data.update(
            format_version=FORMAT_VERSION, shards=shards,
            schema=_typed(SchemaInfo, data.get("schema"), where),
            source=_typed(SourceInfo, data.get("source"), where),
            counts=_typed(Counts, data.get("counts"), where),
            outcome=_typed(Outcome, data.get("outcome", {}), where))
        manifest = _typed(cls, data, where)
        try:
            manifest.sample_schema()
        except SchemaError as exc:
            raise RunOutputError(f"{where}: {exc}") from exc
        if manifest.schema.layer_encoding_version != layer_codec.FORMAT_VERSION:
            raise RunOutputError(
                f"{where}: layers encoded with schemas.layer_codec version "
                f"{manifest.schema.layer_encoding_version}; this code reads "
                f"{layer_codec.FORMAT_VERSION}")
        return manifest

    @classmethod
    def loads(cls, text: str | bytes, where: str = MANIFEST_NAME) -> "Manifest":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise RunOutputError(f"{where}: unreadable manifest ({exc})") from exc
        return cls.from_json(data, where)

    @classmethod
    def load(cls, root: str) -> "Manifest":
        """``root/manifest.json``; :class:`RunOutputError` naming it when it
        is missing, unreadable or of another format."""
        path = RunLayout(root).manifest
        try:
            raw = filesystem.read(path)
        except FileNotFoundError as exc:
            raise RunOutputError(f"{path}: no manifest (not a finished beam_runner.py "
                                 "output; an aborted run writes none)") from exc
        except OSError as exc:
            raise RunOutputError(f"{path}: unreadable manifest ({exc})") from exc
        return cls.loads(raw, path)

    def save(self, root: str) -> None:
        """Writes ``root/manifest.json`` atomically."""
        filesystem.write_bytes_atomic(RunLayout(root).manifest, self.dumps().encode())

    # ---------------------------------------------------------- queries
    def sample_schema(self) -> SampleSchema:
        return schema_from_repr(self.schema.repr)

    @property
    def formats(self) -> tuple[str, ...]:
        """The formats the run wrote."""
        return tuple(self.config.get("formats", ()))

    def split_names(self) -> list[str]:
        """Splits that hold samples, in the order train, validation, test."""
        have = self.counts.samples_counted_by_split
        return sorted((s for s, n in have.items() if n),
                      key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))

    def why_empty(self, split: str) -> str:
        """Why ``split`` holds no samples, in one line (for readers' errors):
        the cause the run recorded (``empty_splits``), else worked out."""
        held = ", ".join(self.split_names()) or "none"
        if split in self.empty_splits:
            cause = self.empty_splits[split]
        elif not self.splits.get(split):
            cause = ("not asked for (--splits " + ",".join(
                f"{s}={f:g}" for s, f in self.splits.items()) + ")")
        else:
            cause = (f"{self.counts.replays_by_status.get('sampled', 0)} replays sampled at "
                     f"fraction {self.splits[split]:g} (this manifest predates recorded causes)")
        return f"split {split!r} holds no samples: {cause}; splits with samples: {held}"

    def split_samples(self, split: str) -> int:
        return int(self.counts.samples_counted_by_split.get(split, 0))

    def shard_files(self, fmt: str, split: str) -> list[ShardFile]:
        """The shards of one split in one format, in order ([] when none)."""
        return list(self.shards.get(fmt, {}).get(split, []))

    def data_config(self) -> dict[str, Any]:
        """What a model needs to know about how the samples were made
        (:data:`DATA_CONFIG_KEYS`)."""
        return dict(zip(DATA_CONFIG_KEYS, (self.source.name, self.source.resolution,
                                           self.source.step_mul, self.source.fog)))


@dataclasses.dataclass(frozen=True)
class RunOutput:
    """An opened run output: where it lies and what its manifest says."""
    root: str
    manifest: Manifest

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.root)

    def shard_paths(self, fmt: str, split: str) -> list[str]:
        """The full paths of one split's shards in one format.
        :class:`RunOutputError` when the run wrote no such format or split."""
        if fmt not in self.manifest.formats:
            raise RunOutputError(f"{self.layout.manifest}: the run wrote no {fmt} shards "
                                 f"(formats: {', '.join(self.manifest.formats) or 'none'})")
        files = self.manifest.shard_files(fmt, split)
        if not files:
            raise RunOutputError(f"{self.layout.manifest}: "
                                 f"{self.manifest.why_empty(split)}")
        return [self.layout.path(s.path) for s in files]

    def iter_shards(self, fmt: str, splits: tuple[str, ...] | list[str]
                    ) -> Iterator[tuple[str, ShardFile]]:
        """``(full path, entry)`` of every shard of ``splits``, in order."""
        for split in splits:
            for path, entry in zip(self.shard_paths(fmt, split),
                                   self.manifest.shard_files(fmt, split)):
                yield path, entry


    def check_shards(self, fmt: str, splits: tuple[str, ...] | list[str]) -> None:
        """:class:`RunOutputError` naming the first shard of ``splits`` that is
        missing or not the size the manifest records, or a file in their
        shard directories that the manifest does not list: a reader must
        never read a split with a gap (or an extra) silently."""
        for split in splits:
            listed = set()
            for path, entry in self.iter_shards(fmt, (split,)):
                listed.add(posixpath.basename(entry.path))
                try:
                    size = filesystem.size(path)
                except FileNotFoundError as exc:
                    raise RunOutputError(f"{path}: missing shard (listed in "
                                         f"{self.layout.manifest})") from exc
                if entry.bytes and size < entry.bytes:
                    raise RunOutputError(f"{path}: truncated shard ({size} of the "
                                         f"{entry.bytes} bytes the manifest records)")
                if entry.bytes and size != entry.bytes:
                    raise RunOutputError(f"{path}: damaged or replaced shard ({size} bytes, "
                                         f"the manifest records {entry.bytes})")
            directory = self.layout.shard_dir(fmt, split)
            if not filesystem.is_remote(directory):
                extra = sorted(n for n in filesystem.listdir(directory)
                               if n.endswith(EXTENSIONS[fmt]) and n not in listed)
                if extra:
                    raise RunOutputError(f"{filesystem.join(directory, extra[0])}: a shard "
                                         f"the manifest does not list")


def open_run(root: str) -> RunOutput:
    """The run output at ``root``: :class:`RunOutputError` unless it has a
    readable manifest of a known format."""
    return RunOutput(root, Manifest.load(root))
