"""Quantised weights (issue 30): decode rates of a model on a wafer with f16 and quantised weights,
the systems llama-3.1-70b needs, and the interpreter's quantisation error on tiny configs.

    python benchmarks/quantization.py [--model llama-3.1-8b] [--target wse3]
                                      [--weights f16,int8,int4,fp8,f16+kv-fp8,int8+kv-fp8,f16+kv-int8]
                                      [--prompt-len 128] [--new-tokens 256] [--render]

A case W+kv-fp8 also holds the KV caches in fp8 (--kv-dtype fp8), W+kv-int8 in int8 codes and row scales
(--kv-dtype int8). Rows of cases not run this time are
kept from benchmarks/results/quantization.json, each with the command that measured it.

Each rate is `wafer compile MODEL --target T --generate --batch 1 --weights W` in a fresh process:
simulated, not measured (waferscale/backends/assumptions.py; the dequantise in the datapath is
DEQUANTIZE_IN_DATAPATH). The systems are the bytes bound of waferscale/backends/fit.py, from
llama-3.1-70b's decode step traced on the meta device with 1 and 2 blocks (bytes are linear in the
blocks). The errors are `wafer run MODEL --weights W --compare`'s: max |logit diff| / max |logit|
against PyTorch's unquantised model, random weights (seed 0), 32 tokens. Writes
benchmarks/results/quantization.md and .json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import results_io  # benchmarks/ is on sys.path when a script here runs
from results_io import args_or_render, command, compile_outputs, write

CALIBRATION = Path(__file__).resolve().parent / "calibration" / "published_kernels.json"
CEREBRAS_FACT = "Cerebras Inference decode (CS-3, multi-wafer, 16-bit weights)"
# Cerebras' published Llama 3.1 8B decode rate on CS-3 (tokens/s per user), with 16-bit weights: the
# only precision Cerebras publishes rates for (published_kernels.json; Cerebras blog 27 Aug 2024).
CEREBRAS_8B = 1800.0


def rate(model: str, target: str, case: str, prompt_len: int, new_tokens: int) -> dict:
    weights, _, kv = case.partition("+kv-")
    args = ["--target", target, "--generate", "--prompt-len", str(prompt_len), "--new-tokens", str(new_tokens),
            "--batch", "1"] + (["--weights", weights] if weights != "f16" else []) + (["--kv-dtype", kv] if kv else [])
    row = {"model": model, "target": target, "weights": case}
    out, error = compile_outputs(model, *args)
    if error:
        return row | {"ok": False, "error": error}
    r = out["report.json"]
    g = r["generate"]
    return row | {"ok": True, "pipeline": r["pipeline"], "weight_gb": g["weight_bytes"] / 1e9,
                  "decode_us_per_token": 1e6 * g["decode_seconds_per_token"],
                  "decode_tokens_per_s": g["decode_tokens_per_second_per_user"],
                  "ttft_ms": 1e3 * g["ttft_seconds"], "cores_used": sum(s["cores_used"] for s in g["systems_detail"]),
                  "sram_peak_bytes_per_core": max(s["sram_peak_bytes_per_core"] for s in g["systems_detail"]),
                  "kv_cache_mib": g["kv_cache_bytes"] / 2**20, "systems_needed": g["fit"]["systems_needed"],
                  "placement_kind": g.get("placement_kind", "throughput")}


def systems_70b(weights: str, target: str) -> dict:
    from waferscale.backends.fit import systems_needed
    from waferscale.backends.machine import get_machine
    from waferscale.studies.resident import resident_bytes

    w, kv = resident_bytes("llama-3.1-70b", weights)  # 1 and 2 blocks traced on meta, extrapolated to 80
    fit = systems_needed(w, kv, get_machine(target))
    return {"weights": weights, "weight_gb": w / 1e9, "kv_cache_gb": kv / 1e9, **fit}


def error(model: str, weights: str) -> dict:
    import torch

    from waferscale.frontend.lm import trace_lm
    from waferscale.passes import CompileState, parse_pipeline, run_pipeline
    from waferscale.runtime.interpreter import run

    t = trace_lm(model, batch=1, seq=32, dtype="f32", weights="random", seed=0)
    ids = np.random.default_rng(0).integers(0, t.info["vocab"], (1, 32))
    s, _ = run_pipeline(CompileState(t.graph, samples=1, tokens=32, weights=t.weights),
                        parse_pipeline(f"quantize{{weights={weights}}}"))
    (logits,) = run(s.graph, {s.graph.inputs[0].name: ids}, s.weights)
    with torch.no_grad():
        ref = t.module(torch.from_numpy(ids)).numpy()
    return {"model": model, "weights": weights, "relative_error": float(np.abs(logits - ref).max() / np.abs(ref).max())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="llama-3.1-8b")
    p.add_argument("--target", default="wse3")
    p.add_argument("--weights", default="f16,int8,int4,fp8")
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=256)
    a = args_or_render(p, "quantization", markdown)
    cases = a.weights.split(",")
    rows = []
    for w in cases:
        rows.append(rate(a.model, a.target, w, a.prompt_len, a.new_tokens))
        r = rows[-1]
        print(f"{a.model} on {a.target}, {w}: " + (f"{r['decode_tokens_per_s']:,.0f} tokens/s" if r["ok"]
                                                     else r["error"]), flush=True)
    old = results_io.RESULTS / "quantization.json"
    if old.exists():  # the rows of other cases, as an earlier command measured them
        before = json.loads(old.read_text())
        ran = {(x["model"], x["target"], x["weights"]) for x in rows}
        rows = [{"command": before["command"], **r} for r in before["rows"]
                if (r["model"], r["target"], r["weights"]) not in ran] + [{"command": command(), **r} for r in rows]
        order = ["f16", "int8", "int4", "fp8", "f16+kv-fp8", "int8+kv-fp8", "f16+kv-int8", "int8+kv-int8"]
        rows.sort(key=lambda r: (r["model"], r["target"], order.index(r["weights"]) if r["weights"] in order else 99))
    kinds = ["f16", "int8", "int4", "fp8"]
    fit = [systems_70b(w, a.target) for w in kinds]
    errors = [error(m, w) for m in ("tiny", "tiny-llama") for w in kinds if w != "f16"]
    facts = [f for f in json.loads(CALIBRATION.read_text())["facts"] if f["fact"] == CEREBRAS_FACT]
    record = {"command": command(), "machine": results_io.machine(), "prompt_len": a.prompt_len,
              "new_tokens": a.new_tokens, "rows": rows, "fit_llama_3_1_70b": fit, "errors": errors,
              "published": facts}
    write("quantization", record, markdown(record))


def markdown(record: dict) -> str:
    cmds = ", ".join(dict.fromkeys(f"`{r.get('command', record['command'])}`" for r in record["rows"]))
    md = (f"# Quantised weights: decode rates, systems, error\n\n{cmds} on {record['machine']}; "
          f"prompt {record['prompt_len']} tokens, {record['new_tokens']} new, batch 1, every weight and KV cache in "
          "SRAM (placement: the decode step's, latency or throughput, as `--placement auto` chose). Simulated, "
          "not measured (waferscale/backends/assumptions.py: weights dequantised to f16 in the datapath).\n\n"
          "| model | target | weights | placement | weight GB | KV cache MiB | decode us/token | tokens/s | TTFT ms | "
          "kernel cores (summed; shared in latency placement) | peak SRAM B/core | systems needed (bound) | "
          "published (Cerebras, 16-bit) | published / here |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for r in record["rows"]:
        if not r["ok"]:
            md += f"| {r['model']} | {r['target']} | {r['weights']} | {r['error'][:160]} |||||||||||\n"
            continue
        pub = (f"{CEREBRAS_8B:,.0f} | {CEREBRAS_8B / r['decode_tokens_per_s']:.2f}"
               if r["model"] == "llama-3.1-8b" and r["target"] == "wse3" and r["weights"] == "f16" else "none | ")
        kv = f"{r['kv_cache_mib']:.0f}" if "kv_cache_mib" in r else "?"
        md += (f"| {r['model']} | {r['target']} | {r['weights']} | {r.get('placement_kind', '?')} | "
               f"{r['weight_gb']:.2f} | {kv} | "
               f"{r['decode_us_per_token']:.1f} | {r['decode_tokens_per_s']:,.0f} | {r['ttft_ms']:.3f} | "
               f"{r['cores_used']:,} | {r['sram_peak_bytes_per_core']:,} | {r['systems_needed']} | {pub} |\n")
    md += ("\nllama-3.1-70b, decode at a prompt of 128 and 256 new tokens (KV cache of 384 rows), the systems its "
           "weights and KV caches need by bytes (waferscale/backends/fit.py):\n\n"
           "| weights | weight GB | KV cache GB | systems needed |\n|---|---|---|---|\n")
    md += "".join(f"| {f['weights']} | {f['weight_gb']:.2f} | {f['kv_cache_gb']:.3f} | {f['systems_needed']} |\n"
                  for f in record["fit_llama_3_1_70b"])
    md += ("\nThe interpreter's quantisation error (max |logit diff| / max |logit| against PyTorch's unquantised "
           "model; random weights, seed 0, 32 tokens):\n\n| model | weights | relative error |\n|---|---|---|\n")
    md += "".join(f"| {e['model']} | {e['weights']} | {e['relative_error']:.2e} |\n" for e in record["errors"])
    md += "\nThe published facts (benchmarks/calibration/published_kernels.json):\n\n"
    md += "".join(f"- {f['fact']}: {f['value']} ({f['source']})\n" for f in record["published"])
    return md


if __name__ == "__main__":
    main()
