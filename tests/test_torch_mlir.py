"""The torch-mlir frontend: the same IR as torch.export, weight-free modules, .mlir files, clear errors."""

import functools
import json

import numpy as np
import pytest
import torch

from waferscale.cli import main
from waferscale.errors import UnsupportedError, UsageError
from waferscale.frontend.lm import trace_lm
from waferscale.frontend.torch_export import trace_module
from waferscale.frontend.torch_mlir_trace import trace_mlir_file, trace_module_mlir
from waferscale.ir import parse, print_graph
from waferscale.runtime.interpreter import run

from .conftest import traced
from .test_frontend import MaskedAttention, Mlp, Net


@functools.cache
def traced_mlir(name: str, seq: int = 16, weights: str = "auto", dtype: str = "f32"):
    return trace_lm(name, seq=seq, weights=weights, dtype=dtype, frontend="torch-mlir")


@pytest.mark.parametrize("name, seq, weights", [("tiny", 16, "random"), ("cerebras-gpt-111m", 32, "meta")])
def test_both_frontends_give_the_same_ir(name, seq, weights):
    ours = traced_mlir(name, seq=seq, weights=weights)
    assert ours.device == ("meta" if weights == "meta" else "cpu")
    assert print_graph(ours.graph) == print_graph(traced(name, seq=seq, weights=weights).graph)


@pytest.mark.parametrize("band", [None, 2])
def test_buffers_are_folded_the_same_way(band):
    # a real buffer is an inline dense literal in the module; a causal mask still becomes causal=true
    q = torch.randn(1, 2, 6, 4)
    mask = torch.ones(6, 6, dtype=torch.bool).tril()
    if band is not None:
        mask &= ~torch.ones(6, 6, dtype=torch.bool).tril(-band)
    ours = trace_module_mlir(MaskedAttention(mask), (q,), "masked")
    assert print_graph(ours.graph) == print_graph(trace_module(MaskedAttention(mask), (q,), "masked").graph)
    (att,) = [op for op in ours.graph.ops if op.kind == "attention"]
    assert att.attr["causal"] is (band is None)
    (out,) = run(ours.graph, {ours.graph.inputs[0].name: q.numpy()}, ours.weights or {})
    ref = torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask)
    np.testing.assert_allclose(out, ref.numpy(), rtol=1e-5, atol=1e-6)


def test_the_module_holds_no_weight_data_and_names_every_parameter():
    t = traced_mlir("cerebras-gpt-111m", seq=32, weights="meta")
    text = t.mlir_text()
    assert "dialect_resources" not in text and "dense<" not in text  # no blob, no inline tensor data
    assert "torch.vtensor.literal(dense_resource<transformer.wte.weight> : tensor<50257x768xf32>)" in text
    assert 'loc("transformer.h.9.attn"' in text and 'loc("input_ids")' in text
    assert t.mlir_ops > len(t.graph.ops) and len(text) < 2_000_000


@pytest.mark.parametrize("name", ["tiny", "tiny-tanh"])
def test_logits_match_pytorch_eager(name):
    t = traced_mlir(name, seq=16, weights="random")
    ids = np.random.default_rng(1).integers(0, t.info["vocab"], (1, 16))
    (ours,) = run(t.graph, {"input_ids": ids}, t.weights)
    with torch.no_grad():
        ref = t.module(torch.from_numpy(ids)).numpy()
    assert float(np.abs(ours - ref).max() / np.abs(ref).max()) <= 1e-4


CUMSUM = """!v = !torch.vtensor<[2,8],f32>
module {
  func.func @main(%arg0: !v) -> !v {
    %int-1 = torch.constant.int -1
    %none = torch.constant.none
    %0 = torch.aten.exp %arg0 : !v -> !v
    %1 = torch.aten.cumsum %0, %int-1, %none : !v, !torch.int, !torch.none -> !v
    return %1 : !v
  }
}
"""


def test_an_unsupported_op_in_a_file_names_the_op_and_its_line(tmp_path):
    f = tmp_path / "cumsum.mlir"
    f.write_text(CUMSUM)
    with pytest.raises(UnsupportedError, match=r"^not supported: torch dialect op torch\.aten\.cumsum at "
                                               r".*cumsum\.mlir:7:10 \(no converter for aten\.cumsum\.default"):
        trace_mlir_file(str(f))


