"""docs/dataset_format.md runs as written: its recipes (the fenced
```` ```python recipe=NAME ```` blocks) are executed on the real pipeline
output and their results checked against schemas.sample_reader, pyarrow and
the TFRecord shards; its field table and layer byte examples are checked
against SampleSchema and schemas.layer_codec.

``python tests/test_recipes.py --write`` regenerates the doc's field table.
"""
from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:           # (for --write, run as a script)
    sys.path.insert(0, str(REPO))

from pipeline.output import writers  # noqa: E402
from schemas import layer_codec, sample_reader  # noqa: E402
from schemas.run_output import open_run  # noqa: E402
from schemas.sample import SampleSchema  # noqa: E402

DOC = REPO / "docs" / "dataset_format.md"
RECIPES = ("numpy", "pandas", "duckdb", "huggingface", "iterator")
_BLOCK = re.compile(r"^```python recipe=(\w+)\n(.*?)^```$", re.S | re.M)
_DIR_LINE = re.compile(r'^DIR = "out/data".*$', re.M)
_TABLE = re.compile(r"(<!-- fields:begin -->\n)(.*?)(<!-- fields:end -->)", re.S)


def recipes() -> dict[str, str]:
    """The doc's recipe blocks by name."""
    found = {name: code for name, code in _BLOCK.findall(DOC.read_text())}
    assert sorted(found) == sorted(RECIPES), sorted(found)
    return found


def recipe_code(name: str, output: Path) -> str:
    """A recipe with its ``DIR = "out/data"`` line pointing at ``output``."""
    code, n = _DIR_LINE.subn(f"DIR = {str(output)!r}", recipes()[name])
    assert n == 1, f"recipe {name}: {n} DIR lines"
    return code


def run_recipe(name: str, output: Path) -> dict:
    """Executes a recipe here; its namespace."""
    namespace: dict = {"__name__": f"recipe_{name}"}
    exec(compile(recipe_code(name, output), f"{DOC}:{name}", "exec"), namespace)
    return namespace


def _expected_split(output: Path, split: str, names: list[str]) -> dict[str, np.ndarray]:
    return sample_reader.read_split(str(output), split, names)


def test_numpy_recipe(pipeline_run):
    ns = run_recipe("numpy", pipeline_run.output)
    run = open_run(str(pipeline_run.output))
    value = pq.ParquetDataset(run.shard_paths("parquet", "train")).read(["value"])
    assert ns["samples"] == run.manifest.split_samples("train") == value.num_rows
    assert ns["wins"] == sum(value.column("value").to_pylist())
    schema = run.manifest.sample_schema()
    assert list(ns["validation"]) == schema.names()
    assert len(ns["validation"]["outcome"]) == run.manifest.split_samples("validation")


def test_pandas_recipe(pipeline_run):
    ns = run_recipe("pandas", pipeline_run.output)
    run = open_run(str(pipeline_run.output))
    schema = run.manifest.sample_schema()
    scalars = [f.name for f in schema.fields if not f.is_array]
    df, frame = ns["df"], ns["frame"]
    expected = _expected_split(pipeline_run.output, "train", scalars + ["screen_unit_type"])
    assert len(df) == len(frame) == run.manifest.split_samples("train")
    for name in scalars:
        assert df[name].tolist() == frame[name].tolist() == expected[name].tolist(), name
        if not schema.by_name[name].is_string:
            assert frame[name].dtype == df[name].dtype == expected[name].dtype, name
    # the win rate per matchup, against the reader's columns
    by = collections.defaultdict(list)
    for race, opponent, value in zip(expected["race"], expected["opponent_race"],
                                     expected["value"]):
        by[(race, opponent)].append(int(value))
    assert ns["win_rate"].to_dict() == pytest.approx(
        {k: sum(v) / len(v) for k, v in by.items()})
    # layers decoded on demand: the reader's, and the TFRecord shard's
    records = list(writers.read_tfrecord_file(run.shard_paths("tfrecord", "train")[0]))
    for row in (0, 17, len(records) - 1):
        layer = ns["screen_unit_type"](row)
        assert layer.dtype == np.uint16 and layer.shape == (64, 64)
        assert np.array_equal(layer, expected["screen_unit_type"][row])
        assert np.array_equal(layer, schema.from_example(records[row])["screen_unit_type"])
    assert any(ns["screen_unit_type"](row).any() for row in range(0, len(df), 50))


