"""Which arguments each pysc2 function takes, as one 573 x 13 table.

The policy heads predict one value per argument type in
``schemas.layers.ARGUMENT_TYPES``.  A sample's argument loss counts only when
its target function takes that argument (the data marks unused arguments with
``schemas.layers.UNUSED``), but the autoregressive model at inference and the
evaluation's "whole action correct" metric need the same fact for a
*predicted* function, which only pysc2's ``FUNCTIONS[id].args`` knows.  The
table is derived from pysc2 once per process (through
``pipeline.pysc2_compat``) and checked against ``schemas.layers``.
"""
from __future__ import annotations

import functools

import numpy as np

from pipeline.pysc2_compat import pysc2_modules
from schemas import layers


@functools.lru_cache(maxsize=1)
def function_arguments() -> np.ndarray:
    """``table[f, a] == 1`` if pysc2 function ``f`` takes argument type ``a``.

    Shape ``(NUM_FUNCTIONS, len(ARGUMENT_TYPES))``, dtype float32 (ready to
    use as a TensorFlow constant); columns in ``ARGUMENT_TYPES`` order.
    """
    actions = pysc2_modules().actions
    type_names = [t.name for t in actions.TYPES]
    if tuple(type_names) != layers.ARGUMENT_NAMES:
        raise RuntimeError(f"pysc2 argument types {type_names} differ from "
                           f"schemas.layers.ARGUMENT_NAMES {layers.ARGUMENT_NAMES}")
    if len(actions.FUNCTIONS) != layers.NUM_FUNCTIONS:
        raise RuntimeError(f"pysc2 has {len(actions.FUNCTIONS)} functions, "
                           f"schemas.layers says {layers.NUM_FUNCTIONS}")
    table = np.zeros((layers.NUM_FUNCTIONS, len(layers.ARGUMENT_TYPES)), np.float32)
    for function in actions.FUNCTIONS:
        for arg in function.args:
            table[int(function.id), layers.ARGUMENT_NAMES.index(arg.name)] = 1.0
    table.setflags(write=False)
    return table


@functools.lru_cache(maxsize=1)
def function_names() -> tuple[str, ...]:
    """pysc2's function names, indexed by function id."""
    return tuple(f.name for f in pysc2_modules().actions.FUNCTIONS)
