"""Energy per token: the energy section of `wafer compile` (a forward pass of a batch) and of `wafer
compile --generate` (a decode step) for cerebras-gpt-111m and llama-3.1-8b on WSE-2 and WSE-3, each in
a fresh process; and a whole-wafer f32 GEMM beside the one published energy figure we found for a
wafer (Miyajima et al.'s SGEMM on a CS-2); and the decode of llama-3.1-8b with int8 weights on a
WSE-3 (a quantised run) and of the tiny MoE on a small mesh (a mixture-of-experts run; qwen3-235b-a22b's
energy is benchmarks/moe.py's).

    python benchmarks/energy.py [--models cerebras-gpt-111m,llama-3.1-8b] [--targets wse2,wse3]
                                [--prompt-len 128] [--new-tokens 256] [--seq 2048] [--batch 4] [--no-extra]
    python benchmarks/energy.py --reference   # the fully busy GEMM's events per core-cycle (calibration)

Writes benchmarks/results/energy.md and .json. Every figure is simulated and costed by the energy
model of waferscale/backends/energy.py (per-event energies scaled from 45 nm times a core overhead fitted
so that a busy wafer draws 23 kW, static power assumed at 32% of it), with the band of its uncertainty
(report.json energy.band): a model, not a measurement.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import results_io  # benchmarks/ is on sys.path when a script here runs
from results_io import args_or_render, command, compile_outputs, heading, write

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Miyajima, Matsuzaki, Mukunoki, "Single-precision Matrix Multiplication Performance on Cerebras CS-2:
# Evaluation and Modelling of Performance, Scalability and Energy Efficiency", Journal of Information
# Processing 34 (2026) 132-139: SGEMM of 33,000 x 33,000 on 750 x 750 PEs of a CS-2, 349.0 TFLOP/s and
# 79.66 GFLOP/s per W (so about 4.38 kW drawn while it ran).
MIYAJIMA = {"n": 33_000, "tflops": 349.0, "gflops_per_watt": 79.66, "pes": (750, 750),
            "source": "Miyajima, Matsuzaki, Mukunoki, J. Information Processing 34 (2026) 132-139 (abstract)"}


def energy_row(e: dict) -> dict:
    return {"joules_per_step": e["joules_per_step"], "joules_per_token": e["joules_per_token"],
            "tokens_per_joule": e["tokens_per_joule"], "average_watts": e["average_watts"], "per": e["per"],
            "share_by_class": e["share_by_class"], "seconds_per_step": e["seconds_per_step"],
            "tokens_per_step": e["tokens_per_step"],
            "band": {k: e["band"][k]["joules_per_token"] for k in ("low", "high")}}


# Rows beside the dense f16 ones: (model, target, kind, extra flags).
EXTRA = [("llama-3.1-8b", "wse3", "decode", ["--weights", "int8"]),
         ("tiny-moe", "mesh:64x64", "decode", ["--expert-routing", "zipf:1.2", "--prompt-len", "64", "--new-tokens",
                                               "32"])]  # tiny-moe: a context of 128 positions


def one(model: str, target: str, kind: str, a, extra: tuple = ()) -> dict:
    row = {"model": model, "target": target, "kind": kind}
    if kind == "decode":
        args = ["--target", target, "--generate", "--prompt-len", str(a.prompt_len), "--new-tokens",
                str(a.new_tokens), "--batch", "1", *extra]
    else:
        args = ["--target", target, "--seq", str(a.seq), "--batch", str(a.batch), *extra]
    out, error = compile_outputs(model, *args)
    if error:
        return row | {"ok": False, "error": error}
    return row | {"ok": True, "args": " ".join(args), **energy_row(out["report.json"]["energy"])}


def gemm_state(target: str, tokens: int, k: int, n: int, dtype: str):
    from waferscale.driver import run_passes
    from waferscale.ir import GraphBuilder
    from waferscale.ir.types import TensorType

    b = GraphBuilder("gemm")
    x = b.input("x", TensorType((1, tokens, k), dtype))
    w = b.param("w", TensorType((k, n), dtype))
    g = b.output(b.op("linear", x, w, loc="gemm"))
    return run_passes(g, "lower,place,route,simulate", batch=1, seq=tokens, target=target)


def sgemm() -> dict:
    """Miyajima et al.'s SGEMM size as one f32 linear layer on a WSE-2: our GFLOP/s per W beside theirs."""
    from waferscale.report.energy import run_energy

    n = MIYAJIMA["n"]
    s = gemm_state("wse2", n, n, n, "f32")
    e = run_energy(s)
    flops = 2.0 * n ** 3
    seconds = e["seconds_per_step"]
    ours = flops / seconds / e["average_watts"] / 1e9
    return {"n": n, "cores_used": s.placement.cores_used, "seconds": seconds, "tflops": flops / seconds / 1e12,
            "average_watts": e["average_watts"], "gflops_per_watt": ours, "share_by_class": e["share_by_class"],
            "published": MIYAJIMA, "error": ours / MIYAJIMA["gflops_per_watt"] - 1,
            "published_watts": 1e3 * MIYAJIMA["tflops"] / MIYAJIMA["gflops_per_watt"]}


