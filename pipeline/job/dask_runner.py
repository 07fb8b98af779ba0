"""Beam's Dask runner, with the translation gaps this job falls into closed.

``beam_runner.py --runner DaskRunner`` runs :class:`DaskRunner` below: Beam's
own ``apache_beam.runners.dask.dask_runner.DaskRunner`` (same ``--dask_*``
options, same ``dask.distributed`` client) with its graph translation fixed
where Beam 2.77's version would silently give wrong output or no parallelism:

* **tagged outputs**: Beam's translation puts a ``ParDo``'s main and tagged
  outputs in one bag, so every consumer of ``errors``, ``duplicates`` or
  ``filtered`` would also receive the main output (and vice versa).  Here a
  ``ParDo``'s bag holds ``(tag, value)`` pairs and each consumer reads only
  its tag.
* **side inputs**: Beam's translation ships the side input's bag inside the
  task and computes it there, in a second, separate graph: everything
  upstream of a side input ran again for each side input (the sampling step
  three times).  Here a side input is a dependency of the task in the one
  graph, computed once and handed to the task as a list.
* **Reshuffle**: Beam's translation drops it, so the whole job ran in as many
  partitions as its ``Create`` had (one, for a single input directory): one
  task, one worker.  Here it repartitions the bag into ``--dask_npartitions``
  partitions (default: two per worker thread of the cluster).
* **sinks**: Beam's translation computes only the last transform visited;
  here every transform whose output nobody reads is computed.
* the client is closed when the job ends (else it keeps trying to reconnect
  to a scheduler that has gone, and a local cluster it started lives on).

Still missing (documented in docs/pipeline.md): Beam metrics (``metrics()``
raises ``NotImplementedError``), windowing other than the global window,
timestamps, state and timers, splittable DoFns and streaming.
"""
from __future__ import annotations

import dataclasses
import functools
import typing as t

import dask.bag as db
import dask.distributed as ddist
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from apache_beam import DoFn, pvalue
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.runners.common import (DoFnContext, DoFnInvoker, DoFnSignature,
                                        _OutputHandler)
from apache_beam.runners.dask import dask_runner as beam_dask
from apache_beam.runners.dask import overrides as beam_overrides
from apache_beam.runners.dask import transform_evaluator as beam_eval
from apache_beam.runners.runner import PipelineState
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.utils.windowed_value import WindowedValue

#: default partitions per worker thread for a Reshuffle
PARTITIONS_PER_THREAD = 2


def _run_bundle(items: t.Iterable[t.Any], side_specs: list[tuple[type, t.Any, t.Any]],
                invoker_args: list, invoker_kwargs: dict, receivers: beam_eval.OneReceiver,
                *side_values: list[t.Any]) -> list[tuple]:
    """One partition through one DoFn: ``[(tag, value), ...]`` (tag None = main)."""
    side_inputs = [SideInputMap(view, options, [beam_eval.get_windowed_value(v, window_fn)
                                                for v in values])
                   for (view, options, window_fn), values in zip(side_specs, side_values)]
    receivers.values.clear()
    invoker = DoFnInvoker.create_invoker(*invoker_args, side_inputs=side_inputs,
                                         **invoker_kwargs)
    invoker.invoke_setup()
    invoker.invoke_start_bundle()
    for item in items:
        invoker.invoke_process(item)
    invoker.invoke_finish_bundle()
    invoker.invoke_teardown()
    out = []
    for value in receivers.values:
        tag = value.tag if isinstance(value, beam_eval.TaggedOutput) else None
        inner = value.value if isinstance(value, beam_eval.TaggedOutput) else value
        out.append((tag, inner.value if isinstance(inner, WindowedValue) else inner))
    return out


def _concat(partitions: list[t.Iterable[t.Any]]) -> list[t.Any]:
    return [item for partition in partitions for item in partition]


def _tag_is(pair: tuple, tag: str | None) -> bool:
    return pair[0] == tag


def _value(pair: tuple) -> t.Any:
    return pair[1]


def _pardo(applied: AppliedPTransform, input_bag: db.Bag, side_bags: list[db.Bag],
           side_specs: list[tuple]) -> db.Bag:
    """A ``ParDo`` as a bag of ``(tag, value)`` pairs; side inputs are
    dependencies in the graph (the invoker's arguments are built as in
    Beam's ``transform_evaluator.ParDo``)."""
    transform = applied.transform
    args, kwargs = transform.raw_side_inputs
    window_fn = _window_fn(applied)
    receivers = beam_eval.OneReceiver()
    invoker_args = [
        DoFnSignature(transform.fn),
        _OutputHandler(window_fn=window_fn, main_receivers=receivers[None],
                       tagged_receivers=receivers, per_element_output_counter=None,
                       output_batch_converter=None, process_yields_batches=False,
                       process_batch_yields_elements=False),
    ]
    invoker_kwargs = dict(context=DoFnContext(transform.label, state=None),
                          input_args=list(args), input_kwargs=kwargs,
                          user_state_context=None,
                          bundle_finalizer_param=DoFn.BundleFinalizerParam())
    return input_bag.map(beam_eval.get_windowed_value, window_fn).map_partitions(
        _run_bundle, side_specs, invoker_args, invoker_kwargs, receivers,
        *[_as_list(bag) for bag in side_bags])


