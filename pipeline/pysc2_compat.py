"""Makes pysc2 4.0.0 importable and usable on Python 3.11 outside an absl app.

pysc2 4.0.0 is the last release and has three problems this project works
around here, in one place, so that every import of pysc2 (tests, the command
line, Beam worker processes) goes through the same fixes:

1. ``pysc2/lib/colors.py`` calls ``random.shuffle(x, lambda: 0.5)``; the second
   argument was removed in Python 3.11, so importing ``pysc2.lib.features``
   raises ``TypeError``.  We replace ``colors.shuffled_hue`` with a function
   that reproduces the old fixed shuffle exactly, so palettes are unchanged.
2. pysc2 reads absl flags (``--sc2_run_config``, ``--sc2_version`` ...) inside
   ``run_configs.get()``.  Outside ``absl.app.run`` the flags are unparsed and
   reading them raises ``UnparsedFlagAccessError``.  We parse the flags with
   their defaults (known flags only) when nobody has parsed them yet.
3. pysc2 declares ``enum34`` (which shadows the standard ``enum``) and a few
   other dependencies it does not import; the project installs pysc2 with
   ``--no-deps`` and lists what pysc2 really imports (see pyproject.toml).
   Nothing to patch at run time for that, but :func:`apply` checks that
   ``enum`` is the standard library's.

Use ``from pipeline.pysc2_compat import pysc2_modules`` (or call
:func:`apply` before importing pysc2) instead of importing pysc2 directly.
"""
from __future__ import annotations

import enum
import sys
import types

_APPLIED = False


def _fixed_shuffle(values: list) -> None:
    """Python <= 3.10 ``random.shuffle(values, lambda: 0.5)``, in place."""
    for i in reversed(range(1, len(values))):
        j = int(0.5 * (i + 1))
        values[i], values[j] = values[j], values[i]


def apply() -> None:
    """Applies the workarounds once per process; safe to call many times."""
    global _APPLIED
    if _APPLIED:
        return
    if not hasattr(enum, "IntFlag"):
        raise ImportError(
            "The 'enum' module is the enum34 backport, not the standard "
            "library's; uninstall enum34 (pysc2 declares it but must be "
            "installed with --no-deps).")
    import numpy
    from pysc2.lib import colors

    def shuffled_hue(scale):
        palette = list(colors.smooth_hue_palette(scale))
        _fixed_shuffle(palette)
        return numpy.array(palette)

    colors.shuffled_hue = shuffled_hue

    from absl import flags
    if not flags.FLAGS.is_parsed():
        # Importing run_configs defines pysc2's flags; parse only known flags
        # from an empty command line so that their defaults apply.
        import pysc2.run_configs  # noqa: F401  (defines the flags)
        flags.FLAGS([sys.argv[0] if sys.argv else "pysc2"], known_only=True)
    _APPLIED = True


def pysc2_modules() -> types.SimpleNamespace:
    """Returns pysc2's ``actions``, ``features``, ``point`` and ``run_configs``."""
    apply()
    from pysc2 import run_configs
    from pysc2.lib import actions, features, point
    return types.SimpleNamespace(actions=actions, features=features,
                                 point=point, run_configs=run_configs)
