"""Replays to SC2LE samples, one stage per subpackage.

Data flows one way, and so do imports: a stage imports only the stages
before it in :data:`STAGES` (and the shared helpers at the top of the package,
``pipeline.coords``, ``pipeline.filesystem``, ``pipeline.pysc2_compat``,
``pipeline.text``, and the command-line helpers ``pipeline.cli_flags``,
``pipeline.progress`` and ``pipeline.commands`` -- the last imports each
command's module by name, when it runs -- which import no stage).
``tests/test_layering.py`` checks every import of every module against this
order, the ones inside functions included.

* ``replay``   -- replay bytes: the MPQ archive, event decoding, the lobby
* ``index``    -- one row per replay and player: scan, filters, APM, splits
* ``actions``  -- a player's inputs as pysc2 actions
* ``sampling`` -- the every-8-loops window rule and sample assembly
* ``sources``  -- observations: the interface, the engine-free source, the headless game
* ``output``   -- shard writers and the run manifest
* ``job``      -- Beam transforms and the per-replay worker process
"""

#: The stages in data order; a stage may import from the ones before it.
STAGES: tuple[str, ...] = ("replay", "index", "actions", "sampling", "sources",
                           "output", "job")
#: Modules at the top of the package every stage may import.
SHARED_HELPERS: tuple[str, ...] = ("cli_flags", "commands", "coords", "filesystem", "progress",
                                   "pysc2_compat", "text")
