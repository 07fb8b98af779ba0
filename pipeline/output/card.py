"""The dataset card: ``DIR/README.md``, what a run's output is, in words.

Someone handed an output directory should not have to read ``manifest.json``
or the code to know what the samples are, how many there are per split, what
was left out and why, which layers are zeros, how to load them and how they
were made.  :func:`render_card` writes that from the run's
:class:`~schemas.run_output.Manifest` and its
:class:`~schemas.sample.SampleSchema` alone (no other input: a card can be
rebuilt from any manifest), and :func:`write_card` puts it at
``RunLayout(root).card``.  Every number on the card is the manifest's; the
field table is the schema's.
"""
from __future__ import annotations

import datetime
import shlex
from typing import Iterable, Mapping, Sequence

from pipeline import filesystem
from pipeline.text import terminal_safe
from schemas.run_output import Manifest, RunLayout
from schemas.sample import SPLITS, Field, SampleSchema

#: where the project documents each way of reading the output
FORMAT_DOC = "docs/dataset_format.md"
PIPELINE_DOC = "docs/pipeline.md"
#: the module the numpy reader lives in (documented there and in FORMAT_DOC)
NUMPY_READER = "schemas.sample_reader"
#: how many target functions the card lists
TOP_TARGETS = 5


def _cell(value: object) -> str:
    """Text safe in a markdown table cell: control characters (a hostile
    path's terminal escapes) shown escaped, no unescaped ``|``."""
    return terminal_safe(value, limit=0).replace("|", "\\|")


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def _counted(counts: Mapping[str, int]) -> str:
    """``TvT 2, ZvZ 1`` (most first); ``-`` when empty."""
    return ", ".join(f"{k} {n}" for k, n in counts.items()) or "-"


#: the encodings of ``schemas.sample`` (its module docstring), by card name
ENCODINGS: Mapping[str, str] = {
    "compact": "a `schemas.layer_codec` byte string: empty when the array is all zeros, "
               "else run-length coded or raw (Parquet `binary`, TFRecord one `bytes_list` "
               "entry)",
    "vector": "Parquet `fixed_size_list`; TFRecord raw little-endian bytes",
    "string": "Parquet `string`; TFRecord `bytes_list`",
    "integer": "Parquet integer of the dtype; TFRecord `int64_list`",
}


def encoding(field: Field) -> str:
    """The :data:`ENCODINGS` name of how a field is stored."""
    if field.compact:
        return "compact"
    if field.is_array:
        return "vector"
    return "string" if field.is_string else "integer"


def _splits_shown(manifest: Manifest) -> list[str]:
    """Splits asked for or holding samples, in the order train, validation, test."""
    asked = {s for s, f in manifest.splits.items() if f > 0}
    held = set(manifest.counts.samples_counted_by_split) | set(manifest.empty_splits)
    return [s for s in SPLITS if s in asked | held]


# ------------------------------------------------------------------ sections
def _status(manifest: Manifest) -> list[str]:
    if manifest.outcome.failed:
        return [f"> **This run failed:** {_cell(manifest.outcome.reason)}.",
                "> The output is kept as the evidence (index, errors, this card); "
                "do not train on it.", ""]
    if manifest.config.get("scan_only"):
        return ["> **Scan only** (`--scan_only`): this output holds the replay index, "
                "the error records and the manifest; no samples were made, by design.", ""]
    if not manifest.counts.samples_total:
        return ["> **No samples:** nothing was sampled; see the errors and filters below.", ""]
    return []


def _about(manifest: Manifest, schema: SampleSchema) -> list[str]:
    src = manifest.source
    made = datetime.datetime.fromtimestamp(manifest.created_unix, datetime.timezone.utc)
    lines = [
        "## What the data is", "",
        "Samples for learning to play StarCraft II from human replays, as in SC2LE "
        "(Vinyals et al. 2017): one sample per (replay, player, window of "
        f"{src.step_mul} game loops). Each holds what the player saw at the window's "
        "start (feature layers, player and score vectors), the first action the player "
        "issued in the window (pysc2 function id and arguments: the policy target), "
        "the actions available during the window (the mask) and the game's result for "
        "the player (the value label). Every player of a replay and every window of "
        "its game are in the same split (the split is a hash of the replay id).", "",
    ]
    lines += _table(("setting", "value"), [
        ("observation source", f"{src.name} ({src.factory})"),
        ("fog of war", "on (what the player saw)" if src.fog else "off (every unit shown)"),
        ("step_mul", f"{src.step_mul} game loops per sample"),
        ("resolution", f"screen {schema.screen_resolution}x{schema.screen_resolution}, "
                       f"minimap {schema.minimap_resolution}x{schema.minimap_resolution}"),
        ("formats", ", ".join(manifest.formats) or "none"),
        ("made", made.strftime("%Y-%m-%d %H:%M UTC")),
        ("output", manifest.output_dir),
    ])
    return lines + [""]


