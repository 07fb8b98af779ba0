"""PNG figures for an evaluation report (matplotlib, Agg backend).

Reads only the report dict written by ``trainers.evaluate`` so plots can be
redrawn from ``eval_<split>.json`` without the model.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _err(intervals: list[dict]) -> tuple[list[float], list[list[float]]]:
    means, lo, hi = [], [], []
    for i in intervals:
        m = i["mean"]
        means.append(float("nan") if m is None else m)
        lo.append(0.0 if m is None else m - i["ci_low"])
        hi.append(0.0 if m is None else i["ci_high"] - m)
    return means, [lo, hi]


def _legend_below(ax, ncol: int = 4, fontsize: float = 8) -> None:
    """The legend under the axes, where it hides no bar, curve or error bar."""
    ax.legend(fontsize=fontsize, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol,
              frameon=False)


def _save(fig, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.close(fd)
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def write_plots(report: dict, out: Path, split: str) -> list[Path]:
    """Writes the summary, value-by-time and per-function figures; returns paths."""
    paths = []
    which = report.get("checkpoint", {}).get("selected", "latest")
    title = f"{report['model']} step {report['step']} ({which}), {split}: {report['samples']} samples, " \
            f"{report['replays']} replays (95% CI over replays)"
    m, b = report["metrics"], report["baselines"]

    # Summary: model metrics next to their baselines.
    rows = [("value acc", m["value_accuracy"], "majority outcome",
             b["majority_outcome"]["value_accuracy"]),
            ("value acc", None, "matchup prior", b["matchup_prior"]["value_accuracy"]),
            ("value acc", None, "player-features LR",
             b.get("player_features_logistic_regression", {}).get("value_accuracy")),
            ("function acc", m["function_accuracy"], "most frequent available",
             b["most_frequent_available_function"]["function_accuracy"]),
            ("action acc", m["action_accuracy"], None, None),
            ("screen exact", m["screen_exact"], None, None),
            (f"screen ±{report['within_pixels']}px",
             m[f"screen_within_{report['within_pixels']}px"], None, None),
            ("minimap exact", m["minimap_exact"], None, None)]
    fig, ax = plt.subplots(figsize=(10, 5))
    labels, model_vals, base_vals = [], [], []
    for name, model_i, base_name, base_i in rows:
        labels.append(name if base_name is None else f"{name}\nvs {base_name}")
        model_vals.append(model_i or {"mean": None})
        base_vals.append(base_i or {"mean": None})
    x = range(len(labels))
    mm, me = _err(model_vals)
    bm, be = _err(base_vals)
    ax.bar([i - 0.2 for i in x], mm, 0.4, yerr=me, capsize=3, label="model")
    ax.bar([i + 0.2 for i in x], bm, 0.4, yerr=be, capsize=3, label="baseline")
    # two-line labels, eight bars: slanted, so that neighbours never overlap
    ax.set_xticks(list(x), labels, fontsize=8, rotation=30, ha="right",
                  rotation_mode="anchor")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=8)
    paths.append(out / f"eval_{split}_summary.png")
    _save(fig, paths[-1])

    # Value accuracy against game time (SC2LE figure 8).
    paths.append(out / f"eval_{split}_value_by_time.png")
    _value_by_time(report["value_accuracy_by_game_time"], title, paths[-1])

    # Accuracy per target function (most frequent first).
    rows_f = report["function_accuracy_by_function"][:25]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.3 * len(rows_f) + 1)))
    if rows_f:
        y = range(len(rows_f))
        mm, me = _err([r["model"] for r in rows_f])
        bm, be = _err([r["most_frequent_available"] for r in rows_f])
        ax.barh([i - 0.2 for i in y], mm, 0.4, xerr=me, capsize=2, label="model")
        ax.barh([i + 0.2 for i in y], bm, 0.4, xerr=be, capsize=2,
                label="most frequent available")
        ax.set_yticks(list(y), [f"{r['name']} (n={r['count']})" for r in rows_f], fontsize=7)
        ax.invert_yaxis()
        # under the x label, whose height in axes units grows as the figure shrinks
        below = 0.08 + 0.55 / fig.get_size_inches()[1]
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -below), ncol=2,
                  frameon=False)
    ax.set_xlim(0, 1)
    ax.set_xlabel("function-id top-1 accuracy (recall per target function)")
    ax.set_title(title, fontsize=8)
    paths.append(out / f"eval_{split}_functions.png")
    _save(fig, paths[-1])
    return paths


def _value_by_time(rows: list[dict], title: str, path: Path) -> None:
    """Value accuracy per game-time bucket, model next to the baselines in
    the rows (SC2LE figure 8)."""
    rows_t = [r for r in rows if r["model"]["n"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    if rows_t:
        centers = [r["minutes"][0] + (((r["minutes"][1] or r["minutes"][0] + 2)
                                       - r["minutes"][0]) / 2) for r in rows_t]
        for key, label in (("model", "model"), ("majority_outcome", "majority outcome"),
                           ("matchup_prior", "matchup prior"),
                           ("player_features_logistic_regression", "player-features LR")):
            if key not in rows_t[0]:
                continue
            means, err = _err([r[key] for r in rows_t])
            ax.errorbar(centers, means, yerr=err, marker="o", capsize=3, label=label)
        for r, x in zip(rows_t, centers):
            ax.annotate(f"{r['model']['replays']}", (x, 0.02), ha="center", fontsize=6)
    ax.set_xlabel("game time (minutes); small numbers: replays in the bucket")
    ax.set_ylabel("value accuracy")
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=8)
    _legend_below(ax)
    _save(fig, path)


def write_crossval_plots(report: dict, out: Path) -> list[Path]:
    """Figures for ``trainers.crossval``'s report: pooled held-out value
    accuracy by game time, and value accuracy per fold next to the baselines."""
    pooled = report["pooled"]
    title = (f"{report['model']}, {report['folds']}-fold CV over replays: "
             f"{pooled['samples']} held-out samples, {pooled['replays']} replays "
             f"(95% CI over replays)")
    paths = [out / "crossval_value_by_time.png"]
    _value_by_time(pooled["value_accuracy_by_game_time"], title, paths[-1])

    folds = report["per_fold"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = list(range(len(folds)))
    for offset, key, label in ((-0.25, "value_accuracy", "model"),
                               (0.0, "majority_accuracy", "majority outcome"),
                               (0.25, "logistic_accuracy", "player-features LR")):
        ax.bar([i + offset for i in x], [f[key] for f in folds], 0.25, label=label)
    ax.set_xticks(x, [f"fold {f['fold']}\n{f['replays']} replays" for f in folds],
                  fontsize=8)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out value accuracy")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3,
              frameon=False)
    paths.append(out / "crossval_folds.png")
    _save(fig, paths[-1])
    return paths
