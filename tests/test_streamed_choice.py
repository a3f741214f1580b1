"""``place{streamed_gemm=auto}`` chooses each weight-streamed layer's kernels on the layer's placed time
(``passes/streaming.choose_per_layer``), so that no layer and no step is slower than with ``sparse`` (the
stationary kernel for every dense GEMM). Each GEMM chosen alone on the whole wafer was not: on the tiny
training step below, its 15 GEMMs each faster streamed alone needed more columns than the stationary
ones in their layers, the backward layers packed into bands of half the rows and took 564,759 cycles
against 437,118, and the step 1,589,412 against sparse's 1,416,339 (auto now: 1,289,502)."""

import functools

import pytest

from waferscale.backends.kernels.matmul import Gemm
from waferscale.backends.kernels.streamed import StreamedGemm
from waferscale.driver import run_passes
from waferscale.frontend.lm import trace_lm

BATCH, SEQ, TARGET = 2, 64, "mesh:16x16,sram_kib=16"


@functools.cache
def _train_graph():
    t = trace_lm("tiny", batch=BATCH, seq=SEQ, weights="meta")
    return run_passes(t.graph, "canonicalize,autodiff,recompute", batch=BATCH, seq=SEQ).graph


@functools.cache
def _step(which):
    return run_passes(_train_graph(), f"fuse,lower,place{{mode=streaming,streamed_gemm={which}}},route,simulate",
                      batch=BATCH, seq=SEQ, target=TARGET)


def test_auto_is_never_slower_than_the_stationary_kernels_on_a_training_step():
    auto, sparse = _step("auto"), _step("sparse")
    assert any(isinstance(k.model, StreamedGemm) for k in auto.program.kernels)
    assert auto.sim.cycles < sparse.sim.cycles  # and faster here
    for a, s in zip(auto.sim.groups, sparse.sim.groups, strict=True):
        assert a.name == s.name and a.end - a.start <= s.end - s.start, a.name


def test_a_layer_takes_one_set_of_kernels_and_each_streamed_gemm_is_faster_alone():
    """Within a layer the candidates are all-or-nothing: the stationary kernels, or the GEMMs faster
    streamed alone with one block of A; so a layer's streamed GEMMs share their block."""
    from waferscale.passes.streaming import groups_of, streams_faster

    s = _step("auto")
    for name, ks in groups_of(s.program):
        models = [s.program.kernels[k].model for k in ks]
        streamed = [g for g in models if isinstance(g, StreamedGemm)]
        assert len({g.a_block for g in streamed}) <= 1, name
        for g in streamed:
            plain = Gemm(**{f: getattr(g, f) for f in Gemm.__dataclass_fields__})
            assert streams_faster(plain, g, s.machine)


@pytest.mark.parametrize("which", ["none", "all"])
def test_the_other_choices_are_as_asked(which):
    s = _step(which)
    gemms = [k.model for k in s.program.kernels if isinstance(k.model, Gemm) and not k.model.quant]
    assert all(isinstance(g, StreamedGemm) == (which == "all") for g in gemms)
