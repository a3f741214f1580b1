"""The cost model's accounting held to hand counts: SRAM traffic per token through the ports,
the datapath's rate per dtype, and which roofline term binds."""

import pytest

from waferscale.backends.datapath import Datapath
from waferscale.backends.kernels.attention import Attention
from waferscale.backends.kernels.base import roofline_cycles
from waferscale.backends.kernels.embedding import Embedding
from waferscale.backends.kernels.matmul import Gemm
from waferscale.backends.kernels.rowwise import Rowwise
from waferscale.backends.machine import WSE2, WSE3, get_machine


def test_axpy_runs_at_the_slowest_of_lanes_and_ports():
    assert Datapath(lanes=4, elem=2, acc=2).axpy(100) == 25  # f16: 8 B of weights, 8 B of sums per cycle
    assert Datapath(lanes=4, elem=2, acc=4).axpy(100) == 50  # f32 sums: the one write port halves it
    assert Datapath(lanes=8, elem=2, acc=2).axpy(100) == 25  # 8 lanes, fed at 4 by the ports
    assert Datapath(lanes=1, elem=4, acc=4).axpy(100) == 100  # f32: one lane
    assert Datapath(lanes=4, elem=2, acc=2).dot(100) == 25
    assert Datapath(lanes=4, elem=2, acc=2).axpy_traffic(10) == (40, 20)


def test_gemm_sram_traffic_per_token_is_the_axpy_count():
    g = Gemm(tokens=16, dtype="f16", elem=2, k=768, n=3072, bias=False, flops_per_token=2 * 768 * 3072)
    w = g.work(0, 1)
    # every MAC reads a weight (2 B) and a partial sum (2 B) and writes the partial sum (2 B)
    assert (w.sram_read, w.sram_write) == (768 * 3072 * 4, 768 * 3072 * 2)
    w32 = Gemm(tokens=16, dtype="f32", elem=4, k=768, n=3072, bias=False, flops_per_token=2 * 768 * 3072).work(0, 3)
    assert (w32.sram_read, w32.sram_write) == (3 * 768 * 3072 * 8, 3 * 768 * 3072 * 4)


def test_attention_sram_traffic_per_key_is_a_dot_and_an_axpy():
    a = Attention(tokens=8, dtype="f16", elem=2, heads=2, d_head=16, causal=True)
    w = a.work(0, 8)  # causal: 1 + 2 + ... + 8 = 36 keys per head
    pairs = 2 * 36 * 16
    assert w.sram_read == pairs * (3 * 2 + 2)  # q, k, v and the sums
    assert w.sram_write == pairs * 2


def test_rowwise_and_embedding_traffic():
    r = Rowwise(tokens=4, dtype="f16", elem=2, op="layernorm", features=100, inputs=1, params=2,
                flops_per_token=800)
    w = r.work(0, 4)
    assert (w.sram_read, w.sram_write) == (4 * 100 * 3 * 2, 4 * 100 * 2)
    e = Embedding(tokens=4, dtype="f16", elem=2, vocab=50, d=64, flops_per_token=0)
    assert (e.work(0, 4).sram_read, e.work(0, 4).sram_write) == (4 * 64 * 2, 0)


@pytest.mark.parametrize("machine,dtype,bound", [(WSE2, "f32", "compute"), (WSE3, "f16", "sram"),
                                                  (get_machine("mesh:64x64,fmac=8"), "f16", "sram")])
def test_the_sram_roofline_binds_where_the_ports_are_the_limit(machine, dtype, bound):
    elem = 2 if dtype == "f16" else 4
    g = Gemm(tokens=64, dtype=dtype, elem=elem, k=4096, n=4096, bias=False, flops_per_token=2 * 4096 * 4096)
    roof = roofline_cycles(g.work(0, 64), 64, 64, machine, dtype)
    assert max(roof, key=roof.get) == bound
    if bound == "sram":  # 8 f16 lanes want 32 B of reads a cycle; the ports give 16
        assert roof["sram"] == pytest.approx(2 * roof["compute"])
    cost = g.chunk(64, 64, 0, 64, machine)
    assert cost.bound == bound and cost.cycles >= cost.roofline


def test_a_wse2_f16_gemm_fills_the_ports_exactly():
    g = Gemm(tokens=64, dtype="f16", elem=2, k=4096, n=4096, bias=False, flops_per_token=2 * 4096 * 4096)
    roof = roofline_cycles(g.work(0, 64), 64, 64, WSE2, "f16")
    assert roof["sram"] == pytest.approx(roof["compute"])
