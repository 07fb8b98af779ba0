"""Renders engine-free samples to PNG so a person can check them by eye.

Labels that look right in numbers can still be wrong on the map (flipped y,
wrong scale, enemies visible through fog).  This entry point runs the
engine-free source on one replay and draws, for chosen loops, the minimap
and screen layers ``player_relative``, ``unit_type``, ``selected`` and
``camera`` / ``unit_density`` with the sample's target action marked::

  python -m pipeline.sources.events.render --replay FILE --player 1 --loops 800,4000,12000 --out DIR

Each loop is rounded down to its window start; one PNG per loop.
"""
from __future__ import annotations

import os
import sys
import tempfile
from typing import Any, Sequence

import numpy as np

from pipeline import cli_flags
from pipeline.sources.events.source import EventsObservationSource
from pipeline.index.player_context import PlayerContext
from pipeline.index.scan import LOOPS_PER_SECOND
from pipeline.pysc2_compat import pysc2_modules
from pipeline.replay.archive import ReplayArchive
from schemas.sample import SampleSchema

PANELS = (("minimap_player_relative", "minimap"), ("minimap_unit_type", "minimap"),
          ("minimap_selected", "minimap"), ("minimap_camera", "minimap"),
          ("screen_player_relative", "screen"), ("screen_unit_type", "screen"),
          ("screen_selected", "screen"), ("screen_unit_density", "screen"))
# player_relative palette: background, self, ally, neutral, enemy.
RELATIVE_COLORS = ("#000000", "#22c322", "#2288ff", "#c8c8c8", "#e02020")


def function_name(function_id: int) -> str:
    """pysc2's name for a function id (imports pysc2 through the compat layer)."""
    return str(pysc2_modules().actions.FUNCTIONS[function_id].name)


def render_sample(sample: dict[str, Any], path: str) -> None:
    """Writes one sample's panels to ``path`` (PNG, written atomically)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import colors, pyplot

    fig, axes = pyplot.subplots(2, 4, figsize=(16, 8.6))
    relative_cmap = colors.ListedColormap(RELATIVE_COLORS)
    for ax, (name, kind) in zip(axes.ravel(), PANELS):
        layer = sample[name]
        if name.endswith("player_relative"):
            ax.imshow(layer, cmap=relative_cmap, vmin=0, vmax=4, interpolation="nearest")
        elif name.endswith("unit_type"):
            ids = np.unique(layer)
            remap = np.searchsorted(ids, layer)
            ax.imshow(remap, cmap="tab20", interpolation="nearest")
            for uid in ids[ids > 0][:12]:
                ys, xs = np.nonzero(layer == uid)
                ax.annotate(str(int(uid)), (xs.mean(), ys.mean()), color="white", fontsize=6)
        else:
            ax.imshow(layer, cmap="hot", interpolation="nearest")
        point = sample[f"arg_{kind}"]
        if point[0] >= 0:
            ax.plot([point[0]], [point[1]], marker="x", color="cyan", markersize=12, mew=2)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fid = int(sample["function_id"])
    # pysc2's player vector: id, minerals, vespene, food used, food cap, ...
    vector = [int(v) for v in sample["player"].tolist()]
    seconds = int(int(sample["game_loop"]) / LOOPS_PER_SECOND)
    fig.suptitle(f"replay {sample['replay_id'][:12]}, player {sample['player_id']}, "
                 f"{seconds // 60}:{seconds % 60:02d} (game loop {sample['game_loop']})\n"
                 f"minerals {vector[1]}, vespene {vector[2]}, supply {vector[3]}/{vector[4]}; "
                 f"action taken: {function_name(fid)} (id {fid}), one of "
                 f"{int(sample['available_actions'].sum())} available; x: its target point",
                 fontsize=11)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".png.tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=80)
        os.replace(tmp, path)
    finally:
        pyplot.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)


def main(argv: Sequence[str] | None = None) -> int:
    parser = cli_flags.Parser(prog="sc2-render",
                              description="Render engine-free samples to PNG.")
    parser.add_argument("--replay", required=True, help="one .SC2Replay file")
    parser.add_argument("--player", type=int, default=1, help="whose view: player 1 or 2")
    parser.add_argument("--loops", default="800,4000,12000",
                        help="comma-separated game loops")
    parser.add_argument("--out", required=True, help="directory to write the PNGs into")
    parser.add_argument("--no_fog", action="store_true", help="show every unit")
    parser.add_argument("--resolution", type=int, default=64,
                        help="screen and minimap resolution (pixels per side)")
    args = parser.parse_args(argv)
    with open(args.replay, "rb") as f:
        archive = ReplayArchive(f.read(), path=args.replay)
    schema = SampleSchema(args.resolution, args.resolution)
    source = EventsObservationSource(schema, fog=not args.no_fog)
    samples = source.replay_samples(archive, [PlayerContext(args.player, "undecided", {})])
    by_loop = {s["game_loop"]: s for s in samples[args.player]}
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.splitext(os.path.basename(args.replay))[0].replace(" ", "_")
    for loop in (int(v) for v in args.loops.split(",") if v.strip()):
        start = min(loop - loop % source.step_mul, max(by_loop))
        path = os.path.join(args.out, f"{stem}_p{args.player}_loop{start}.png")
        render_sample(by_loop[start], path)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
