"""What a trained model says about one replay: win probability over the game.

The user's end of the value predictor.  Training and evaluation read the
pipeline's shards; a player with one replay file wants to see the model's
call on *that* game without running Beam.  This module samples the file
in-process exactly as a pipeline worker does (``scan.scan_replay``,
``scan.player_contexts``, the registry's source with the model's recorded
data settings, ``source.replay_samples``: see ``pipeline/job/worker.py``),
turns the samples into model inputs through the trainer's own conversion
(``trainers.input.to_model_batch``), and reports each player's win
probability over game time, the most likely actions at a few moments, and
whether the end-of-game call matches the real outcome::

    python -m trainers.predict --run RUN --replay FILE [--out DIR]
        [--checkpoint best|latest|PATH] [--moments N] [--verbose]
        [--memory_limit_mb MB] [--decode_timeout_s S] [limit flags...]

writes ``DIR/prediction.json`` (deterministic: no timestamps) and
``DIR/win_probability.png``.

The file is untrusted, as it is in the pipeline, and goes through the same
code under the same limits (:mod:`pipeline.replay.limits`, the same flags):
it is scanned (:class:`pipeline.index.scan.ScanJob`) and sampled
(:class:`~pipeline.job.worker.ReplayJob`, whose batch file this process
reads back) in a child process with a time and a memory limit, so a bomb
or a flood ends in one line naming the pipeline's error category.  Strings
from the replay reach the terminal through
:func:`pipeline.text.terminal_safe` and the plot as plain text, never
mathtext; ``prediction.json`` keeps them as they are.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import traceback
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from pipeline.index import scan
from pipeline.index.player_context import PlayerContext
from pipeline.index.scan import ScanJob
from pipeline.job.worker import JobAborted, ReplayJob
from pipeline.replay.bounded_process import JobFailure, TimedWorker
from pipeline.output import writers
from pipeline.replay import limits as limits_lib
from pipeline.replay import storage
from pipeline.replay.archive import ReplayError
from pipeline.sources.interface import SourceError
from pipeline.sources.registry import DEFAULT_SOURCE, source_spec
from pipeline.text import plot_text, terminal_safe
from schemas import layers
from schemas.sample import SampleSchema
from trainers import inference
from trainers.action_space import function_arguments, function_names
from trainers.evaluate import LOOPS_PER_MINUTE, SPATIAL_ARGS
from trainers.input import (FeatureSpec, TrainerInputError, read_fields,
                            to_model_batch)

TOP_K = 3
CONSOLE_FRACTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)       # win probability shown at these
PREDICTION_NAME = "prediction.json"
#: The one error line shows at most this much of its message.
MAX_ERROR_CHARS = 1000
PLOT_NAME = "win_probability.png"


class ReplayInputError(ValueError):
    """The replay file cannot be predicted on; the message names the file."""


def data_settings(loaded: inference.LoadedModel) -> dict[str, Any]:
    """How to sample a replay for this model: its training data's source,
    step_mul, fog and resolution (``assumed`` lists settings the run did not
    record, filled with the pipeline's defaults)."""
    recorded = dict(loaded.data_config or {})
    defaults = {"source_name": DEFAULT_SOURCE, "step_mul": 8, "fog": True,
                "resolution": loaded.spec.screen_resolution}
    assumed = sorted(k for k in defaults if recorded.get(k) is None)
    settings = {k: defaults[k] if recorded.get(k) is None else recorded[k] for k in defaults}
    if settings["source_name"] != "events":
        raise TrainerInputError(
            f"{loaded.run}: trained on samples of the {settings['source_name']!r} source; "
            "trainers.predict runs only the engine-free 'events' source")
    spec = loaded.spec
    if not spec.screen_resolution == spec.minimap_resolution == int(settings["resolution"]):
        raise TrainerInputError(
            f"{loaded.run}: the model reads {spec.screen_resolution}/"
            f"{spec.minimap_resolution} px layers but its data was made at "
            f"{settings['resolution']} px")
    return {**settings, "assumed": assumed}


@contextlib.contextmanager
def _replay_errors(replay: str) -> Iterator[None]:
    """What can go wrong with a replay file, as one :class:`ReplayInputError`."""
    try:
        yield
    except FileNotFoundError as exc:
        raise ReplayInputError(f"{replay}: no such file") from exc
    except OSError as exc:
        raise ReplayInputError(f"{replay}: cannot read it ({exc.strerror or exc})") from exc
    except (ReplayError, SourceError) as exc:
        raise ReplayInputError(f"{replay}: not a usable replay ({exc})") from exc
    except (ValueError, RecursionError) as exc:
        raise ReplayInputError(f"{replay}: {exc}") from exc


def _failed(outcome: Any) -> None:
    """A child's failure as the pipeline's :class:`ReplayError` (its category)."""
    if isinstance(outcome, JobFailure):
        raise ReplayError(outcome.category, outcome.message)
    if isinstance(outcome, scan.ScanResult) and outcome.error is not None:
        raise ReplayError(outcome.error["category"], outcome.error["message"])


def open_replay(replay: str, worker: TimedWorker, limits: limits_lib.Limits
                ) -> tuple[dict, list[dict], list[PlayerContext]]:
    """The index rows and player contexts of one file, as a pipeline worker
    gets them: the same :class:`ScanJob` in ``worker``'s bounded child
    (``scan.scan_path``), then ``scan.player_contexts``."""
    with _replay_errors(replay):
        storage.file_size(replay)          # "no such file" before a child starts
        outcome = worker.run(ScanJob(replay, None, limits.max_bytes, limits.inflate),
                             timeout_s=limits.scan_timeout_s)
        _failed(outcome)
        replay_row, player_rows = outcome.replay, outcome.players
        players = scan.player_contexts(replay_row, player_rows)
        if len(players) != 2:
            raise ValueError(f"needs a game of two human players, found "
                             f"{len(players)} human(s) ({replay_row['game_type']})")
    return replay_row, player_rows, players


def replay_samples(worker: TimedWorker, replay_row: Mapping[str, Any],
                   player_rows: Sequence[Mapping[str, Any]], settings: Mapping[str, Any],
                   limits: limits_lib.Limits) -> dict[int, list[dict]]:
    """Samples by player id, from the registry's source with the model's data
    settings: the pipeline's :class:`ReplayJob` in ``worker``'s bounded child
    (``pipeline.job.worker.sample_replay``, split ``test``), its batch file
    read back."""
    resolution = int(settings["resolution"])
    schema = SampleSchema(resolution, resolution)
    path = replay_row["path"]
    spec = source_spec(settings["source_name"], step_mul=int(settings["step_mul"]),
                       fog=bool(settings["fog"]))
    with tempfile.TemporaryDirectory(prefix="predict_") as tmp:
        outcome = worker.run(ReplayJob(
            path=path, replay_row=replay_row, player_rows=player_rows, split="test",
            output_dir=tmp, spec=spec, resolution=resolution, max_bytes=limits.max_bytes,
            inflate=limits.inflate))
        if isinstance(outcome, JobAborted):        # the temporary directory, not the file
            raise OSError(outcome.line)
        with _replay_errors(path):
            _failed(outcome)
        samples = schema.from_arrow(writers.read_batch(outcome.batch_path)) \
            if outcome.num_samples else []
    by_player: dict[int, list[dict]] = defaultdict(list)
    for sample in samples:                        # (player, game loop) order
        by_player[int(sample["player_id"])].append(sample)
    wanted = sorted(int(p["player_id"]) for p in player_rows if p["control"] == "human")
    if any(not by_player.get(pid) for pid in wanted):
        raise ReplayInputError(f"{path}: the source produced no samples for a player")
    return {pid: by_player[pid] for pid in wanted}


def decoded_batch(samples: Sequence[Mapping[str, Any]], spec: FeatureSpec) -> dict:
    """Sample dicts -> the batched tensors ``SampleSchema.tf_decode`` gives
    the trainer for the same samples (the fields of ``read_fields(spec)``, in
    each field's dtype and shape), ready for :func:`to_model_batch`."""
    schema = spec.schema
    out = {}
    for name in read_fields(spec):
        field = schema.by_name[name]
        values = [s[name] for s in samples]
        if field.is_string:
            out[name] = tf.constant([v.encode("utf-8") for v in values], tf.string)
        else:
            out[name] = tf.constant(np.asarray(values, field.np_dtype))
    return out


def inference_step(model: Any) -> Callable[[dict], dict]:
    """Model inputs -> win probability, the top-k functions of the masked
    function softmax (unavailable functions have probability 0) and each
    spatial argument's argmax (for arFullyConv: given its own top function)."""
    @tf.function(reduce_retracing=True)
    def step(inputs):
        out = model(inputs, training=False)
        top = tf.math.top_k(tf.nn.softmax(out["function"]), k=TOP_K)
        result = {"win_probability": tf.sigmoid(out["value"]),
                  "top_ids": top.indices, "top_probs": top.values}
        for arg in SPATIAL_ARGS:
            result[f"arg_{arg.name}"] = tf.argmax(out[f"arg_{arg.name}"], -1,
                                                  output_type=tf.int32)
        return result
    return step


def _run_model(step: Callable[[dict], dict], spec: FeatureSpec,
               samples: Sequence[Mapping[str, Any]], batch_size: int,
               log: Callable[[str], None], label: str) -> dict[str, np.ndarray]:
    """:func:`inference_step` over every sample, in order, in batches."""
    cols: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(samples), batch_size):
        inputs, targets, _ = to_model_batch(
            decoded_batch(samples[start:start + batch_size], spec), spec)
        for k, v in step(inputs).items():
            cols.setdefault(k, []).append(v.numpy())
        cols.setdefault("available", []).append(inputs["available_actions"].numpy() > 0)
        cols.setdefault("function_id", []).append(targets["function_id"].numpy())
        done = min(start + batch_size, len(samples))
        if len(samples) > 4 * batch_size and (done // batch_size) % 4 == 0:
            log(f"  {label}: {done}/{len(samples)} samples")
    return {k: np.concatenate(v) for k, v in cols.items()}


def _moment(out: dict[str, np.ndarray], i: int, loops: list[int], fraction: float,
            spec: FeatureSpec) -> dict:
    names, takes = function_names(), function_arguments()
    actions = []
    for rank, (fid, prob) in enumerate(zip(out["top_ids"][i].tolist(),
                                           out["top_probs"][i].tolist())):
        if prob <= 0.0 or not out["available"][i, fid]:   # fewer than k available
            continue
        action = {"function_id": fid, "function": names[fid], "probability": round(prob, 6)}
        for a, arg in enumerate(layers.ARGUMENT_TYPES):
            if rank == 0 and arg.spatial and takes[fid, a]:
                res = spec.arg_resolution(arg)
                flat = int(out[f"arg_{arg.name}"][i])
                action[arg.name] = [flat % res, flat // res]      # (x, y)
        actions.append(action)
    target = int(out["function_id"][i])
    return {"fraction": round(fraction, 4), "game_loop": loops[i],
            "minutes": round(loops[i] / LOOPS_PER_MINUTE, 4),
            "win_probability": round(float(out["win_probability"][i]), 6),
            "top_actions": actions,
            "actual_function": names[target] if target >= 0 else "unknown"}


def predict_replay(run: str, replay: str, *, checkpoint: str = "best", batch_size: int = 256,
                   moments: int = 4, log: Callable[[str], None] | None = None,
                   limits: limits_lib.Limits | None = None) -> dict:
    """The model of ``run`` (training run or shipped model) on one replay
    file: the JSON-able result :func:`write_outputs` writes (no files here).
    The file is scanned and sampled in a child process under ``limits``
    (default: the pipeline's defaults).

    Raises :class:`TrainerInputError` (the run), :class:`ReplayInputError`
    (the file)."""
    log = log or (lambda message: None)
    if batch_size < 1 or moments < 1:
        raise ValueError("batch_size and moments must be positive")
    limits = limits or limits_lib.Limits()
    worker = TimedWorker(limits.decode_timeout_s, limits.memory_limit_mb)
    try:
        replay_row, player_rows, _ = open_replay(replay, worker, limits)   # fails fast
        loaded = inference.load(run, checkpoint)   # checks every weight was restored
        settings = data_settings(loaded)
        log(f"sampling {terminal_safe(replay)} with the {settings['source_name']} source "
            f"({replay_row['game_loops']} game loops)")
        by_player = replay_samples(worker, replay_row, player_rows, settings, limits)
    finally:
        worker.close()
    step = inference_step(loaded.model)
    rows = {int(p["player_id"]): p for p in player_rows}
    game_loops = int(replay_row["game_loops"])
    players = []
    for pid, samples in by_player.items():
        log(f"predicting player {pid}: {len(samples)} samples")
        out = _run_model(step, loaded.spec, samples, batch_size, log, f"player {pid}")
        loops = [int(s["game_loop"]) for s in samples]
        won = int(samples[0]["value"]) == 1
        picks = [(i + 1) / moments for i in range(moments)]
        players.append({
            "player_id": pid, "name": rows[pid]["name"],
            "race": samples[0]["race"], "opponent_race": samples[0]["opponent_race"],
            "outcome": "win" if won else "loss", "recorded_result": samples[0]["outcome"],
            "samples": len(samples),
            "series": {"game_loop": loops,
                       "minutes": [round(g / LOOPS_PER_MINUTE, 4) for g in loops],
                       "win_probability": [round(float(p), 6)
                                           for p in out["win_probability"]]},
            "moments": [_moment(out, round(f * (len(samples) - 1)), loops, f, loaded.spec)
                        for f in picks],
        })
    return {
        "replay": {"path": str(Path(replay).resolve()), "given_path": str(replay),
                   "replay_id": replay_row["replay_id"],
                   "map": replay_row["map_name"], "base_build": int(replay_row["base_build"]),
                   "version": replay_row["version"], "game_loops": game_loops,
                   "game_minutes": round(game_loops / LOOPS_PER_MINUTE, 4),
                   "has_tracker_events": bool(replay_row["has_tracker_events"]),
                   "index_status": replay_row["status"]},
        "model": {"run": str(Path(run).resolve()), "model": loaded.config.model,
                  "checkpoint": {k: os.path.abspath(v) if k == "path" else v
                                 for k in ("selected", "step", "path", "select_metric", "note")
                                 if (v := loaded.checkpoint.get(k)) is not None},
                  "data_settings": settings},
        "players": players,
        "final": final_call(players, game_loops),
    }


def final_call(players: Sequence[Mapping[str, Any]], game_loops: int) -> dict:
    """Each player's mean win probability over the last quarter of the game
    and whether that end-of-game call (> 0.5: a win) matches the outcome."""
    since = 0.75 * game_loops
    calls = []
    for p in players:
        probs = [w for g, w in zip(p["series"]["game_loop"], p["series"]["win_probability"])
                 if g >= since] or p["series"]["win_probability"][-1:]
        mean = float(np.mean(probs))
        call = "win" if mean > 0.5 else "loss"
        calls.append({"player_id": p["player_id"], "mean_win_probability": round(mean, 6),
                      "call": call, "outcome": p["outcome"], "correct": call == p["outcome"]})
    winners = [p["player_id"] for p in players if p["outcome"] == "win"]
    favourite = max(calls, key=lambda c: (c["mean_win_probability"], -c["player_id"]))
    return {"from_game_loop": int(math.ceil(since)), "players": calls,
            "actual_winner": winners[0] if len(winners) == 1 else None,
            "predicted_winner": favourite["player_id"],
            "winner_correct": len(winners) == 1 and favourite["player_id"] == winners[0]}


def write_outputs(result: Mapping[str, Any], out_dir: str | os.PathLike) -> list[Path]:
    """``prediction.json`` and ``win_probability.png`` in ``out_dir``, each
    atomically; the plot is drawn first, so a failure leaves neither."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target, picture = out / PREDICTION_NAME, out / PLOT_NAME
    drawn = plot(result, out / f".{PLOT_NAME}.tmp.png")
    try:
        with tempfile.NamedTemporaryFile("w", dir=out, prefix=".prediction.", suffix=".tmp",
                                         delete=False) as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        os.chmod(f.name, 0o644)              # mkstemp's 0600 is for secrets, not results
        os.replace(f.name, target)
    except OSError:
        drawn.unlink(missing_ok=True)
        raise
    os.replace(drawn, picture)
    return [target, picture]


def smoothed(values: Sequence[float], minutes: Sequence[float], window_min: float = 1.0
             ) -> list[float]:
    """A centred moving average over ``window_min`` minutes of game time (the
    raw per-sample probabilities jump from one sample to the next)."""
    t = np.asarray(minutes, dtype=float)
    v = np.asarray(values, dtype=float)
    if len(v) < 3:
        return v.tolist()
    sums = np.concatenate([[0.0], np.cumsum(v)])
    lo = np.searchsorted(t, t - window_min / 2, side="left")
    hi = np.searchsorted(t, t + window_min / 2, side="right")
    return ((sums[hi] - sums[lo]) / np.maximum(hi - lo, 1)).tolist()


def player_label(p: Mapping[str, Any]) -> str:
    """``"Serral (Zerg), won"``: the name from the replay, the race, the result."""
    name = plot_text(p.get("name") or f"player {p['player_id']}", 40)
    return f"{name} ({plot_text(p['race'], 20)}), {'won' if p['outcome'] == 'win' else 'lost'}"


def plot(result: Mapping[str, Any], path: Path) -> Path:
    """Both players' win probability against game time in minutes: the raw
    per-sample points faint, a moving average over them (15 s to 1 min); the
    players named (name, race, result) in a legend below the axes, so that
    no label sits on a curve."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    replay, players = result["replay"], result["players"]
    fig, ax = plt.subplots(figsize=(9, 5.4), dpi=110)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="0.5: even game")
    ax.axvspan(0.75 * replay["game_minutes"], replay["game_minutes"], color="0.93",
               label="last quarter (end-of-game call)")
    # about 12 windows a game, from 15 s to a minute
    window = min(1.0, max(0.25, replay["game_minutes"] / 12))
    for p, colour in zip(players, ("tab:blue", "tab:red")):
        s = p["series"]
        ax.plot(s["minutes"], s["win_probability"], color=colour, linewidth=0.6, alpha=0.3)
        curve = smoothed(s["win_probability"], s["minutes"], window)
        ax.plot(s["minutes"], curve, color=colour, linewidth=2.2,
                label=f"{player_label(p)} ({window * 60:.0f} s average; faint: raw)")
        if p["outcome"] == "win":
            ax.plot(s["minutes"][-1], curve[-1], marker="*", markersize=15,
                    color=colour, markeredgecolor="black", linestyle="none",
                    label="the winner at the end")
    names = " vs ".join(plot_text(p.get("name") or f"player {p['player_id']}", 40)
                        for p in players)
    # Replay strings are drawn as text: escaped, and never parsed as mathtext
    # (a map title 'Map $\\frac{$ x' made Matplotlib fail).
    ax.set_title(f"{names} on {plot_text(replay['map'], 80)}\n"
                 f"model {result['model']['model']}, step "
                 f"{result['model']['checkpoint'].get('step')}", fontsize=11,
                 parse_math=False)
    ax.set_xlabel("game time (minutes, faster speed)")
    ax.set_ylabel("predicted win probability")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlim(0, max(replay["game_minutes"], 1e-3) * 1.03)   # room for the star
    ax.grid(alpha=0.3)
    legend = ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, fontsize=8.5,
                       frameon=False)
    for text in legend.get_texts():
        text.set_parse_math(False)
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def _clock(minutes: float) -> str:
    seconds = int(round(minutes * 60))
    return f"{seconds // 60}:{seconds % 60:02d}"