def _contents(manifest: Manifest) -> list[str]:
    c = manifest.counts
    rows = []
    for split in _splits_shown(manifest):
        rows.append((split, f"{manifest.splits.get(split, 0.0):g}",
                     c.replays_by_split.get(split, 0), c.samples_counted_by_split.get(split, 0),
                     c.shards_by_split.get(split, 0),
                     _counted(c.matchups_by_split.get(split, {})),
                     _counted(c.builds_by_split.get(split, {}))))
    rows.append(("total", f"{sum(manifest.splits.values()):g}",
                 sum(c.replays_by_split.values()), c.samples_total,
                 sum(c.shards_by_split.values()), "", ""))
    lines = ["## Contents", ""]
    lines += _table(("split", "fraction asked", "replays", "samples", "shards",
                     "matchups (replays)", "game versions (replays)"), rows)
    lines.append("")
    if manifest.empty_splits:
        lines += [f"* **{split} is empty:** {_cell(cause)}."
                  for split, cause in manifest.empty_splits.items()] + [""]
    status = c.replays_by_status
    lines.append(f"{c.input_files} input files: {status.get('sampled', 0)} replays sampled, "
                 f"{status.get('filtered', 0)} filtered out, {status.get('duplicate', 0)} "
                 f"duplicates of another file, {status.get('error', 0)} errors.")
    if c.shard_bytes_by_format:
        lines.append("Shards: " + ", ".join(
            f"{fmt} {b / 2**20:,.1f} MiB ({c.shard_bytes_per_sample.get(fmt, 0):.0f} B/sample)"
            for fmt, b in c.shard_bytes_by_format.items()) + ".")
    if c.degraded_replays:
        lines.append(f"Sampled with less than the replay holds (manifest `degraded`): "
                     f"{_counted(c.degraded_replays)}.")
    return lines + [""]


def _left_out(manifest: Manifest) -> list[str]:
    c = manifest.counts
    lines = ["## Filters", ""]
    lines += _table(("filter", "value"), sorted(
        (k, (", ".join(map(str, v)) or "(any)") if isinstance(v, list) else v)
        for k, v in manifest.filters.items()))
    lines += ["", f"The filter flags are described in `beam_runner.py --help` and "
                  f"`{PIPELINE_DOC}`."]
    lines.append("")
    for title, counts, kind, none in (
            ("Filtered out, by reason", c.filter_reasons, "filtered",
             "No replay was filtered out."),
            ("Errors, by stage:category", c.error_reasons, "errors", "No file failed.")):
        lines += [f"### {title}", ""]
        if not counts:
            lines += [none, ""]
            continue
        first = manifest.examples.get(kind, {})
        lines += _table(("reason", "files", "first file"), [
            (reason, n, first.get(reason, "?"))
            for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))])
        lines.append("")
    lines += ["Every error's message is in `errors/errors.parquet`; every input file that "
              "was read has a row in `index/replays.parquet` (with its status).", ""]
    return lines


def _layers(manifest: Manifest) -> list[str]:
    missing = manifest.source.unavailable_layers
    lines = ["## Layers the source could not fill", ""]
    if not missing:
        return lines + [f"None: the {manifest.source.name} source fills every field.", ""]
    lines.append(f"The {manifest.source.name} source stores these {len(missing)} fields "
                 "as zeros (each sample's `unavailable_layers` names them too): "
                 + ", ".join(f"`{_cell(name)}`" for name in missing) + ".")
    return lines + [""]


def _schema(schema: SampleSchema) -> list[str]:
    lines = ["## Schema", "",
             f"{len(schema.fields)} fields (`{schema!r}` in `schemas/sample.py`). Encodings:", ""]
    lines += [f"* {name}: {text}" for name, text in ENCODINGS.items()] + [""]
    lines += _table(("field", "group", "dtype", "shape", "encoding", "meaning"), [
        (f"`{f.name}`", f.group.value, f.dtype, "x".join(map(str, f.shape)) or "scalar",
         encoding(f), f.doc) for f in schema.fields])
    return lines + [""]


