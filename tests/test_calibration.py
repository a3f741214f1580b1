"""The cost model against published hardware measurements: benchmarks/calibrate.py reproduces its
committed table, the fitted assumption is the fit, and the kernel choice it relies on is made."""

import json
from dataclasses import replace
from pathlib import Path

from waferscale.backends.costs import DEFAULT, FITTED
from waferscale.backends.kernels.matmul import Gemm
from waferscale.backends.machine import WSE2

ROOT = Path(__file__).resolve().parent.parent


def test_calibration_reproduces_the_committed_table(calibrate):
    committed = json.loads((ROOT / "benchmarks" / "results" / "hardware_fidelity.json").read_text())
    assert committed["costs"] == DEFAULT.as_dict()
    rows = calibrate.table()
    assert [r["case"] for r in rows] == [r["case"] for r in committed["cases"]]
    for now, then in zip(rows, committed["cases"]):
        assert now.get("cycles") == then.get("cycles"), now["case"]
        assert now.get("mesh") == then.get("mesh"), now["case"]
    # the roles are the data file's split: three fit, five held out
    assert [r["role"] for r in rows].count("fit") == 3 and [r["role"] for r in rows].count("holdout") == 5
    fitted = [r for r in rows if r["role"] == "fit"]
    assert all(abs(r["error"]) <= calibrate.TOLERANCE for r in fitted)
    # a case off by more than the tolerance carries its reason
    assert all(r["note"] for r in rows if not r.get("within", True))


def test_the_committed_fitted_costs_are_the_fit(calibrate):
    """Each fitted cost's neighbours do no better on the fit cases (the full grid is `calibrate.py --fit`)."""
    here = calibrate.loss(DEFAULT)
    for name in FITTED:
        for step in (-1, 1):
            assert calibrate.loss(replace(DEFAULT, **{name: getattr(DEFAULT, name) + step})) >= here, name


def test_lowering_picks_the_tree_for_one_token_and_the_chain_for_many():
    def gemm(tokens):
        return Gemm(tokens=tokens, dtype="f16", elem=2, k=4096, n=4096, bias=False, flops_per_token=2 * 4096 ** 2)
    assert gemm(1).algorithm(256, 64, WSE2) == "tree reduce"
    assert gemm(2048).algorithm(256, 64, WSE2) == "chain reduce"
    # the tree's extra colors are counted where it is picked
    assert gemm(1).colors_at(256, 64, WSE2) == gemm(2048).colors_at(256, 64, WSE2) + 4


def test_the_model_level_anchors_map_to_runs_without_running_them(monkeypatch, calibrate):
    """`calibrate.py --models` (benchmarks/calibrate_models.py): each of WaferLLM's six decode anchors becomes
    one compile on WSE-2's file cut to its mesh; the error is simulated / published - 1; a run that does not
    fit is a row that says so; LLaMA2-13B's stand-in is marked and not flagged. (The compiles themselves
    take minutes: not run here.)"""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import calibrate_models as cm

    calls = []

    def fake(model, *args):
        calls.append((model, args[args.index("--target") + 1]))
        if args[args.index("--target") + 1] == "mesh:420x420" and model == "llama-3.1-8b":
            return None, ("llama-3.1-8b does not fit on mesh:420x420 in layer-pipelined mode: its weights alone take "
                          "16.06 GB; ..., and the mesh has 8.31 GB usable (176,400 cores x 47,104 B); use --systems N")
        g = {"decode_tokens_per_second_per_user": 3000.0, "placement_kind": "latency"}
        return {"report.json": {"generate": g}}, None

    monkeypatch.setattr(cm, "compile_outputs", fake)
    rows = cm.rows(calibrate.load()["model_anchors"])
    assert len(rows) == 6 and {("llama-3.1-8b", "mesh:660x660"), ("cerebras-gpt-13b", "mesh:420x420")} <= set(calls)
    by = {r["case"]: r for r in rows}
    assert by["decode LLaMA3-8B 660x660"]["error"] == 3000.0 / 2243.3 - 1
    assert not by["decode LLaMA3-8B 420x420"]["ok"] and not by["decode LLaMA2-13B 540x540"]["like_for_like"]
    md = cm.markdown(rows, calibrate.TOLERANCE)
    assert "does not run: does not fit (weights 16.06 GB, the mesh 8.31 GB of SRAM)" in md
    assert "stand-in" in md and "(outside 25%)" in md