def _as_list(bag: db.Bag) -> Delayed:
    """The whole bag as one list, over the bag's own partition keys.

    Not ``bag.reduction(...)`` nor ``delayed(list)(bag)``: dask hands a
    collection passed to ``map_partitions`` a private, renamed copy of its
    graph (``ProhibitReuse``), so everything upstream of each side input
    would run again.  A ``Delayed`` passed on its own is referenced by key.
    """
    key = "side-input-" + bag.name
    layer = {key: (_concat, [(bag.name, i) for i in range(bag.npartitions)])}
    return Delayed(key, HighLevelGraph.from_collections(key, layer, dependencies=[bag]))


def _window_fn(applied: AppliedPTransform):
    main_input = next(iter(applied.main_inputs.values()))
    return main_input.windowing.windowfn if hasattr(main_input, "windowing") else None


class _Repartition(beam_eval.DaskBagOp):
    """``Reshuffle``: spread the elements over ``npartitions`` partitions."""

    def apply(self, input_bag: db.Bag, side_inputs: beam_eval.OpSide = None) -> db.Bag:
        return input_bag.repartition(npartitions=self.bag_kwargs["reshuffle_npartitions"])


class DaskJobFailed(RuntimeError):
    """A sink of the job did not finish (lost or cancelled on the cluster)."""


@dataclasses.dataclass
class DaskRunnerResult(beam_dask.DaskRunnerResult):
    """Fails when a sink did not finish (Beam's result reports DONE for a
    future the scheduler lost); closes the client once the job has ended."""

    def wait_until_finish(self, duration=None) -> str:
        try:
            state = super().wait_until_finish(duration)
            unfinished = {f.key: f.status for f in self.futures if f.status != "finished"}
            if state == PipelineState.DONE and unfinished:
                self._state = PipelineState.FAILED
                raise DaskJobFailed(f"Dask tasks did not finish: {unfinished}")
            return state
        finally:
            if self._state in (PipelineState.DONE, PipelineState.FAILED):
                self.client.close()


class DaskRunner(beam_dask.DaskRunner):
    """Executes a pipeline on a ``dask.distributed`` cluster."""

    @staticmethod
    def to_bags(pipeline, bag_kwargs: dict) -> list[db.Bag]:
        """Translates the (overridden) pipeline; returns its sink bags."""
        bags: dict[AppliedPTransform, db.Bag] = {}
        tagged: set[AppliedPTransform] = set()
        consumed: set[AppliedPTransform] = set()

        def bag_of(value: pvalue.PValue) -> db.Bag:
            producer = value.producer
            consumed.add(producer)
            bag = bags[producer]
            if producer in tagged:
                bag = bag.filter(functools.partial(_tag_is, tag=value.tag)).map(_value)
            return bag

        class Visitor(PipelineVisitor):
            def visit_transform(self, node: AppliedPTransform) -> None:
                transform_class = node.transform.__class__
                inputs = [bag_of(v) for v in node.inputs if not isinstance(v, pvalue.PBegin)]
                if transform_class is beam_overrides._Reshuffle:
                    op = _Repartition(node, bag_kwargs=bag_kwargs)
                else:
                    op_class = beam_eval.TRANSLATIONS.get(transform_class, beam_eval.NoOp)
                    op = op_class(node, bag_kwargs=bag_kwargs)
                if isinstance(op, beam_eval.ParDo):
                    specs = [(type(si), si._view_options(), si._window_mapping_fn)
                             for si in node.side_inputs]
                    sides = [bag_of(si.pvalue) for si in node.side_inputs]
                    bags[node] = _pardo(node, inputs[0], sides, specs)
                    tagged.add(node)
                elif isinstance(op, beam_eval.Flatten):
                    bags[node] = op.apply(inputs)
                else:
                    bags[node] = op.apply(inputs[0] if inputs else None)

        pipeline.visit(Visitor())
        return [bag for node, bag in bags.items() if node not in consumed]

    def run_pipeline(self, pipeline, options):
        dask_options = options.view_as(beam_dask.DaskOptions).get_all_options(
            drop_default=True, current_only=True)
        bag_kwargs = beam_dask.DaskOptions._extract_bag_kwargs(dask_options)
        client = ddist.Client(**dask_options)
        threads = sum(client.nthreads().values()) or 1
        bag_kwargs["reshuffle_npartitions"] = (bag_kwargs.get("npartitions")
                                               or PARTITIONS_PER_THREAD * threads)
        try:
            pipeline.replace_all(beam_overrides.dask_overrides())
            sinks = self.to_bags(pipeline, bag_kwargs)
            futures = client.compute(sinks, optimize_graph=False)
        except BaseException:
            client.close()
            raise
        return DaskRunnerResult(client, futures)
