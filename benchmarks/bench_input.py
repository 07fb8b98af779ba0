"""Input pipeline throughput against what a training step consumes, in one run.

    python benchmarks/bench_input.py [--data DIR] [--model fully_conv] [--batch_size 64]

Measures (1) examples/s of ``trainers.input.make_dataset`` alone (read GZIP
shards, shuffle, batched parse + decode, stack), iterated without a model;
(2) examples/s of the training step alone (FullyConv by default, on one batch
kept in memory, so no input cost); and prints the ratio, which should be >= 3
so the input never starves training.  Also prints input throughput for a few
batch sizes (cost per example as the batch grows).  Without ``--data`` it
writes synthetic 64x64 shards (tests/support/trainer_synthetic.py) to a temp folder.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def input_rate(data: str, spec, batch_size: int, batches: int) -> float:
    from trainers.input import make_dataset
    it = iter(make_dataset(data, "train", spec, batch_size=batch_size, shuffle=True,
                           repeat=True, seed=0))
    for _ in range(3):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        inputs, _ = next(it)
        inputs["screen"].numpy()  # make sure the batch is materialized
    return batches * batch_size / (time.perf_counter() - start)


def train_rate(data: str, model: str, spec_json: dict, batch_size: int, steps: int,
               out: str) -> float:
    from trainers.input import make_dataset
    from trainers.train import TrainConfig, Trainer
    config = TrainConfig(data=data, model=model, out=out, batch_size=batch_size,
                         feature_spec=spec_json)
    trainer = Trainer(config)
    inputs, targets = next(iter(make_dataset(data, "train", config.spec,
                                             batch_size=batch_size)))
    for _ in range(2):  # trace and warm up
        float(trainer.train_step(inputs, targets)["total"])
    start = time.perf_counter()
    for _ in range(steps):
        losses = trainer.train_step(inputs, targets)
    float(losses["total"])
    return steps * batch_size / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="pipeline output DIR (default: synthetic shards)")
    p.add_argument("--model", default="fully_conv")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--input_batches", type=int, default=30)
    p.add_argument("--train_steps", type=int, default=5)
    a = p.parse_args(argv)

    import tensorflow as tf
    from trainers.input import (FeatureSpec, data_resolutions, manifest_unavailable_layers,
                                shard_files)
    tmp = tempfile.TemporaryDirectory(prefix="bench_input_")
    data = a.data
    if data is None:
        sys.path.insert(0, str(REPO / "tests"))
        from schemas.sample import SampleSchema
        from support.trainer_synthetic import write_synthetic
        data = tmp.name
        write_synthetic(Path(data), SampleSchema(64, 64),
                        {"train": 16, "validation": 1, "test": 1}, loops_per_player=32,
                        shards=4)
    files = shard_files(data, "train")
    res = data_resolutions(data)
    spec = FeatureSpec.create(res[0], res[1], manifest_unavailable_layers(data))
    threads = tf.config.threading.get_inter_op_parallelism_threads()
    print(f"data {data}: {len(files)} train shards, {res[0]}px, "
          f"{len(spec.screen_layers)} screen + {len(spec.minimap_layers)} minimap layers; "
          f"inter-op threads {threads or 'default'}")

    input_eps = input_rate(data, spec, a.batch_size, a.input_batches)
    train_eps = train_rate(data, a.model, spec.to_json(), a.batch_size, a.train_steps,
                           str(Path(tmp.name) / "run"))
    ratio = input_eps / train_eps
    print(f"input pipeline alone:   {input_eps:9.1f} examples/s (batch {a.batch_size})")
    print(f"{a.model} train step: {train_eps:9.1f} examples/s (batch {a.batch_size})")
    print(f"ratio input/train:      {ratio:9.1f}x  ({'OK' if ratio >= 3 else 'BELOW'} the 3x target)")
    for bs in (16, 64, 256):
        eps = input_rate(data, spec, bs, max(4, a.input_batches * 64 // bs // 2))
        print(f"input alone, batch {bs:4d}: {eps:9.1f} examples/s "
              f"({1e3 / eps:.2f} ms per example)")
    tmp.cleanup()
    return 0 if ratio >= 3 else 1


if __name__ == "__main__":
    sys.exit(main())