def test_duckdb_recipe(pipeline_run):
    ns = run_recipe("duckdb", pipeline_run.output)
    run = open_run(str(pipeline_run.output))
    replays = pq.read_table(run.layout.replays_index).to_pylist()
    players = pq.read_table(run.layout.players_index).to_pylist()
    assert ns["status"] == sorted(collections.Counter(r["status"] for r in replays).items())
    sampled = set(_expected_split(pipeline_run.output, "train", ["replay_id"])["replay_id"])
    for split in ("validation", "test"):
        sampled |= set(_expected_split(pipeline_run.output, split, ["replay_id"])["replay_id"])
    assert len(sampled) == 3                              # the fixture's three games
    seconds = {r["replay_id"]: r["game_seconds"] for r in replays
               if r["replay_id"] in sampled and r["status"] == "ok"}
    by_race = collections.defaultdict(list)
    for p in players:
        if p["replay_id"] in sampled:
            by_race[p["race"]].append(seconds[p["replay_id"]])
    assert [(race, n) for race, n, _ in ns["sampled_players"]] == [("Terran", 4), ("Zerg", 2)]
    for race, n, mean in ns["sampled_players"]:
        assert mean == pytest.approx(sum(by_race[race]) / n)
    # the shards' scalar columns, against the reader
    counts = collections.Counter()
    wins = collections.Counter()
    for cols in sample_reader.iter_columns(run, None, ["split", "race", "opponent_race",
                                                       "value"]):
        for key, value in zip(zip(cols["split"], cols["race"], cols["opponent_race"]),
                              cols["value"]):
            counts[key] += 1
            wins[key] += int(value)
    assert [row[:4] for row in ns["per_matchup"]] == sorted(
        (*key, n) for key, n in counts.items())
    for *key, n, rate in ns["per_matchup"]:
        assert rate == pytest.approx(wins[tuple(key)] / n)
    assert sum(n for *_, n, _ in ns["per_matchup"]) == run.manifest.counts.samples_total


def _recipe_env(tmp_path: Path) -> dict[str, str]:
    """A child's environment: no PYTHONPATH, a private offline Hugging Face home."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_DATASETS_DISABLE_PROGRESS_BARS="1")
    return env


def test_huggingface_recipe_outside_the_repository(pipeline_run, tmp_path):
    """Run where ``import datasets`` finds Hugging Face's package (a working
    directory outside the repository, no PYTHONPATH), as the doc says."""
    script = tmp_path / "recipe_huggingface.py"
    script.write_text(recipe_code("huggingface", pipeline_run.output) + f"""
import datasets as _hf
np = __import__("numpy")
np.savez({str(tmp_path / "hf.npz")!r}, first=first, actions=batch["available_actions"],
         unit_type=batch["screen_unit_type"], value=np.array(batch["value"]),
         replay_id=np.array(batch["replay_id"]))
