"""The step costs and policy of a `wafer serve` run from its options (an argparse Namespace, or one
made by a benchmark or a sweep point): a colocated engine, a prefill and a decode engine, or a
colocated engine with speculative decoding; each placed and simulated by ``serve/wafer.py``."""

from __future__ import annotations


def build_policy(args, max_context: int, log):
    """The policy and its cost reports: a colocated engine, or a prefill and a decode engine."""
    from ..backends.machine import get_machine
    from .policies import Colocated, Disaggregated, Link
    from .wafer import region, wafer_costs

    machine = get_machine(args.target)
    kw = dict(max_context=max_context, max_batch=args.max_batch, chunk=args.chunk, dtype=args.dtype, seed=args.seed,
              log=log)
    if getattr(args, "draft", None) is not None:  # benchmarks/serve.py builds its own Namespace
        from .draft import speculative_costs

        cost, reports = speculative_costs(args, machine, kw)
        return Colocated(cost, max_batch=args.max_batch, chunk=min(args.chunk, max_context - 1)), reports
    if args.policy == "colocated":
        w = wafer_costs(args.model, machine, systems=args.systems, **kw)
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
