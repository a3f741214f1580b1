"""``--weights`` and ``--kv-dtype``: quantised weights (``passes/quantize.py``) on the command line of
``wafer compile`` (plain and ``--generate``) and ``wafer run`` (the interpreter, ``--compare``
against PyTorch's unquantised logits)."""

from __future__ import annotations

from ..errors import UsageError

# --compare's default tolerance with quantised weights: the relative error of the logits (max |diff| /
# max |logit|) expected, not a bound. One weight's relative rounding step is 1/254 of its group's max|w|
# (int8), 1/14 (int4) or 2^-4 of itself (fp8 e4m3); on the zoo's tiny configs the logits' error measured
# 0.25 to 2.7 such steps (benchmarks/results/quantization.md: the layers compound it), so the tolerance is
# 4 steps. The bound that holds for every product is checked GEMM by GEMM in tests/test_quantize.py.
COMPARE_TOL = {"int8": 4 / 254, "int4": 4 / 14, "fp8": 4 * 2.0**-4}


def add_arguments(s) -> None:
    s.add_argument("--weights", choices=["f16", "int8", "int4", "fp8"], default=None,
                   help="store linear weights quantised, with f16 scales per output channel (or per --group): adds "
                   "quantize{weights=...,group=...} to the pipeline (default: the model's dtype)")
    s.add_argument("--group", type=int, default=None, metavar="G",
                   help="with --weights: G weights along the input dimension share a scale (default 0: one scale "
                   "per output channel)")
    s.add_argument("--kv-dtype", choices=["f16", "int8", "fp8"], default=None,
                   help="with --generate: the KV cache's dtype, f16 (the model's), fp8 (e4m3, no scale) or int8 "
                   "(an f16 scale per token and head); adds quantize{kv=...} (default f16)")


def quantize_spec(args) -> str | None:
    """The quantize pass the options ask for, or None."""
    kv = getattr(args, "kv_dtype", None) or "f16"
    weights, group = getattr(args, "weights", None) or "f16", getattr(args, "group", None)
    if group is not None and weights == "f16":
        raise UsageError("--group is the scale group of quantised weights: add --weights int8, int4 or fp8")
    if group is not None and group < 0:
        raise UsageError(f"--group {group} must be >= 0 (0: one scale per output channel)")
    if weights == "f16" and kv == "f16":
        return None
    return f"quantize{{weights={weights},group={group or 0},kv={kv}}}"


def quantize_run(args, graph, weights, log):
    """The traced graph and weights with quantised weights (``wafer run --weights``), or as they are."""
    q = quantize_spec(args)
    if q is None:
        return graph, weights
    from ..passes import CompileState, parse_pipeline, run_pipeline

    state, _ = run_pipeline(CompileState(graph, samples=1, tokens=1, weights=weights, log=log), parse_pipeline(q))
    log(f"{q}: {state.graph.op_counts().get('dequantize', 0)} weights quantised")
    if args.tol == 1e-4 and args.weights in COMPARE_TOL:  # the default: the quantised weights' expected error
        args.tol = COMPARE_TOL[args.weights]
    return state.graph, state.weights
