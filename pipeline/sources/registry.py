"""The observation sources by name: what ``--engine`` chooses from.

A run names its source and the options it takes in a :class:`SourceSpec`,
plain data that Beam pickles to every worker; the worker builds the source
from :data:`SOURCES`.  Adding a source is one entry here.

The headless game's source is imported only when it is built: pysc2 is not
among the package's dependencies (it is installed with ``--no-deps`` beside
it; Dataflow workers of the engine-free source do not have it), and its
import adds ~85 ms to every worker process that never uses it.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from pipeline.sources.events.source import EventsObservationSource
from pipeline.sources.interface import ObservationSource
from schemas.sample import SampleSchema

#: ``factory(schema, **options)`` -> an observation source.
SourceFactory = Callable[..., ObservationSource]


def _sc2_source(schema: SampleSchema, **options: Any) -> ObservationSource:
    # Lazy: pysc2 may be absent, and costs ~85 ms (see the module docstring).
    from pipeline.sources.sc2.source import SC2ObservationSource
    return SC2ObservationSource(schema, **options)


@dataclasses.dataclass(frozen=True)
class SourceEntry:
    """A registered source: how to build it, and which of the run's settings
    (:func:`source_spec`'s keywords) it is given, in this order."""
    factory: SourceFactory
    settings: tuple[str, ...]


#: name -> entry; the names are ``--engine``'s choices.
SOURCES: Mapping[str, SourceEntry] = {
    "events": SourceEntry(EventsObservationSource, ("step_mul", "camera_width", "fog")),
    "sc2": SourceEntry(_sc2_source, ("step_mul",)),
}
DEFAULT_SOURCE = "events"


class UnknownSourceError(ValueError):
    """A source name that :data:`SOURCES` does not hold."""

    def __init__(self, name: str):
        super().__init__(f"unknown source {name!r}; expected one of {sorted(SOURCES)}")


def source_entry(name: str) -> SourceEntry:
    try:
        return SOURCES[name]
    except KeyError:
        raise UnknownSourceError(name) from None


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """How a worker builds the run's source: a :data:`SOURCES` name and the
    keyword options its factory is called with."""
    name: str
    options: tuple[tuple[str, Any], ...] = ()

    def build(self, schema: SampleSchema) -> ObservationSource:
        return source_entry(self.name).factory(schema, **dict(self.options))


def source_spec(name: str, *, step_mul: int, fog: bool,
                camera_width: float = 24.0) -> SourceSpec:
    """The :class:`SourceSpec` of source ``name`` for a run's settings; each
    source is given the settings its entry lists.  Raises
    :class:`UnknownSourceError`."""
    settings = {"step_mul": step_mul, "camera_width": camera_width, "fog": fog}
    return SourceSpec(name, tuple((key, settings[key])
                                  for key in source_entry(name).settings))