print(__import__("json").dumps({{"datasets": _hf.__file__, "rows": ds.num_rows}}))
""")
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                            env=_recipe_env(tmp_path), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert "site-packages" in report["datasets"], report     # Hugging Face's, not ours
    run = open_run(str(pipeline_run.output))
    assert report["rows"] == run.manifest.split_samples("train")
    expected = _expected_split(pipeline_run.output, "train",
                               ["replay_id", "value", "available_actions",
                                "screen_unit_type"])
    got = np.load(tmp_path / "hf.npz", allow_pickle=False)
    assert np.array_equal(got["first"], expected["screen_unit_type"][0])
    assert got["actions"].dtype == np.uint8 and got["actions"].shape == (8, 573)
    assert np.array_equal(got["actions"], expected["available_actions"][:8])
    assert np.array_equal(got["unit_type"], expected["screen_unit_type"][:8])
    assert got["value"].tolist() == expected["value"][:8].tolist()
    assert got["replay_id"].tolist() == expected["replay_id"][:8].tolist()


def test_from_the_repository_root_datasets_is_this_projects(tmp_path):
    """The name collision the doc warns of: at the repository root,
    ``import datasets`` is the TFDS builder package."""
    result = subprocess.run([sys.executable, "-c", "import datasets; print(datasets.__file__)"],
                            cwd=REPO, env=_recipe_env(tmp_path), capture_output=True,
                            text=True, timeout=60, check=True)
    assert Path(result.stdout.strip()) == REPO / "datasets" / "__init__.py"


def test_iterator_recipe(pipeline_run):
    ns = run_recipe("iterator", pipeline_run.output)
    names = ["screen_unit_type", "player", "function_id", "value"]
    expected = _expected_split(pipeline_run.output, "train", names)
    first = ns["first"]
    assert first["screen_unit_type"].shape == (32, 64, 64)
    for name in names:
        assert np.array_equal(first[name], expected[name][:32]), name
    samples = list(ns["train"])
    assert len(samples) == len(expected["value"])
    assert [s["function_id"] for s in samples] == expected["function_id"].tolist()
    assert np.array_equal(samples[-1]["player"], expected["player"][-1])


# ------------------------------------------------------------ the doc's tables
def field_table(schema: SampleSchema) -> str:
    """The doc's field table, from the schema and its Arrow schema."""
    rows = ["| field | Parquet | numpy (reader) | TFRecord feature | meaning |",
            "|---|---|---|---|---|"]
    for field in schema.fields:
        arrow = str(schema.arrow_schema.field(field.name).type).replace("item: ", "")
        shape = ", ".join(["N", *map(str, field.shape)])
        if field.is_string:
            numpy_, example = "(N,) object", "bytes_list: UTF-8"
        elif field.compact:
            arrow += ": layer bytes"
            numpy_, example = f"({shape}) {field.dtype}", "bytes_list: layer bytes"
        elif field.is_array:
            numpy_ = f"({shape}) {field.dtype}"
            example = f"bytes_list: {field.size} x {field.dtype} LE"
        else:
            numpy_, example = f"(N,) {field.dtype}", "int64_list"
        rows.append(f"| `{field.name}` | {arrow} | {numpy_} | {example} | "
                    f"{field.doc.replace('|', '/')} |")
    return "\n".join(rows) + "\n"


def test_doc_field_table_is_the_schema():
    match = _TABLE.search(DOC.read_text())
    assert match, "the doc has no fields:begin/end markers"
    assert match.group(2) == field_table(SampleSchema()), \
        "docs/dataset_format.md's field table differs: python tests/test_recipes.py --write"


@pytest.mark.parametrize("array, hex_bytes", [
    (np.array([[0, 0, 0, 0], [0, 0, 7, 7]], np.uint16), "01 02 00 00 00 06 00 02 00 00 00 07 00"),
    (np.array([[0, 0, 5], [5, 5, 0]], np.uint8), "00 00 00 05 05 05 00"),
])
def test_doc_layer_byte_examples(array, hex_bytes):
    assert layer_codec.encode(array).hex(" ") == hex_bytes
    assert f"`{hex_bytes}`" in DOC.read_text()
    decoded = layer_codec.decode(bytes.fromhex(hex_bytes), array.dtype, array.shape)
    assert np.array_equal(decoded, array)
    assert layer_codec.encode(np.zeros((2, 2), np.int32)) == b""


def _write() -> None:
    text = DOC.read_text()
    new = _TABLE.sub(lambda m: m.group(1) + field_table(SampleSchema()) + m.group(3), text)
    DOC.write_text(new)
    print(f"{DOC}: field table {'rewritten' if new != text else 'unchanged'}")


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    _write()
