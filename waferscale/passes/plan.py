"""Which passes a compile runs: the given pipeline or the default one (with ``--target``, its
``place`` in the asked mode, ``sparsify`` for ``--sparsity``), less what a resumed dump already
ran, up to ``--compile-to``; checked against the stages and the names ``--print-ir-after`` and
``--compile-to`` give. It needs no model and no torch, so ``wafer compile`` runs it before the
trace (``cli.checks.check_names``) and ``compile_model`` before and after reading its input."""

from __future__ import annotations

from dataclasses import replace

from ..errors import UsageError
from .base import GRAPH, Pass
from .pipeline import DEFAULT_GRAPH, DEFAULT_WAFER, check_stages, parse_pipeline, spec


def _check_names(names: tuple[str, ...], passes: list[Pass], what: str, target: str | None = None) -> None:
    known = {p.name for p in passes}
    for n in names:
        if n not in known:
            hint = ""
            if target is None and n in {p.name for p in parse_pipeline(DEFAULT_WAFER)}:
                hint = f"; {n} runs with --target (e.g. --target wse2), or name it in -p"
            raise UsageError(f"{what} {n}: the pipeline has no pass of that name (the passes that run: "
                             f"{spec(passes) or 'none'}){hint}")


def _passes(given: list[Pass] | None, target: str | None, done: list[Pass], compile_to: str | None,
            mode: str | None = None, sparsity: float | None = None, quantize: str | None = None) -> list[Pass]:
    """The passes to run: the given ones, or the default pipeline (its place in the given mode,
    with sparsify{density=sparsity} after canonicalize) less what a resumed dump already ran; up
    to the pass named compile_to."""
    if given is not None:
        if mode is not None:
            raise UsageError("--mode sets the mode of the default pipeline; with -p write place{mode=...} instead")
        if sparsity is not None:
            raise UsageError("--sparsity adds sparsify to the default pipeline; with -p write "
                             "sparsify{density=...} into it instead")
        if quantize is not None:
            raise UsageError("--weights adds quantize to the default pipeline; with -p write "
                             "quantize{weights=...} into it instead")
        passes = given
    else:
        passes = parse_pipeline(DEFAULT_WAFER if target is not None else DEFAULT_GRAPH)
        if sparsity is not None:
            passes.insert(1, parse_pipeline(f"sparsify{{density={sparsity!r}}}")[0])
        if quantize is not None:  # after canonicalize (and sparsify): the weights as the model computes with them
            passes.insert(2 if sparsity is not None else 1, parse_pipeline(quantize)[0])
        if mode is not None:
            if target is None:
                raise UsageError(f"--mode {mode} is the mode of placement on a machine: give --target too")
            passes = [replace(p, mode=mode) if p.name == "place" else p for p in passes]
        if done and [p.spec() for p in passes[:len(done)]] == [p.spec() for p in done]:
            passes = passes[len(done):]
    if compile_to is not None:
        _check_names((compile_to,), passes, "--compile-to", target)
        passes = passes[:[p.name for p in passes].index(compile_to) + 1]
    return passes


def plan_passes(given: list[Pass] | None, target: str | None, done: list[Pass], compile_to: str | None,
                mode: str | None, sparsity: float | None, print_ir_after: tuple[str, ...] = (),
                quantize: str | None = None) -> list[Pass]:
    """The passes to run (``_passes``), every name and stage checked: a UsageError line otherwise."""
    passes = _passes(given, target, done, compile_to, mode, sparsity, quantize)
    check_stages(passes, GRAPH)
    _check_names(print_ir_after, passes, "--print-ir-after", target)
    if target is None and any(p.needs_machine for p in passes):
        raise UsageError(f"the pipeline places the program on a machine ({spec(passes)}): give --target wse2, "
                         "wse3 or mesh:RxC")
    return passes
