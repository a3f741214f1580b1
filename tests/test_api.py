"""The Python API, ``waferscale.compile``: a user's own nn.Module with example inputs (report, IR,
placement, and numbers equal to PyTorch's), the same path as ``wafer compile``, and the README's
example, run as written."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import waferscale
from waferscale.cli import main
from waferscale.errors import UnsupportedError, UsageError

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "guide.md"  # the README's guide, moved


class Mlp(torch.nn.Module):
    def __init__(self, d=24, f=40):
        super().__init__()
        self.up, self.down = torch.nn.Linear(d, f), torch.nn.Linear(f, d)

    def forward(self, x):
        return self.down(torch.relu(self.up(x))) + x


class Block(torch.nn.Module):
    """A pre-norm transformer block of our own: causal attention and a GELU MLP."""

    def __init__(self, d=32, heads=4):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.qkv, self.proj = torch.nn.Linear(d, 3 * d), torch.nn.Linear(d, d)
        self.fc1, self.fc2 = torch.nn.Linear(d, 4 * d), torch.nn.Linear(4 * d, d)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = (t.view(b, s, self.heads, d // self.heads).transpose(1, 2)
                   for t in self.qkv(self.norm1(x)).split(d, dim=-1))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, s, d)
        x = x + self.proj(a)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def _err(got, want):
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.mark.parametrize("module,shape", [(Mlp, (3, 24)), (Block, (2, 16, 32))])
def test_a_module_of_our_own_compiles_places_and_computes_what_pytorch_does(module, shape):
    torch.manual_seed(0)
    m = module().eval()
    x = torch.randn(*shape)
    c = waferscale.compile(m, (x,), target="mesh:24x24")
    r = c.report
    assert r["model"]["source"] == "module" and r["model"]["name"] == module.__name__
    assert r["model"]["batch"] == shape[0] and r["model"]["seq"] == (shape[1] if len(shape) == 3 else 1)
    assert r["model"]["params"] == sum(p.numel() for p in m.parameters()) == r["model"]["torch_params"]
    assert r["time"]["cycles"] >= r["time"]["roofline_cycles"] > 0
    assert r["program"]["kernels"] == len(c.placement["kernels"]) >= 2
    assert c.ir.startswith("# waferscale") and "linear" in c.ir
    with torch.no_grad():
        want = m(x).numpy()
    assert _err(c.run(x)[0], want) <= 1e-5  # placed: every kernel tile by tile on its rectangle
    assert _err(c.run(x, placed=False)[0], want) <= 1e-5  # the interpreter on the compiled graph
    assert _err(c.run({c.graph.inputs[0].name: x.numpy()})[0], want) <= 1e-5


def test_a_module_without_a_target_stops_at_the_graph_and_still_runs():
    m, x = Block().eval(), torch.randn(1, 8, 32)
    c = waferscale.compile(m, x, pipeline="canonicalize,fuse")
    assert "time" not in c.report and c.placement is None and c.program is None
    assert c.graph.op_counts()["fused"] >= 3
    with torch.no_grad():
        assert _err(c.run(x)[0], m(x).numpy()) <= 1e-5


def test_the_api_says_what_is_wrong_in_one_line():
    with pytest.raises(UsageError, match="needs example_inputs"):
        waferscale.compile(Mlp())
    with pytest.raises(UsageError, match="drop batch and seq"):
        waferscale.compile(Mlp(), torch.randn(2, 24), seq=8)
    with pytest.raises(UsageError, match="no weights to compute with"):
        waferscale.compile("cerebras-gpt-111m", seq=8, weights="meta").run(np.zeros((1, 8), dtype=np.int64))

    class Cumulative(torch.nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=-1)

    class Outer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Cumulative()

        def forward(self, x):
            return self.inner(x) * 2

    with pytest.raises(UnsupportedError) as e:
        waferscale.compile(Outer(), torch.randn(2, 5))
    assert "\n" not in str(e.value)
    assert "aten.cumsum.default" in str(e.value) and "at inner" in str(e.value)


def test_wafer_compile_is_the_api(tmp_path):
    # the command line and the function give the same report, compile timings aside
    assert main(["compile", "tiny", "--seq", "16", "--target", "mesh:32x32", "-q", "-o", str(tmp_path / "c")]) == 0
    cli = json.loads((tmp_path / "c" / "report.json").read_text())
    api = waferscale.compile("tiny", seq=16, dtype="f16", target="mesh:32x32")
    c2 = api.write(tmp_path / "a")
    assert tmp_path / "a" / "report.json" in c2
    again = json.loads((tmp_path / "a" / "report.json").read_text())
    for r in (cli, again):
        r.pop("compile"), r.pop("host")
    assert cli == again
    assert (tmp_path / "c" / "model.ir").read_text() == api.ir


def test_the_readme_example_runs_as_written():
    text = GUIDE.read_text()
    section = text[text.index("## The Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(compile(code, str(GUIDE), "exec"), scope)  # noqa: S102  (our own guide)
    c = scope["c"]
    assert c.report["time"]["cycles"] > 0
    assert scope["err"] <= 1e-5


def test_anything_else_is_refused_in_one_line():
    with pytest.raises(UsageError, match="cannot compile a int: pass a zoo name"):
        waferscale.compile(3)


def test_a_dump_of_a_module_compiles_to_the_same_report(tmp_path):
    m, x = Block().eval(), torch.randn(1, 8, 32)
    c = waferscale.compile(m, x, target="mesh:16x16", print_ir_after="canonicalize")
    c.write(tmp_path / "a")
    again = waferscale.compile(str(tmp_path / "a" / "ir" / "01-canonicalize.ir"), target="mesh:16x16")
    a, b = dict(c.report), dict(again.report)
    assert a["run"]["model"]["kind"] == "module" and b["run"]["model"]["kind"] == "ir"
    for r in (a, b):
        r.pop("compile"), r.pop("host"), r.pop("run")  # the same graph from two sources
        r["model"] = {k: v for k, v in r["model"].items() if k not in ("traced_on", "source")}
    assert a == b