def reference() -> None:
    from waferscale.backends.energy import REFERENCE_GEMM
    from waferscale.report.energy import state_events

    r = REFERENCE_GEMM
    for target in ("wse2", "wse3"):
        s = gemm_state(target, r["tokens"], r["k"], r["n"], r["dtype"])
        ev = state_events(s)
        cc = s.sim.cycles * s.placement.cores_used
        print(f'"{target}": ({ev.fmacs[r["dtype"]] / cc:.5f}, {ev.sram_read_bytes / cc:.5f}, '
              f'{ev.sram_write_bytes / cc:.5f}, {ev.wavelet_hops / cc:.5f}),')
    # and the model at the band's two ends and between (docs/energy.md, "The band")
    from waferscale.backends.energy import BUSY_WATTS_BAND, LEAKAGE_BAND, LEAKAGE_SHARE, energy_model
    from waferscale.backends.machine import get_machine

    for end, watts, leak in (("low", BUSY_WATTS_BAND[0], LEAKAGE_BAND[0]), ("model", None, LEAKAGE_SHARE),
                             ("high", BUSY_WATTS_BAND[1], LEAKAGE_BAND[1])):
        ms = {t: energy_model(get_machine(t), system_watts=watts, leakage=leak) for t in ("wse2", "wse3")}
        w = ms["wse2"]
        over = " / ".join(f"x{m.core_overhead:.2f}" for m in ms.values())
        print(f"{end}: busy {w.system_watts / 1e3:.2f} kW, leakage {100 * leak:.0f}%, static "
              f"{w.static_watts / 1e3:.2f} kW ({100 * w.static_share:.0f}%), core overhead {over}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="cerebras-gpt-111m,llama-3.1-8b")
    p.add_argument("--targets", default="wse2,wse3")
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--no-extra", action="store_true", help="only the dense f16 rows (no int8, no MoE row)")
    p.add_argument("--reference", action="store_true", help="print the busy reference's events per core-cycle")
    a = args_or_render(p, "energy", markdown)
    if a.reference:
        reference()
        return
    from waferscale.backends.energy import energy_model
    from waferscale.backends.machine import get_machine

    rows = []
    for m in a.models.split(","):
        for t in a.targets.split(","):
            for kind in ("forward", "decode"):
                r = one(m, t, kind, a)
                rows.append(r)
                print(f"{m} {kind} on {t}: " + (f"{1e3 * r['joules_per_token']:.4g} mJ/token, "
                      f"{r['average_watts'] / 1e3:.2f} kW" if r["ok"] else r["error"]), flush=True)
    for m, t, kind, flags in ([] if a.no_extra else EXTRA):
        r = one(m, t, kind, a, tuple(flags))
        rows.append(r)
        print(f"{m} {kind} {' '.join(flags)} on {t}: " + (f"{1e3 * r['joules_per_token']:.4g} mJ/token"
              if r["ok"] else r["error"]), flush=True)
    record = {"command": command(), "machine": results_io.machine(), "rows": rows, "sgemm": sgemm(),
              "models": {t: energy_model(get_machine(t)).as_dict() for t in a.targets.split(",")}}
    write("energy", record, markdown(record))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if x >= 1e-3 else f"{100 * x:.1g}%"


def markdown(record: dict) -> str:
    md = (heading("Energy per token", record) + ". Forward: a batch through the "
          "layer-pipelined program (per token of the batch); decode: `--generate`, batch 1, the mean decode step "
          "(per generated token). Simulated and costed by waferscale/backends/energy.py (docs/energy.md): a model, "
          "not a measurement.\n\n"
          "| model | target | run | J per token | band (J per token) | tokens per J | average kW | fmac | sram "
          "| fabric | off-wafer | static |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for r in record["rows"]:
        if not r["ok"]:
            md += f"| {r['model']} | {r['target']} | {r['kind']} | {r['error'][:160]} |||||||||\n"
            continue
        sh = r["share_by_class"]
        band = r.get("band") or {}
        md += (f"| {r['model']} | {r['target']} | {r['kind']} (`{r['args']}`) | {r['joules_per_token']:.4g} | "
               + (f"{band['low']:.3g} to {band['high']:.3g} | " if band else "| ")
               + f"{r['tokens_per_joule']:.3g} | {r['average_watts'] / 1e3:.2f} | "
               + " | ".join(_pct(sh[k]) for k in ("fmac", "sram", "fabric", "off_wafer", "static")) + " |\n")
    s = record["sgemm"]
    pub = s["published"]
    md += (f"\n## Beside a published energy figure\n\n{pub['source']}: SGEMM of {pub['n']:,} x {pub['n']:,} on "
           f"{pub['pes'][0]} x {pub['pes'][1]} PEs of a CS-2, {pub['tflops']} TFLOP/s at {pub['gflops_per_watt']} "
           f"GFLOP/s per W, so about {s['published_watts'] / 1e3:.2f} kW.\n\n"
           f"Here, the same size as one f32 linear layer on a WSE-2 ({s['cores_used']:,} cores): "
           f"{s['tflops']:.1f} TFLOP/s at {s['average_watts'] / 1e3:.2f} kW, {s['gflops_per_watt']:.2f} GFLOP/s per W: "
           f"{100 * s['error']:+.0f}% against the published figure. The model is calibrated to the 23 kW a busy "
           f"CS-3 is published to draw (static {100 * s['share_by_class']['static']:.0f}% of this run); the "
           "measurement says a CS-2 running SGEMM draws far less, the low end of the band (docs/energy.md).\n")
    md += "\n## The energy models\n\n"
    for t, m in record["models"].items():
        md += (f"- {t}: f16 FMAC {m['fmac_pj']['f16']:.3f} pJ, f32 FMAC {m['fmac_pj']['f32']:.3f} pJ, SRAM "
               f"{m['sram_read_pj_per_byte']:.3f} pJ/B, hop {m['hop_pj_per_wavelet']:.3f} pJ/wavelet, system I/O "
               f"{m['io_pj_per_byte']:.1f} pJ/B (FMAC and SRAM with the fitted core overhead "
               f"x{m['core_overhead']:.2f}), static {m['static_watts'] / 1e3:.2f} kW ({100 * m['static_share']:.0f}% "
               f"of {m['system_watts'] / 1e3:g} kW, assumed: cooling {100 * m['cooling_share']:.0f}% and leakage "
               f"{100 * m['leakage_share']:.0f}% of the rest)\n")
    return md


if __name__ == "__main__":
    main()
