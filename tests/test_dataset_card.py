"""The dataset card ``DIR/README.md``: its numbers are the manifest's, its
field table is the schema's, its recipes run, and the example in
``docs/dataset_card_example.md`` is what the demo's command writes today."""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest

from conftest import REPLAYS, REPO, require_shared
from pipeline.output import card as card_lib
from schemas.run_output import Manifest, RunLayout

DEMO_SPLITS = "train=0.6,validation=0.2,test=0.2"        # the Makefile's SPLITS
EXAMPLE = REPO / "docs" / "dataset_card_example.md"
#: where the docs example's card begins (what precedes it says how it was made)
EXAMPLE_MARK = "<!-- the card, as written -->"
#: rows that differ from run to run or machine to machine
VOLATILE = re.compile(r"^\| (made|output|command|git commit|wall time) \||^Shards: ")


def _table(card: str, header: str) -> list[list[str]]:
    """The rows of the markdown table whose header line starts with ``header``."""
    lines = card.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().replace("\\|", "|")
                     for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows


def _section(card: str, title: str) -> str:
    return card.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def _check_against_manifest(root: Path) -> tuple[str, Manifest]:
    card = (root / "README.md").read_text(encoding="utf-8")
    manifest = Manifest.load(str(root))
    assert card == card_lib.render_card(manifest)           # a function of the manifest
    c = manifest.counts
    rows = {r[0]: r for r in _table(card, "| split |")}
    for split, row in rows.items():
        if split == "total":
            continue
        assert row[1] == f"{manifest.splits[split]:g}"
        assert [int(x) for x in row[2:5]] == [c.replays_by_split.get(split, 0),
                                              c.samples_counted_by_split.get(split, 0),
                                              c.shards_by_split.get(split, 0)]
        for cell, counts in ((row[5], c.matchups_by_split), (row[6], c.builds_by_split)):
            assert cell == (", ".join(f"{k} {n}" for k, n in counts.get(split, {}).items())
                            or "-")
    assert set(rows) - {"total"} == {s for s, f in manifest.splits.items() if f > 0}
    assert int(rows["total"][3]) == c.samples_total
    status = c.replays_by_status
    assert (f"{c.input_files} input files: {status.get('sampled', 0)} replays sampled, "
            f"{status.get('filtered', 0)} filtered out, {status.get('duplicate', 0)} "
            f"duplicates of another file, {status.get('error', 0)} errors.") in card
    for split, cause in manifest.empty_splits.items():
        assert f"* **{split} is empty:** {cause}." in card
    for title, counts, kind in (("### Errors, by stage:category", c.error_reasons, "errors"),
                                ("### Filtered out, by reason", c.filter_reasons, "filtered")):
        if counts:
            listed = {r[0]: (int(r[1]), r[2]) for r in _table(card.split(title, 1)[1],
                                                                "| reason |")}
            assert listed == {k: (n, manifest.examples[kind][k]) for k, n in counts.items()}
    layers = _section(card, "Layers the source could not fill")
    assert sorted(re.findall(r"`([a-z_0-9]+)`", layers)) == sorted(
        manifest.source.unavailable_layers) + (["unavailable_layers"]
                                               if manifest.source.unavailable_layers else [])
    schema = manifest.sample_schema()
    fields = _table(card, "| field |")
    assert [r[0].strip("`") for r in fields] == manifest.schema.fields == schema.names()
    for row, field in zip(fields, schema.fields):
        assert row[1:] == [field.group.value, field.dtype,
                           "x".join(map(str, field.shape)) or "scalar",
                           card_lib.encoding(field), field.doc]
    assert f"| command | `{shlex.join(manifest.provenance['command'])}` |" in card
    assert f"| git commit | {manifest.provenance['git_commit']} |" in card
    for package, version in manifest.packages.items():
        assert f"| {package} | {version} |" in card
    return card, manifest


def test_the_card_of_the_shared_run_agrees_with_its_manifest(pipeline_run):
    card, manifest = _check_against_manifest(pipeline_run.output)
    # the shared run has errors of several categories, a filtered replay, a duplicate
    assert len(manifest.counts.error_reasons) > 3
    assert "> **" not in card                                  # neither failed nor scan-only
    tfds = manifest.tfds
    assert (pipeline_run.output / tfds["data_dir"] / tfds["name"]).is_dir()
    assert (f"tfds.builder_from_directory('{pipeline_run.output}/tfds/{tfds['name']}')"
            in card)


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory) -> Path:
    """The Makefile's demo command (five python-sc2 replays, 60/20/20)."""
    require_shared()
    import beam_runner
    out = tmp_path_factory.mktemp("demo") / "data"
    assert beam_runner.main(["--replays", str(REPLAYS / "python-sc2"), "--out", str(out),
                             "--splits", DEMO_SPLITS, "--direct_num_workers=1"]) == 0
    return out


def test_the_demo_card_agrees_with_its_manifest(demo_output):
    card, manifest = _check_against_manifest(demo_output)
    assert manifest.counts.samples_total == 5532
    # five replays at 20% are expected to give one test replay; none landed there
    assert ("* **test is empty:** 5 replays at 20% expect 1.00; use --splits with larger "
            "fractions or more replays.") in card


def _normalised(card: str, root: str) -> list[str]:
    lines = [line.replace(root, "DIR") for line in card.splitlines()
             if not VOLATILE.match(line)]
    return lines[:lines.index("Package versions:")]           # versions vary by machine


def test_the_docs_example_is_the_card_the_demo_writes(demo_output):
    """docs/dataset_card_example.md: rerun the demo's beam_runner.py command
    and copy its README.md below the mark when this fails."""
    example = EXAMPLE.read_text(encoding="utf-8").split(EXAMPLE_MARK + "\n", 1)[1]
    documented_root = re.search(r"^\| output \| (.*) \|$", example, re.M).group(1)
    fresh = (demo_output / "README.md").read_text(encoding="utf-8")
    assert _normalised(example, documented_root) == _normalised(fresh, str(demo_output))


def test_the_cards_pyarrow_recipe_runs(demo_output):
    card = (demo_output / "README.md").read_text(encoding="utf-8")
    code = _section(card, "How to load it").split("### pyarrow", 1)[1]
    code = code.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict = {}
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 -- the card's own recipe
    finally:
        os.chdir(cwd)
    assert scope["table"].num_rows == Manifest.load(str(demo_output)).split_samples("train")
    assert scope["mask"].shape == (573,) and 0 < scope["mask"].sum() < 573


def test_write_card_is_atomic_and_names_the_layout(tmp_path, demo_output):
    manifest = Manifest.load(str(demo_output))
    path = card_lib.write_card(str(tmp_path), manifest)
    assert path == RunLayout(str(tmp_path)).card
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md"]   # no temp left
    assert Path(path).read_text(encoding="utf-8") == card_lib.render_card(manifest)