def test_an_unsupported_op_in_a_module_names_the_module_path():
    with pytest.raises(UnsupportedError, match=r"torch dialect op torch\.aten\.cumsum at inner\.1 \(.*test_frontend"):
        trace_module_mlir(Net(), (torch.randn(2, 8),), "net")


def test_a_torch_operator_op_is_folded_or_named(tmp_path):
    # ops the torch dialect has no definition of come as torch.operator "torch.aten.X"
    f = tmp_path / "diff.mlir"
    f.write_text(CUMSUM.replace("torch.aten.cumsum %0, %int-1, %none : !v, !torch.int, !torch.none -> !v",
                                'torch.operator "torch.aten.diff"(%0, %int-1, %int-1, %none, %none) : '
                                "(!v, !torch.int, !torch.int, !torch.none, !torch.none) -> !v"))
    with pytest.raises(UnsupportedError, match=r"op torch\.aten\.diff at .*diff\.mlir:7:10"):
        trace_mlir_file(str(f))


def test_a_module_written_by_stock_torch_mlir_compiles(tmp_path):
    # export_and_import's own frozen import: weights inlined as blobs, parameters named by blob keys
    from torch_mlir import fx

    m, x = Mlp().eval(), torch.randn(5, 6)
    f = tmp_path / "mlp.mlir"
    f.write_text(str(fx.export_and_import(m, x, decomposition_table={})))
    g, ref = trace_mlir_file(str(f)).graph, trace_module(m, (x,), "mlp").graph
    assert [(op.kind, op.attrs, op.type) for op in g.ops] == [(op.kind, op.attrs, op.type) for op in ref.ops]
    assert sorted(p.type.shape for p in g.params) == sorted(p.type.shape for p in ref.params)


def test_a_malformed_file_is_one_line_with_its_position(tmp_path):
    f = tmp_path / "bad.mlir"
    f.write_text(CUMSUM.replace("%arg0 : !v -> !v", "%arg0 : !v ->"))
    with pytest.raises(UsageError, match=r"bad\.mlir:\d+:\d+: not a valid torch-dialect module: ") as e:
        trace_mlir_file(str(f))
    assert "\n" not in str(e.value)


def test_a_module_whose_types_torch_would_not_write_is_one_line(tmp_path):
    f = tmp_path / "mm.mlir"
    f.write_text(CUMSUM.replace("torch.aten.exp %arg0 : !v -> !v", "torch.aten.mm %arg0, %arg0 : !v, !v -> !v"))
    with pytest.raises(UsageError, match=r"torch\.aten\.mm at .*mm\.mlir:6:10 does not type-check: matmul"):
        trace_mlir_file(str(f))


def test_cli_compiles_a_model_through_torch_mlir_and_then_its_mlir_file(capsys, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["compile", "tiny", "--seq", "16", "--frontend", "torch-mlir", "-o", str(a), "-q"]) == 0
    assert sorted(p.name for p in a.iterdir()) == [".waferscale-output", "model.ir", "model.mlir", "report.json",
                                                   "report.txt"]
    c = json.loads((a / "report.json").read_text())["compile"]
    assert c["frontend"] == "torch-mlir" and c["mlir_import_seconds"] > 0 and c["mlir_import_peak_rss_bytes"] > 0
    assert main(["compile", str(a / "model.mlir"), "-o", str(b), "-q"]) == 0
    graph = lambda d: print_graph(parse((d / "model.ir").read_text()))  # the headers name different sources
    assert graph(a) == graph(b)
    r = json.loads((b / "report.json").read_text())
    assert r["model"]["seq"] == 16 and r["model"]["params"] == 141056 and r["model"]["traced_on"] == "file"
    capsys.readouterr()
    bad = tmp_path / "bad.mlir"
    bad.write_text("module {\n  garbage\n}\n")
    assert main(["compile", str(bad), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wafer: error: ") and "bad.mlir:2:3" in err and err.count("\n") == 1
    assert main(["compile", str(a / "model.mlir"), "--seq", "8", "-q"]) == 2
    assert "drop --batch and --seq" in capsys.readouterr().err
