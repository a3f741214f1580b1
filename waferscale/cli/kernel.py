"""`wafer simulate-kernel`: the cycles of one mesh GEMM or GEMV, at the PE level, the tile level, or both."""

from __future__ import annotations

from .. import limits as L
from ..errors import UsageError
from .console import progress


def cmd_simulate_kernel(args) -> int:
    import re

    import numpy as np

    from ..backends import assumptions as A
    from ..backends.gemm import fastest, gemm_time, sparse_gemm_time
    from ..backends.machine import get_machine
    from ..backends.sparse import SparseWeight, draw_mask

    m = 1 if args.kind == "gemv" else args.m
    if args.kind == "gemv" and args.m not in (None, 1):
        raise UsageError(f"a gemv has m = 1; got --m {args.m} (use `simulate-kernel gemm`)")
    if m is None or args.k is None or args.n is None:
        raise UsageError(f"{args.kind} needs {'--m, ' if args.kind == 'gemm' else ''}--k and --n")
    if min(m, args.k, args.n) < 1:
        raise UsageError(f"--m, --k and --n must be at least 1 (got m={m} k={args.k} n={args.n})")
    sparse = args.density is not None
    if sparse and not 0 <= args.density <= 1:
        raise UsageError(f"--density is the fraction of W's weights kept, from 0 to 1 (got {args.density})")
    if sparse and args.reduce == "tree":
        raise UsageError("not supported: sparse weights with the tree reduce at the tile level (use --reduce chain)")
    machine = get_machine(f"mesh:{args.mesh}" if re.fullmatch(r"\d+x\d+(,.*)?", args.mesh) else args.mesh)
    lanes = machine.datapath(args.dtype)
    rows, cols = min(machine.rows, args.k), min(machine.cols, args.n)
    head = (f"{args.kind} [{m}x{args.k}] @ [{args.k}x{args.n}] on {machine.name} ({machine.rows}x{machine.cols}; "
            f"{rows}x{cols} cores used), {args.dtype}: {lanes.lanes:g} FMAC lane(s) per core, {lanes.acc}-byte "
            f"accumulators, {lanes.port}-byte SRAM ports")
    if args.level in ("pe", "both"):
        check_pe_work(m, args, machine, lanes, rows, cols)
    mask = None
    if sparse:  # a seeded random mask, costed from the mask where lowering would draw one, else in distribution
        if args.k * args.n <= A.SPARSE_DRAW_LIMIT or args.level != "tile":
            mask = draw_mask(args.k, args.n, args.density, args.seed, "w")
        reduce = "chain"
        tile = sparse_gemm_time(m, SparseWeight("w", args.k, args.n, args.density, mask=mask), machine.rows,
                                machine.cols, lanes, resident_a=args.resident_a, machine=machine)
        head += (f"; sparse W, density {args.density:g} ({'mask' if mask is not None else 'in distribution'}"
                 f", seed {args.seed})")
    elif args.reduce == "auto":
        reduce, tile = fastest(m, args.k, args.n, machine.rows, machine.cols, lanes, args.resident_a, machine)
    else:
        reduce = args.reduce
        tile = gemm_time(m, args.k, args.n, machine.rows, machine.cols, lanes, reduce=reduce,
                         resident_a=args.resident_a, machine=machine)
    head += f"; {reduce} reduce, A {'resident' if args.resident_a else 'streamed from the west edge'}"
    ok = True
    if args.level in ("pe", "both"):
        from ..runtime.pe_sim import simulate_gemm

        print(head)
        rng = np.random.default_rng(args.seed)
        a = rng.standard_normal((m, args.k), dtype=np.float32)
        w = rng.standard_normal((args.k, args.n), dtype=np.float32)
        log = progress(False)  # on a terminal, a bar of the cycles against the tile level's estimate
        try:
            r = simulate_gemm(a, w, machine.rows, machine.cols, lanes, sram_bytes=machine.usable_sram_bytes,
                              reduce=reduce, resident_a=args.resident_a, mask=mask, depth=machine.pe_queue_depth,
                              machine=machine,
                              progress=lambda c: log(f"simulating: {c:,}/{max(tile.total, c):,} PE-level cycles"))
        finally:
            log.close()
        ref = a.astype(np.float64) @ (w if mask is None else w * mask)
        err = float(np.abs(r.c - ref).max() / max(np.abs(ref).max(), 1e-30))
        ok = err <= 1e-5 and not r.violations
        print(f"pe level:   {r.cycles} cycles ({r.wall_s:.2f} s simulated at {r.pe_cycles_per_s:.3g} PE-cycles/s, "
              f"{r.sram_bytes_per_core} B SRAM per core)")
        print(f"  numerics: max relative error vs NumPy {err:.2e} (max |diff| / max |C|; tolerance 1e-05): "
              f"{'ok' if err <= 1e-5 else 'FAILED'}")
        print("  wavelets: " + ("every router sent on what it received (none lost or duplicated)" if not r.violations
                                else "CONSERVATION FAILED: " + "; ".join(r.violations)))
    else:
        print(head)
    if args.level in ("tile", "both"):
        print(f"tile level: {tile.total} cycles (fill {tile.fill} + {tile.tokens} tokens x step {tile.step})")
    if args.level == "both":
        print(f"tile vs pe: {100 * (tile.total - r.cycles) / r.cycles:+.2f}% ((tile - pe) / pe)")
    return 0 if ok else 1


