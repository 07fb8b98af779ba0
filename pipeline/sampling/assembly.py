"""Assembles schema samples from windows, observations and replay context.

Both observation sources end here: the sampling rule (``pipeline.sampling.rule``)
decides targets, masks and window starts; a source supplies the observation
arrays at each window start; this module joins them with the per-replay
context and the outcome label into dicts that match ``schemas.sample``.
"""
from __future__ import annotations

import operator
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from pipeline.actions.action import Action
from schemas import layers

from pipeline.sampling.rule import Window
from schemas.sample import Group, SampleSchema, SchemaError, value_label


def argument_fields(schema: SampleSchema, action: Action) -> dict[str, Any]:
    """The ``arg_*`` fields of the arguments ``action`` uses."""
    out: dict[str, Any] = {}
    for name, value in action.arguments.items():
        field = schema.by_name[f"arg_{name}"]
        if field.is_array:
            out[field.name] = np.asarray(value, field.np_dtype).reshape(field.shape)
        else:
            out[field.name] = int(value)
    return out


def context_fields(schema: SampleSchema, context: Mapping[str, Any]) -> dict[str, Any]:
    """The context group, from ``context`` (missing keys take their default)."""
    out = {}
    for field in schema.fields:
        if field.group != Group.CONTEXT:
            continue
        value = context.get(field.name, field.default)
        if value is None:
            raise SchemaError(f"context field {field.name} has no value and no default")
        out[field.name] = value if field.is_string else int(value)
    return out


def build_samples(schema: SampleSchema,
                  *,
                  replay_id: str,
                  player_id: int,
                  context: Mapping[str, Any],
                  windows: Sequence[Window],
                  observations: Mapping[int, Mapping[str, np.ndarray]],
                  source: str,
                  unavailable_layers: Iterable[str],
                  has_tracker_events: bool,
                  outcome: str,
                  split: str = "") -> list[dict[str, Any]]:
    """One schema sample per window.

    ``observations[loop]`` holds, for each window start, the observation
    arrays (``minimap_*``, ``screen_*``, ``player``); ``available_actions``
    comes from the window.  Missing observation arrays are an error: a source
    that cannot fill a layer passes zeros and names it in
    ``unavailable_layers``.
    """
    ctx = context_fields(schema, context)
    label = value_label(outcome)
    unavailable = ",".join(sorted(set(unavailable_layers)))
    unused = schema.unused_arguments()
    unknown = schema.unused_arguments(layers.UNKNOWN)
    for value in (*unused.values(), *unknown.values()):
        if isinstance(value, np.ndarray):
            value.setflags(write=False)  # shared by the samples
    obs_names = [f.name for f in schema.fields
                 if f.group == Group.OBSERVATION and f.is_array and f.name != "available_actions"]
    get_obs = (operator.itemgetter(*obs_names) if len(obs_names) > 1
               else lambda obs: tuple(obs[n] for n in obs_names))
    # Every sample has the same keys in the same order: fill a copy of a
    # template (its per-window entries are overwritten below).
    template: dict[str, Any] = {
        "replay_id": replay_id,
        "player_id": int(player_id),
        "game_loop": 0,
        "split": split,
        **ctx,
    }
    template.update((name, None) for name in obs_names)
    template["available_actions"] = None
    template.update({"source": source, "unavailable_layers": unavailable,
                     "has_tracker_events": int(bool(has_tracker_events))})
    template["function_id"] = 0
    template.update(unused)
    template.update({"target_was_unavailable": 0, "value": label, "outcome": outcome})
    samples = []
    for window in windows:
        obs = observations.get(window.game_loop)
        if obs is None:
            raise SchemaError(f"no observation for window at loop {window.game_loop}")
        sample = template.copy()
        sample["game_loop"] = int(window.game_loop)
        sample.update(zip(obs_names, get_obs(obs)))
        sample["available_actions"] = window.available.astype(np.uint8, copy=False)
        target = window.target
        sample["function_id"] = int(target.function_id)
        if target.function_id == layers.UNKNOWN:
            sample.update(unknown)  # the function is unknown, so are its arguments
        elif target.arguments:
            sample.update(argument_fields(schema, target))
        sample["target_was_unavailable"] = int(window.target_was_unavailable)
        samples.append(sample)
    return samples