def summary(result: Mapping[str, Any]) -> list[str]:
    """The console summary of a result."""
    replay, model = result["replay"], result["model"]
    ckpt = model["checkpoint"]
    safe = terminal_safe       # every string from the replay (or a path) is shown escaped
    lines = [f"model:  {safe(model['run'])} ({model['model']}, checkpoint "
             f"{ckpt.get('selected')} step {ckpt.get('step')})",
             f"replay: {safe(replay.get('given_path', replay['path']))}",  # as typed
             f"        {safe(replay['map'])}, {replay['version']}, "
             f"{_clock(replay['game_minutes'])} ({replay['game_loops']} loops)"]
    if not replay["has_tracker_events"]:
        lines.append("        note: no tracker events: unit layers, player and score are "
                     "zeros; the predictions mean little")
    for p in result["players"]:
        s, n = p["series"], p["samples"]
        at = [min(n - 1, round(f * (n - 1))) for f in CONSOLE_FRACTIONS]
        lines.append(f"player {p['player_id']} {safe(p['race'])} vs "
                     f"{safe(p['opponent_race'])}: "
                     f"{'won' if p['outcome'] == 'win' else 'lost'}; win probability "
                     + "  ".join(f"{_clock(s['minutes'][i])} {s['win_probability'][i]:.2f}"
                                 for i in at))
    lines.append("most likely actions (masked function softmax):")
    for k in range(len(result["players"][0]["moments"])):
        for p in result["players"]:
            m = p["moments"][k]
            acts = ", ".join(
                f"{a['function']} {a['probability']:.2f}"
                + "".join(f" ({arg.name} {a[arg.name][0]},{a[arg.name][1]})"
                          for arg in SPATIAL_ARGS if arg.name in a)
                for a in m["top_actions"])
            lines.append(f"  {_clock(m['minutes'])} player {p['player_id']}: {acts}"
                         f"  [did: {m['actual_function']}]")
    final = result["final"]
    calls = "; ".join(f"player {c['player_id']} {c['mean_win_probability']:.2f} -> "
                      f"{c['call']} ({'right' if c['correct'] else 'wrong'})"
                      for c in final["players"])
    lines.append(f"end-of-game call (mean over the last quarter): {calls}")
    winner = final["actual_winner"]
    lines.append(f"actual winner: {'none' if winner is None else f'player {winner}'}; "
                 f"model's favourite: player {final['predicted_winner']} "
                 f"({'right' if final['winner_correct'] else 'wrong'})")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    from trainers.cli import predict_parser
    parser = predict_parser()
    args = parser.parse_args(argv)
    try:
        limits = limits_lib.from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    if not args.verbose:
        import absl.logging
        absl.logging.set_verbosity(absl.logging.ERROR)
        tf.get_logger().setLevel("ERROR")
    out = args.out or f"predict_{Path(args.replay).stem}"
    try:
        result = predict_replay(args.run, args.replay, checkpoint=args.checkpoint,
                                batch_size=args.batch_size, moments=args.moments, log=print,
                                limits=limits)
        written = write_outputs(result, out)
    except (TrainerInputError, ReplayError, SourceError, ValueError, OSError) as exc:
        if args.verbose:
            traceback.print_exc()
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"sc2-predict: error: {terminal_safe(message, MAX_ERROR_CHARS)}",
              file=sys.stderr)
        return 2
    print("\n".join(summary(result)))
    print("wrote " + ", ".join(terminal_safe(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