def check_pe_work(m: int, args, machine, lanes, rows: int, cols: int) -> None:
    """Refuse a PE-level run whose operands or simulated work (limits.py) are too large, before any is made."""
    from ..backends.gemm import fastest, gemm_time
    from ..runtime.pe_machine import check_machine

    check_machine(machine, lanes)  # the simulators' own check (hop, ramp, partial-sum add), before any work

    operands = 4 * (m * args.k + args.k * args.n)  # A and W in float32, made before the simulation
    if operands > L.MAX_PE_OPERAND_BYTES:
        raise UsageError(f"the PE level would build {operands / 2**30:.1f} GiB of operands (A and W in f32), "
                         f"more than {L.MAX_PE_OPERAND_BYTES / 2**30:.0f} GiB: use a smaller --m/--k/--n "
                         "or --level tile")
    from ..runtime.pe_sim import core_sram_bytes

    need = core_sram_bytes(args.k, args.n, machine.rows, machine.cols, machine.pe_queue_depth)
    if need > machine.usable_sram_bytes:
        raise UsageError(f"the PE level needs {need} bytes of SRAM per core for this shape and a core has "
                         f"{machine.usable_sram_bytes}: use a larger mesh, a smaller matrix or --level tile")
    # the tile model's cycles (dense: a sparse W only takes fewer) are the PE level's to within a few per cent
    if args.density is not None or args.reduce != "auto":
        est = gemm_time(m, args.k, args.n, machine.rows, machine.cols, lanes,
                        reduce="chain" if args.density is not None else args.reduce, resident_a=args.resident_a,
                        machine=machine)
    else:
        est = fastest(m, args.k, args.n, machine.rows, machine.cols, lanes, args.resident_a, machine)[1]
    work = est.total * rows * cols
    if est.total > L.MAX_PE_SIM_CYCLES or work > L.MAX_PE_SIM_PE_CYCLES:
        raise UsageError(f"the PE level would simulate about {est.total:,} cycles on {rows}x{cols} cores "
                         f"({work:.2g} PE-cycles), more than its limits of {L.MAX_PE_SIM_CYCLES:,} cycles and "
                         f"{L.MAX_PE_SIM_PE_CYCLES:.0e} PE-cycles (minutes to hours): use a smaller --m (the cycles "
                         "grow with it), a larger mesh or a smaller --k/--n, or --level tile")


def add_parser(sub) -> None:
    s = sub.add_parser("simulate-kernel", help="cycles of one mesh GEMM or GEMV: PE level, tile level, or both")
    s.add_argument("kind", choices=["gemm", "gemv"], help="gemm: A [m x k] @ W [k x n]; gemv: m = 1")
    s.add_argument("--m", type=int, help="rows of A (tokens); a gemv has 1 (no default: a gemm needs it)")
    s.add_argument("--k", type=int, help="inner dimension (no default: needed)")
    s.add_argument("--n", type=int, help="columns of W (outputs) (no default: needed)")
    s.add_argument("--mesh", default="8x8", help="RxC cores (or wse2, wse3, mesh:RxC,fmac=8,...)")
    s.add_argument("--level", choices=["pe", "tile", "both"], default="both",
                   help="the PE-level (wavelet by wavelet) simulation, the tile-level model, or both compared")
    s.add_argument("--dtype", choices=["f16", "bf16", "f32"], default="f16", help="sets the FMAC lanes")
    s.add_argument("--seed", type=int, default=0, help="seed of the random A and W")
    s.add_argument("--reduce", choices=["auto", "chain", "tree"], default="auto",
                   help="the column reduce: a chain down each column, WaferLLM's two-level centre-rooted "
                        "tree, or auto (the faster at the tile level, as lowering picks); default auto")
    s.add_argument("--resident-a", action="store_true",
                   help="A is in the cores' SRAM at the start (as WaferLLM's GEMV benchmark), not streamed in")
    s.add_argument("--density", type=float,
                   help="sparse W: keep this fraction of its weights (a random mask of --seed; the chain reduce; "
                   "default: dense)")
    s.set_defaults(fn=cmd_simulate_kernel)
