"""Speculative decoding's two placements: the target (with a verify step of ``k + 1`` positions on
its cost grid) and the draft, on two regions of the same wafers' meshes (``--draft-split``: the
draft on the first rows) or the draft on separate systems (``--draft-systems``). Each is placed and
simulated as ``serve/wafer.py`` places a model for serving; ``serve/speculative.py`` combines them.

The hand-off per verify step (the draft tokens to the target, the verdict back) is a few bytes, so
only latency is counted: on one wafer, twice the mesh's height in hops (our assumption, as the
disaggregated policy's boundary); on separate systems, twice the machine file's
``inter_system_latency_s`` (an assumption, stated there)."""

from __future__ import annotations

from ..backends.machine import Machine
from .speculative import Speculative, expected_tokens
from .wafer import region, wafer_costs

NAMES = ("draft", "target")


def speculative_costs(args, machine: Machine, kw: dict) -> tuple[Speculative, dict]:
    """The Speculative step cost for ``wafer serve --draft`` and the reports of both placements."""
    k = args.draft_tokens
    kw = {**kw, "max_context": kw["max_context"] + k}  # a verify step writes k + 1 rows past the last token
    if args.draft_systems:
        target_m, draft_m, draft_systems = machine, machine, args.draft_systems
        handoff = 2 * machine.inter_system_latency_s
        where = (f"the draft on {draft_systems} separate system(s), the target on {args.systems}; hand-off: twice "
                 f"the inter-system latency ({machine.inter_system_link_name}, the machine file)")
    else:
        target_m = region(machine, args.draft_split, False, NAMES, "--draft-split")
        draft_m = region(machine, args.draft_split, True, NAMES, "--draft-split")
        draft_systems = args.systems
        handoff = 2 * machine.rows * machine.hop_cycles / machine.clock_hz
        where = (f"the same wafer(s): the draft on the first {draft_m.rows} of {machine.rows} rows, the target on "
                 f"the other {target_m.rows}; hand-off: twice the mesh's height in hops (our assumption)")
    target = wafer_costs(args.model, target_m, systems=args.systems, what="target: ", verify_tokens=k + 1, **kw)
    draft = wafer_costs(args.draft, draft_m, systems=draft_systems, what="draft: ", **kw)
    cost = Speculative(target.cost, draft.cost, k, args.accept, handoff)
    spec = {"draft": args.draft, "draft_tokens": k, "accept": args.accept, "accept_basis": "given (--accept)",
            "tokens_per_verify_step": expected_tokens(args.accept, k),
            "tokens_per_verify_step_basis": "(1 - p^(k+1)) / (1 - p): each draft token accepted with probability p, "
                                            "independently (Leviathan et al. 2023); k + 1 at p = 1",
            "placement": where, "draft_systems": draft_systems, "handoff_seconds": handoff,
            "step": "k draft decode steps + one target verify step of k + 1 positions + the hand-off; a prompt "
                    "chunk: the slower of the two models' prefills (disjoint cores)"}
    return cost, {"target": target.report, "draft": draft.report, "speculative": spec}
