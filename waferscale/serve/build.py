"""The step costs and policy of a `wafer serve` run from its options (an argparse Namespace, or one
made by a benchmark or a sweep point): a colocated engine, a prefill and a decode engine, or a
colocated engine with speculative decoding; each placed and simulated by ``serve/wafer.py``. A
colocated engine may run in weight-streaming mode (``execution``: ``streaming``, or ``auto`` when
layer-pipelined does not fit: ``serve/streamed.py``); the other policies are layer-pipelined."""

from __future__ import annotations


def build_policy(args, max_context: int, log, load=None):
    """The policy and its cost reports: a colocated engine, or a prefill and a decode engine. Each
    pipelined engine is placed as ``args.placement`` asks (``serve/engine_placement.py``; absent, as
    in a benchmark's own Namespace: throughput), ``auto`` at the operating point of ``load`` (a
    ``serve.engine_placement.Load`` of the requests, or None)."""
    from ..backends.machine import get_machine
    from .policies import Colocated, Disaggregated, Link
    from .wafer import region, wafer_costs

    machine = get_machine(args.target)
    kw = dict(max_context=max_context, max_batch=args.max_batch, chunk=args.chunk, dtype=args.dtype, seed=args.seed,
              placement=getattr(args, "placement", None) or "throughput", load=load, log=log)
    if getattr(args, "draft", None) is not None:  # benchmarks/serve.py builds its own Namespace
        from .draft import speculative_costs

        cost, reports = speculative_costs(args, machine, kw)
        return Colocated(cost, max_batch=args.max_batch, chunk=min(args.chunk, max_context - 1)), reports
    execution = getattr(args, "execution", None) or "pipelined"  # benchmarks/serve.py's Namespace has none
    if args.policy == "colocated":
        w = _colocated(args, machine, execution, kw, log)
        return Colocated(w.cost, max_batch=args.max_batch, chunk=min(args.chunk, max_context - 1)), {"all": w.report}
    if args.systems > 1:
        k = min(max(int(round(args.systems * args.split)), 1), args.systems - 1)
        pre = wafer_costs(args.model, machine, systems=k, what="prefill systems: ", **kw)
        dec = wafer_costs(args.model, machine, systems=args.systems - k, what="decode systems: ", **kw)
        link = Link(machine.io_bytes_per_s, machine.inter_system_latency_s,
                    f"{machine.inter_system_link_name} (the machine file)")
    else:
        pre = wafer_costs(args.model, region(machine, args.split, True), what="prefill region: ", **kw)
        dec = wafer_costs(args.model, region(machine, args.split, False), what="decode region: ", **kw)
        link = Link(machine.cols * machine.link_bytes_per_cycle * machine.clock_hz,
                    machine.rows * machine.hop_cycles / machine.clock_hz,
                    "the fabric across the regions' boundary: one link per column, one direction (machine.py); "
                    "latency: the mesh's height in hops (our assumption)")
    pol = Disaggregated(pre.cost, dec.cost, link, max_batch=args.max_batch, chunk=min(args.chunk, max_context - 1))
    return pol, {"prefill": pre.report, "decode": dec.report, "link": {"bytes_per_s": link.bytes_per_s,
                                                                       "latency_seconds": link.latency,
                                                                       "basis": link.name}}


def _colocated(args, machine, execution: str, kw: dict, log):
    """The colocated engine: layer-pipelined, weight-streaming, or (auto) the first when it fits."""
    from ..errors import FitError
    from .wafer import wafer_costs

    if execution != "auto":
        return wafer_costs(args.model, machine, systems=args.systems, execution=execution, **kw)
    try:
        w = wafer_costs(args.model, machine, systems=args.systems, **kw)
        w.report["execution_reason"] = "auto: layer-pipelined fits"
    except FitError as e:
        why = str(e).splitlines()[0]
        log(f"layer-pipelined does not fit ({why}): serving in weight-streaming mode")
        w = wafer_costs(args.model, machine, systems=args.systems, execution="streaming", **kw)
        w.report["execution_reason"] = f"auto: layer-pipelined does not fit ({why})"
    return w
