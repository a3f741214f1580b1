"""A step graph lowered for another shape than it was traced for (serving: fewer sequences, a
shorter prompt chunk), and a ragged step simulated as one (``simulate(then=...)``: programs of the
same kernels one after another through one placed pipeline), on the tiny model."""

import pytest

from waferscale.backends import assumptions as A
from waferscale.backends.lowering import lower
from waferscale.backends.machine import get_machine
from waferscale.modes.generate import step_graphs
from waferscale.passes.place import place
from waferscale.passes.route import route
from waferscale.runtime.tile_sim import simulate

B, P, T = 4, 8, 8


@pytest.fixture(scope="module")
def steps():
    return step_graphs("tiny", prompt_len=P, new_tokens=T, batch=B, dtype="f16", machine=get_machine("mesh:32x32"))


def per_token(prog):
    return ([(f.src, f.dst, f.bytes_per_token, f.elements_per_token) for f in prog.flows],
            [k.model.flops_per_token for k in prog.kernels if hasattr(k.model, "flops_per_token")],
            [getattr(k.model, "groups", None) for k in prog.kernels])


@pytest.mark.parametrize("graph, traced, other", [
    ("decode", (B, 1), [(1, 1), (2, 1), (1, 5)]),  # fewer sequences; a verify step's tokens
    ("prefill", (B, P), [(1, P), (1, 1), (1, 3), (2, 4)]),  # one prompt; short chunks
])
def test_a_step_graphs_per_token_figures_do_not_depend_on_the_shape_it_is_lowered_for(steps, graph, traced, other):
    """Its per-token figures divide its types by the tokens they hold (the positions' count), not by
    the run's tokens: lowered for one sequence instead of four they were four times too large, and a
    1-token prompt chunk of an 8-token trace eight times (its row-wise kernels and flows)."""
    g = (steps.decode_state if graph == "decode" else steps.prefill_state).graph
    ref = per_token(lower(g, *traced, 0))
    for samples, tokens in other:
        prog = lower(g, samples, tokens, 0)
        assert (prog.samples, prog.tokens) == (samples, tokens)
        assert per_token(prog) == ref


@pytest.fixture(scope="module")
def placed(steps):
    g = steps.decode_state.graph
    prog = lower(g, B, 1, P)
    placement = place(prog, get_machine("mesh:32x32"))
    return g, placement, route(prog, placement)


def test_a_ragged_run_of_one_shape_is_the_run_of_that_shape(placed):
    """Two 1-sequence decode programs one after another are the 2-sequence program, to the cycle; a
    1-sequence run is unchanged by an empty ``then``."""
    g, placement, routing = placed
    one, two = lower(g, 1, 1, P), lower(g, 2, 1, P)
    assert simulate(one, placement, routing, chunk=1, then=((one, 1),)).cycles == \
        simulate(two, placement, routing, chunk=1).cycles
    assert simulate(one, placement, routing, chunk=1, then=()).cycles == simulate(one, placement, routing, 1).cycles


def test_a_mixed_step_pays_the_pipelines_fill_once(placed, steps):
    """Decode tokens of two sequences and a prompt chunk of 4 tokens in one run: more than either
    part alone, less than both one after the other (each pays the pipeline's fill)."""
    g, placement, routing = placed
    dec = lower(g, 2, 1, P)
    chunk = lower(steps.prefill_state.graph, 1, 4, 2)
    d = simulate(dec, placement, routing, chunk=1).cycles
    c = simulate(chunk, placement, route(chunk, placement), chunk=A.CHUNK_TOKENS).cycles
    both = simulate(dec, placement, routing, chunk=1, then=((chunk, A.CHUNK_TOKENS),)).cycles
    assert max(d, c) < both < d + c


def test_then_refuses_programs_of_other_kernels(placed, steps):
    g, placement, routing = placed
    prog = lower(g, 1, 1, P)
    other = lower(steps.prefill_state.graph, 1, 4, 0)
    other = type(other)(other.graph, other.kernels[:-1], other.flows, 1, 4, other.outputs)
    with pytest.raises(AssertionError, match="same kernels"):
        simulate(prog, placement, routing, chunk=1, then=((other, A.CHUNK_TOKENS),))