def _labels(manifest: Manifest) -> list[str]:
    lab = manifest.labels
    if not lab.get("samples"):
        return []
    top = ", ".join(f"{t['name']} {t['fraction']:.3f}"
                    for t in lab.get("top_target_functions", [])[:TOP_TARGETS])
    return ["## Labels", "",
            f"No-op targets: {lab['noop_fraction']:.3f} of the samples; mean available "
            f"actions per window: {lab['mean_mask_size']:.1f}; most frequent targets: "
            f"{top}. More in the manifest's `labels`.", ""]


def _loading(manifest: Manifest, schema: SampleSchema) -> list[str]:
    root = manifest.output_dir
    lines = ["## How to load it", "",
             f"Paths below are where the run was published ({root}); the output can be "
             "moved whole (the manifest names its files relative to it).", ""]
    lines += ["### TensorFlow Datasets", ""]
    tfds = manifest.tfds
    if tfds:
        data_dir = f"{root}/{tfds['data_dir']}"
        name = tfds["name"]                       # sc2_replays/<config>/<version>
        config = "/".join(name.split("/")[:2])
        lines += ["Nothing of this project needs importing: TFDS opens the metadata by "
                  "itself (with `sc2-replay-pipeline` installed, for the layers' "
                  "decoder). Slices such as `train[:10%]` work.", "",
                  "```python", "import tensorflow_datasets as tfds",
                  f"builder = tfds.builder_from_directory('{data_dir}/{name}')",
                  f"ds = tfds.load('{config}', data_dir='{data_dir}', split='train[:10%]',",
                  "               read_config=tfds.ReadConfig(try_autocache=False))",
                  "```", ""]
    else:
        why = ("the run wrote no TFRecord shards" if "tfrecord" not in manifest.formats
               else "the run has no samples")
        lines += [f"No TFDS metadata: {why}.", ""]
    split = next(iter(manifest.split_names()), "train")
    lines += ["### NumPy, pandas, polars, DuckDB, Hugging Face", "",
              f"`{NUMPY_READER}` reads the shards into dense numpy arrays; "
              f"`{FORMAT_DOC}` gives the recipes for pandas, polars, DuckDB and Hugging "
              "Face `datasets`.", "",
              "### pyarrow", "",
              "Scalars and small vectors are plain columns; the compact fields are byte "
              "strings that `schemas.layer_codec.decode` turns back into arrays of the "
              "dtype and shape above:", "",
              "```python", "import numpy as np", "import pyarrow.parquet as pq",
              "from schemas import layer_codec",
              f"table = pq.read_table('{root}/parquet/{split}')  # every {split} shard",
              "row = table.slice(0, 1).to_pylist()[0]",
              f"mask = layer_codec.decode(row['available_actions'], np.uint8, "
              f"({schema.by_name['available_actions'].shape[0]},))",
              "```", "",
              f"The TFRecord shards (`tfrecord/<split>/*.tfrecord.gz`, GZIP) hold "
              "`tf.train.Example`s; `SampleSchema.tf_feature_spec` and `tf_decode` read "
              f"them. Layout and guarantees: `{PIPELINE_DOC}`.", ""]
    return lines


def _provenance(manifest: Manifest) -> list[str]:
    prov = manifest.provenance
    command = prov.get("command")
    lines = ["## Provenance", ""]
    lines += _table(("", ""), [
        ("command", f"`{shlex.join(command)}`" if command else "unknown"),
        ("package version", prov.get("package_version", "unknown")),
        ("git commit", prov.get("git_commit", "unknown")),
        ("manifest format", manifest.format_version),
        ("wall time", f"{manifest.timing['wall_s']:.1f} s" if manifest.timing else "unknown"),
    ])
    lines += ["", "Package versions:", ""]
    lines += _table(("package", "version"), sorted(manifest.packages.items()))
    return lines + [""]


def render_card(manifest: Manifest, schema: SampleSchema | None = None) -> str:
    """The card of a run, as markdown (``schema``: the manifest's own by default)."""
    schema = schema or manifest.sample_schema()
    lines = ["# StarCraft II replay dataset", "",
             "Made by `beam_runner.py` (sc2-replay-pipeline); everything here comes from "
             "`manifest.json` beside this file.", ""]
    for section in (_status(manifest), _about(manifest, schema), _contents(manifest),
                    _left_out(manifest), _layers(manifest), _schema(schema),
                    _labels(manifest), _loading(manifest, schema), _provenance(manifest)):
        lines += section
    return "\n".join(lines).rstrip("\n") + "\n"


def write_card(root: str, manifest: Manifest) -> str:
    """Writes ``root/README.md`` atomically; returns its path."""
    path = RunLayout(root).card
    filesystem.write_bytes_atomic(path, render_card(manifest).encode("utf-8"))
    return path
