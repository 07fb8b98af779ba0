"""One vocabulary, one look and one error style for every command line.

The project's commands (``sc2-pipeline``, ``sc2-scan``, ``sc2-tfds-build``,
``sc2-train``, ``sc2-evaluate``, ``sc2-predict``, ``sc2-export``,
``sc2-render``, ``sc2-crossval``) grew separately and named the same thing
differently; this module is where the shared words are defined, so that a
user who learned one command knows the others:

* ``--replays``: the replay files, directories or globs a command reads
  (``--replay`` where a command reads exactly one file);
* ``--data``: the pipeline output (the run directory ``sc2-pipeline``
  writes) that a command reads;
* ``--out``: where a command writes.

:class:`Parser` is the ``argparse`` parser they all use: ``--help`` shows
every flag's default, a misspelled flag is refused in one line naming the
closest valid one, any other usage error is one line too, and an old flag
name (:data:`DEPRECATED`) still works for one release with a one-line note.
Nothing here imports a heavy module: ``--help`` stays fast and quiet.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import logging
import os
import sys
import tempfile
import warnings
from typing import Iterable, Iterator, NoReturn, Sequence

#: Old flag name -> the name that replaced it (kept working for one release).
DEPRECATED: dict[str, str] = {
    "--output": "--out",                # sc2-pipeline (beam_runner.py), sc2-scan
    "--pipeline_output": "--data",      # sc2-tfds-build
    "--data_dir": "--out",              # sc2-tfds-build
    "--no-fog": "--no_fog",             # sc2-render
}

#: (command, old name) pairs already noted in this process.
_NOTED: set[tuple[str, str]] = set()

DATA_HELP = "the pipeline output to read (the directory sc2-pipeline --out wrote)"
VERBOSE_HELP = ("show the libraries' own log lines (TensorFlow, absl, Beam, TFDS) and, "
                "on failure, the traceback")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the description's line breaks and appends ``(default: X)`` to
    every flag that has a default worth showing (not a required flag, not an
    off switch, not None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if ("%(default)" in text or "default:" in text or action.required
                or default in (None, False, argparse.SUPPRESS) or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


def closest(flag: str, candidates: Iterable[str]) -> str | None:
    """The valid flag closest to a misspelled ``flag``, or None."""
    name = flag.split("=", 1)[0]
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_flag_message(flag: str, candidates: Iterable[str]) -> str:
    """``unknown flag --step_mull; did you mean --step_mul?``"""
    name = flag.split("=", 1)[0]
    guess = closest(name, candidates)
    return f"unknown flag {name}" + (f"; did you mean {guess}?" if guess else "")


def rename_deprecated(argv: Sequence[str], known: Iterable[str], prog: str) -> list[str]:
    """``argv`` with each old flag name that maps to one of ``known`` replaced
    by its new name; a one-line note on stderr for each old name used."""
    known = set(known)
    out: list[str] = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        new = DEPRECATED.get(name)
        if new is not None and new in known and name not in known:
            if (prog, name) not in _NOTED:      # once, though a command may parse twice
                _NOTED.add((prog, name))
                print(f"{prog}: note: {name} is deprecated and will be removed; use {new}",
                      file=sys.stderr)
            arg = new + eq + value
        out.append(arg)
    return out


class Parser(argparse.ArgumentParser):
    """The project's argument parser: defaults in ``--help``, one-line
    errors, deprecated names accepted with a note, no abbreviations (an
    abbreviation would make a typo silently mean another flag)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def option_names(self) -> list[str]:
        """Every option string this parser accepts."""
        return [s for action in self._actions for s in action.option_strings]

    def parse_known_args(self, args=None, namespace=None):
        argv = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args(
            rename_deprecated(argv, self.option_names(), self.prog), namespace)

    def parse_args(self, args=None, namespace=None):
        parsed, extra = self.parse_known_args(args, namespace)
        self.refuse_unknown(extra, self.option_names())
        if extra:
            self.error(f"unexpected argument {extra[0]!r}")
        return parsed

    def refuse_unknown(self, extra: Sequence[str], candidates: Iterable[str]) -> None:
        """Exits with one line when ``extra`` holds a flag not in ``candidates``."""
        candidates = list(candidates)
        for arg in extra:
            if arg.startswith("-") and arg.split("=", 1)[0] not in candidates:
                self.error(unknown_flag_message(arg, candidates))

    def error(self, message: str) -> NoReturn:
        """One line on stderr, exit status 2 (argparse's would print the usage too)."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_verbose(parser: argparse.ArgumentParser) -> None:
    """``--verbose``: the same flag and meaning in every command."""
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)


def add_data(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """``--data``: the pipeline output a command reads."""
    parser.add_argument("--data", required=required, help=DATA_HELP)


def module_doc(module: str) -> str:
    """A module's docstring, read from its source without importing it (a
    parser's description, for ``--help`` without the module's heavy imports)."""
    import ast
    import importlib.util
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return ""
    with open(spec.origin, encoding="utf-8") as f:
        return ast.get_docstring(ast.parse(f.read())) or ""


def verbose_in(argv: Sequence[str] | None) -> bool:
    """Whether ``--verbose`` is among ``argv`` (default ``sys.argv``); read
    before parsing, since quieting libraries must precede their import."""
    return "--verbose" in (sys.argv[1:] if argv is None else argv)



def quiet_unless_verbose(argv: Sequence[str] | None = None) -> bool:
    """Silences TensorFlow's, absl's, Beam's and TFDS's own log lines and
    deprecation warnings unless ``--verbose`` is in ``argv``; returns whether
    it is.  Called by each command's entry point before the heavy imports
    (TensorFlow reads its C++ log level when it is loaded), never by
    library code."""
    verbose = verbose_in(argv)
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        for name in ("tensorflow", "absl", "apache_beam", "tensorflow_datasets", "keras"):
            logging.getLogger(name).setLevel(logging.ERROR)
        for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
            warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("ignore", module="tensorflow_datasets")
    return verbose


@contextlib.contextmanager
def native_stderr_hidden(hide: bool = True) -> Iterator[None]:
    """Hides what native libraries write to file descriptor 2 meanwhile.

    TensorFlow 2.21's C++ start-up lines ("All log messages before
    absl::InitializeLog() ...", "oneDNN custom operations are on ...") are
    written before its log level applies, so no setting silences them: the
    import is the one moment they appear.  If the block raises, what was
    hidden is written back, so that a failing import still explains itself.
    """
    if not hide:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                sys.stderr.write(sink.read().decode(errors="replace"))
