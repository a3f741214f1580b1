"""The resident bytes of a model's decode step (weights and KV caches), traced on the meta device at one
and two blocks and extrapolated to its depth: bytes are linear in the blocks. What
``backends/fit.py``'s bound is fed with for a model too large to trace whole in a test or a benchmark
(llama-3.1-70b: benchmarks/quantization.py and tests/test_quantize.py share it). A 1- and a 2-block
trace of llama-3.1-70b on the meta device take about two seconds together."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=32)
def traced_resident(model: str, layers: int, weights: str = "f16", capacity: int = 384,
                    position: int = 128) -> tuple[int, int]:
    """(weight bytes, KV cache bytes) of ``model``'s decode step cut to ``layers`` blocks, with ``weights``
    (``f16`` or a ``quantize`` kind) and a KV cache of ``capacity`` rows, on the meta device."""
    from ..frontend.lm import trace_lm
    from ..frontend.zoo import lookup
    from ..ir import verify
    from ..ir.ops.cache import cache_inputs
    from ..passes import CompileState, parse_pipeline, run_pipeline

    cfg = lookup(model).config()
    cfg.num_hidden_layers = layers
    t = trace_lm(cfg, batch=1, seq=1, dtype="f16", weights="meta", positions=True)
    q = f"quantize{{weights={weights}}}," if weights != "f16" else ""
    state, _ = run_pipeline(CompileState(verify(t.graph), samples=1, tokens=1, position=position),
                            parse_pipeline(f"canonicalize,kv-cache{{capacity={capacity}}},canonicalize,{q}dce"))
    g = state.graph
    return sum(p.type.nbytes for p in g.params), sum(v.type.nbytes for v in cache_inputs(g))


def resident_bytes(model: str, weights: str = "f16", capacity: int = 384, position: int = 128,
                   blocks: int | None = None) -> tuple[int, int]:
    """(weight bytes, KV cache bytes) of ``model``'s whole decode step: the 1- and 2-block traces
    extrapolated to its ``num_hidden_layers`` blocks (or to ``blocks``)."""
    from ..frontend.zoo import lookup

    blocks = blocks or lookup(model).config().num_hidden_layers
    (w1, kv1), (w2, kv2) = (traced_resident(model, n, weights, capacity, position) for n in (1, 2))
    return w1 + (blocks - 1) * (w2 - w1), kv1 + (blocks - 1) * (kv2 - kv1)
