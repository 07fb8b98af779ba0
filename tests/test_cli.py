"""The commands read as one tool: installed names, one vocabulary, defaults in
``--help``, misspelled flags refused, old names still accepted, quiet output.

The output checks run the commands in subprocesses: TensorFlow's start-up
lines are written by native code to file descriptor 2, which capsys does not
see.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Lines a library writes, never the project: absl/glog prefixes, TensorFlow's
#: start-up, Python warnings, Beam's and TFDS's notices.
NOISE = re.compile(r"^[IWEF]\d{4} |absl|oneDNN|tensorflow|cuda|Warning:|WARNING|"
                   r"deprecat|Downloading and preparing|Traceback", re.IGNORECASE)
#: The commands that read a pipeline output, and the one flag they read it with.
READERS = ("sc2-tfds-build", "sc2-train", "sc2-evaluate")


def _python(script: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, check=False)


def test_every_installed_command_has_an_entry_and_a_quiet_help_with_defaults():
    """One subprocess runs ``--help`` of every command through its
    console-script entry point: each exits 0 with a usage, shows defaults,
    names where it writes ``--out``, and nothing reaches stderr (no
    TensorFlow/absl line); the readers share ``--data``; TensorFlow is not
    loaded by any of them."""
    from pipeline import commands
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == set(commands.COMMANDS)
    for name, target in scripts.items():
        module, function = target.split(":")
        assert module == "pipeline.commands" and callable(getattr(commands, function)), name
    script = (
        "import sys\nfrom pipeline import commands\n"
        "for name in commands.COMMANDS:\n"
        "    print('=== ' + name, flush=True)\n"
        "    try:\n"
        "        commands.run_command(name, ['--help'])\n"
        "    except SystemExit as exc:\n"
        "        print('=== exit', exc.code, flush=True)\n"
        "print('tensorflow loaded:', 'tensorflow' in sys.modules)\n")
    done = _python(script)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""          # no start-up, deprecation or absl line
    sections = {name: (text, code) for name, text, code in
                re.findall(r"^=== (sc2-[\w-]+)\n(.*?)^=== exit (\S+)$", done.stdout,
                           re.S | re.M)}
    assert set(sections) == set(commands.COMMANDS)
    for name, (text, code) in sections.items():
        assert code in ("0", "None"), name
        assert text.startswith("usage: "), name
        assert "--out" in text, name
        assert "--pipeline_output" not in text and "--output" not in text, name
        assert "(default: " in text, name
    pipeline_help = " ".join(sections["sc2-pipeline"][0].split())
    for shown in ("--step_mul STEP_MUL game loops per sample (default: 8)",
                  "(default: train=0.9,validation=0.05,test=0.05)",
                  "(pixels per side) (default: 64)"):
        assert shown in pipeline_help
    train_help = " ".join(sections["sc2-train"][0].split())
    assert "total training steps (default: 1000)" in train_help
    assert re.search(r"--batch_size BATCH_SIZE samples per step \(default: \d+\)", train_help)
    for name in READERS:
        assert re.search(r"--data DATA\s+the pipeline output to read", sections[name][0]), name
    assert "every flag of sc2-train" in sections["sc2-crossval"][0]
    assert done.stdout.rstrip().endswith("tensorflow loaded: False")


def test_a_misspelled_flag_is_refused_in_one_line_naming_the_closest(tmp_path, capsys):
    import beam_runner
    argv = ["--replays", str(tmp_path), "--out", str(tmp_path / "o"), "--step_mull", "16"]
    with pytest.raises(SystemExit) as exc:
        beam_runner.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--step_mull" in err and "did you mean --step_mul?" in err
    assert not (tmp_path / "o").exists() and list(tmp_path.iterdir()) == []
    # a Beam option misspelled: named after Beam's real option
    with pytest.raises(SystemExit):
        beam_runner.parse_args(argv[:4] + ["--projekt", "P"])
    assert "did you mean --project?" in capsys.readouterr().err
    # real Beam options pass through untouched
    args, beam_args = beam_runner.parse_args(
        argv[:4] + ["--runner", "DirectRunner", "--direct_num_workers=1", "--project", "P"])
    assert beam_args == ["--runner", "DirectRunner", "--direct_num_workers=1", "--project", "P"]
    assert args.out == str(tmp_path / "o")


def test_old_flag_names_still_work_with_a_one_line_note(tmp_path, capsys):
    import beam_runner
    from datasets.sc2_replays import build
    from pipeline import cli_flags
    cli_flags._NOTED.clear()        # each old name is noted once a process
    args, _ = beam_runner.parse_args(["--replays", "r", "--output", "o"])
    assert args.out == "o"
    assert capsys.readouterr().err == ("sc2-pipeline: note: --output is deprecated and will "
                                       "be removed; use --out\n")
    assert build.main(["--pipeline_output", str(tmp_path / "none"),
                       "--data_dir", str(tmp_path / "tfds")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == ["sc2-tfds-build: note: --pipeline_output is deprecated and will be "
                       "removed; use --data",
                       "sc2-tfds-build: note: --data_dir is deprecated and will be removed; "
                       "use --out"]
    assert len(err) == 3 and err[2].startswith("sc2-tfds-build: error: ") and "none" in err[2]
    # a command that parses twice (the trainers: before and after TensorFlow loads)
    # notes an old name once
    from pipeline import commands
    assert commands.run_command("sc2-export", ["--run", str(tmp_path / "none"),
                                               "--output", str(tmp_path / "model")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "sc2-export: note: --output is deprecated and will be removed; use --out"
    assert len(err) == 2 and err[1].startswith("sc2-export: error: ")


def test_training_and_evaluation_print_only_the_projects_lines(synthetic_data, tmp_path):
    """A short training run and an evaluation, through the installed entry
    points in one process: no library line on stdout or stderr.  With
    ``--verbose`` TensorFlow's own start-up lines do appear."""
    data, _ = synthetic_data
    run = tmp_path / "run"
    train = ["--data", str(data), "--model", "atari_net", "--out", str(run), "--steps", "2",
             "--batch_size", "4", "--log_every", "1", "--shuffle_buffer", "8"]
    evaluate = ["--data", str(data), "--run", str(run), "--split", "test",
                "--resamples", "10", "--out", str(tmp_path / "eval")]
    script = ("import sys\nfrom pipeline import commands\n"
              f"assert commands.run_command('sc2-train', {train!r}) == 0\n"
              f"assert commands.run_command('sc2-evaluate', {evaluate!r}) == 0\n")
    done = _python(script)
    assert done.returncode == 0, done.stderr
    lines = (done.stdout + done.stderr).splitlines()
    assert any(line.startswith("step 2") or "step 2/" in line for line in lines), lines
    assert json.loads((tmp_path / "eval" / "eval_test.json").read_text())
    noise = [line for line in lines if NOISE.search(line)]
    assert noise == []
    # --verbose: TensorFlow's start-up lines (the run fails at once: no such run)
    verbose = _python("from pipeline import commands\n"
                      f"commands.run_command('sc2-export', ['--run', {str(tmp_path / 'none')!r},"
                      f" '--out', {str(tmp_path / 'model')!r}, '--verbose'])\n")
    assert re.search(r"absl|oneDNN", verbose.stderr), verbose.stderr


def test_python_dash_m_and_beam_runner_py_keep_working_quietly():
    """The former ways to run a command: the same parser, and (for a trainer,
    whose module loads TensorFlow) no start-up line either."""
    for argv in (["beam_runner.py", "--help"], ["-m", "trainers.export", "--help"]):
        done = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0 and done.stdout.startswith("usage: "), done.stderr
        assert done.stderr == "", argv
