"""The pipeline translates for the DataflowRunner, offline (no job submitted).

``--dry_run`` makes the Dataflow runner build the job description and stop
before creating a Dataflow client, staging files or sending anything; the
test also refuses every socket connection to prove it.
"""
from __future__ import annotations

import json
import os
import socket

from conftest import PIPELINE_REPLAYS, REPLAYS, require_shared

EXPECTED_STEPS = [
    "MatchReplays", "ScanReplays", "ScanReplays/ReadAndScan", "DedupReplays",
    "FilterReplays", "SampleReplays", "SampleReplays/DecodeAndSample", "WriteShards",
    "WriteShards/PlanShards", "WriteShards/WriteShard", "WriteOutputs",
    "WriteOutputs/WriteIndexErrorsManifest",
]


DATAFLOW_ARGS = ["--out", "gs://example-bucket/sc2/out", "--engine", "events",
                 "--runner=DataflowRunner", "--project=example-project",
                 "--region=us-central1", "--temp_location=gs://example-bucket/tmp",
                 "--dry_run=True", "--no_auth", "--job_name=sc2-replays-test"]


def test_dataflow_workers_install_this_project():
    require_shared()
    import beam_runner
    p, _ = beam_runner.create_pipeline(
        ["--replays", str(REPLAYS / PIPELINE_REPLAYS["dream_spirit"][0])] + DATAFLOW_ARGS)
    options = p.options.get_all_options()
    assert options["setup_file"].endswith("pyproject.toml")
    assert options["direct_num_workers"] in (1, None)    # local defaults not added


def test_dataflow_translation_offline(tmp_path, monkeypatch):
    """With the worker image (see Dockerfile) the job translates without staging."""
    require_shared()
    import beam_runner

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    job_file = tmp_path / "job.json"  # written only on submission; never here
    p, config = beam_runner.create_pipeline(
        ["--replays", str(REPLAYS / PIPELINE_REPLAYS["dream_spirit"][0])] + DATAFLOW_ARGS
        + ["--sdk_container_image=gcr.io/example-project/sc2-pipeline:test",
           "--sdk_location=container", f"--dataflow_job_file={job_file}"])
    assert config.output_dir == "gs://example-bucket/sc2/out"
    result = p.run()
    proto = result.job.proto_pipeline
    names = {t.unique_name for t in proto.components.transforms.values()}
    for step in EXPECTED_STEPS:
        assert step in names, step
    # the job description the service would receive, and the worker image
    job = json.loads(result.job.json())
    assert (job["name"], job["type"]) == ("sc2-replays-test", "JOB_TYPE_BATCH")
    environments = str(proto.components.environments)
    assert "gcr.io/example-project/sc2-pipeline:test" in environments


def test_local_runner_defaults():
    """All cores in worker threads by default (the work is in their sampling
    children); one worker runs in-process; an explicit running mode is kept."""
    import beam_runner

    def local(*args):
        options = beam_runner.pipeline_options(list(args)).get_all_options()
        return options["direct_num_workers"], options["direct_running_mode"]
    assert local() == (0, "multi_threading")
    assert local("--direct_num_workers=1") == (1, "in_memory")
    assert local("--direct_num_workers", "1") == (1, "in_memory")
    assert local("--direct_num_workers=2") == (2, "multi_threading")
    assert local("--direct_num_workers=1", "--direct_running_mode=multi_processing") \
        == (1, "multi_processing")


def test_local_runner_is_named_and_its_workers_counted():
    """The local runner is the FnApiRunner by name (the DirectRunner would first
    try to download Prism); its worker count sizes the balanced steps, and a
    runner that balances by itself gets plain reshuffles (0)."""
    import beam_runner

    def runner_and_workers(*args):
        options = beam_runner.pipeline_options(list(args))
        return options.get_all_options()["runner"], beam_runner.local_workers(options)
    assert runner_and_workers() == ("FnApiRunner", os.cpu_count())
    assert runner_and_workers("--runner", "DirectRunner", "--direct_num_workers=3") \
        == ("FnApiRunner", 3)
    assert runner_and_workers("--runner=direct", "--direct_num_workers=1") == ("FnApiRunner", 1)
    assert runner_and_workers(*DATAFLOW_ARGS[2:]) == ("DataflowRunner", 0)
