"""The placer's widths hold their kernel's buffers even where SRAM per core does not fall with the
width: grouped-query attention (32 query heads, 8 key/value heads, as Llama 3.1 8B) on 11 columns
puts 3 query heads on a column, which may read 2 key/value heads where 4 heads on 8 columns read 1.
A width chosen for its stage time was not checked again (serving llama-3.1-8b in weight-streaming
mode at max batch 64 failed the placement verifier on 768x11 cores)."""

from types import SimpleNamespace

from waferscale.backends.kernels.attention import Attention
from waferscale.backends.machine import get_machine
from waferscale.passes.place import _Sizer


def test_a_width_chosen_for_its_time_is_widened_until_its_cores_hold_the_kernel():
    att = Attention(tokens=1, dtype="f16", elem=2, heads=32, d_head=128, causal=True, capacity=768, position=512,
                    resident=64, kv_heads=8)
    m = get_machine("wse3")
    fits = {w: sum(att.sram(768, w).values()) <= m.usable_sram_bytes for w in (8, 11, 12, 16)}
    assert fits == {8: True, 11: False, 12: False, 16: True}  # not monotone in the width
    s = _Sizer(SimpleNamespace(kernels=[SimpleNamespace(model=att)], tokens=1), m, 1172)
    assert s.min_width(0) == 8
    target = s.time(0, 11)  # 11 columns meet it, 8 do not
    assert s.time(0, 8) > target
    w = s.width_for(0, 8, target)
    assert w == 16 and s.sram(0, w) <= m.usable_sram_bytes and s.time(0, w) <= target
