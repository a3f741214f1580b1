"""Decode at batch 1 beside the published rates of real wafers, with each simulated token's time split
into compute, fabric, fill and wait (waferscale/runtime/time_split.py), and the error per row.

    python benchmarks/decode.py [--prompt-len 128] [--new-tokens 256] [--render]

Each row is one `wafer compile --generate --placement auto` in a fresh process. Writes
benchmarks/results/decode.json and .md; docs/decode.md shows the table. The published rates are
measurements of other software on real systems (benchmarks/calibration/published_kernels.json), set
beside ours, not fitted to.
"""

from __future__ import annotations

import argparse

import results_io  # benchmarks/ is on sys.path when a script here runs
from results_io import args_or_render, command, compile_outputs, heading, write

CEREBRAS = "Cerebras Inference decode (CS-3, multi-wafer, 16-bit weights)"
WAFERLLM = "WaferLLM decode TPR (tokens/s/request, WSE-2)"
# (model, target, systems, systems to fall back on when it does not fit, published tokens/s per
# sequence, what was published, the fact in published_kernels.json it is read from)
CASES = [
    ("llama-3.1-8b", "wse3", 1, None, 1800.0, "Cerebras Inference, Llama 3.1 8B, one CS-3 (Aug 2024)", CEREBRAS),
    ("llama-3.1-70b", "wse3", 4, 5, 450.0, "Cerebras Inference, Llama 3.1 70B, four CS-3s (Aug 2024)", CEREBRAS),
    ("cerebras-gpt-13b", "wse2", 1, None, 2039.2, "WaferLLM, LLaMA2-13B on a WSE-2, 420 x 420 cores", WAFERLLM),
    ("llama-3.1-8b", "wse2", 1, None, 2243.3, "WaferLLM, LLaMA3-8B on a WSE-2, 660 x 660 cores (2699.9 at 420 x "
     "420, 2501.5 at 540 x 540)", WAFERLLM),
]


def one(model: str, target: str, systems: int, prompt_len: int, new_tokens: int) -> dict:
    args = ["--target", target, "--generate", "--prompt-len", str(prompt_len), "--new-tokens", str(new_tokens),
            "--batch", "1", "--systems", str(systems), "--placement", "auto"]
    out, error = compile_outputs(model, *args)
    if error:
        return {"ok": False, "error": error}
    g = out["report.json"]["generate"]
    return {"ok": True, "decode_tokens_per_s": g["decode_tokens_per_second_per_user"],
            "decode_us_per_token": 1e6 * g["decode_seconds_per_token"], "ttft_ms": 1e3 * g["ttft_seconds"],
            "placement": g["placement_kind"], "placement_reason": g["placement_kind_reason"],
            "system_placement_reasons": [d["placement_kind_reason"] for d in g["systems_detail"]],
            "prefill_placement": g["prefill_placement_kind"],
            "split_us": {k: 1e6 * v for k, v in g["decode_time_split_seconds"].items()},
            "first_step_us": 1e6 * g["decode_seconds_first"],
            "roofline_tokens_per_s": 1 / g["decode_roofline_seconds"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=256)
    a = args_or_render(p, "decode", markdown)
    rows = []
    for model, target, systems, fallback, rate, what, fact in CASES:
        r = one(model, target, systems, a.prompt_len, a.new_tokens)
        note = ""
        if not r["ok"] and fallback:
            note = f"does not fit on {systems} x {target} ({r['error'][:200]}); run on {fallback}"
            systems, r = fallback, one(model, target, fallback, a.prompt_len, a.new_tokens)
        row = {"model": model, "target": target, "systems": systems, "published_tokens_per_s": rate,
               "published": what, "fact": fact, "note": note, **r}
        if r["ok"]:
            row["error"] = r["decode_tokens_per_s"] / rate - 1
        rows.append(row)
        print(f"{model} on {systems} x {target}: " + (f"{r['decode_tokens_per_s']:,.0f} tokens/s against {rate:,.0f}"
              if r["ok"] else r["error"]), flush=True)
    record = {"command": command(), "machine": results_io.machine(), "prompt_len": a.prompt_len,
              "new_tokens": a.new_tokens, "batch": 1, "rows": rows}
    write("decode", record, markdown(record))


def markdown(record: dict) -> str:
    md = (heading("Decode at batch 1 beside published rates", record) + "; batch 1, "
          f"prompt {record['prompt_len']} tokens, {record['new_tokens']} new, f16, `--placement auto`. Tokens/s is "
          "per sequence, from the mean of the first and last decode steps; the split is of the first decode step "
          "(waferscale/runtime/time_split.py). Simulated, not measured: see waferscale/backends/assumptions.py.\n\n"
          "| model | target | systems | placement | simulated tokens/s | published tokens/s | error | us/token | "
          "compute us | fabric us | fill us | wait us | TTFT ms | published |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for r in record["rows"]:
        if not r["ok"]:
            md += (f"| {r['model']} | {r['target']} | {r['systems']} | | does not fit: {r['error'][:160]} | "
                   f"{r['published_tokens_per_s']:,.0f} | | | | | | | | {r['published']} |\n")
            continue
        s = r["split_us"]
        md += (f"| {r['model']} | {r['target']} | {r['systems']} | {r['placement']} | "
               f"{r['decode_tokens_per_s']:,.0f} | {r['published_tokens_per_s']:,.0f} | {100 * r['error']:+.0f}% | "
               f"{r['decode_us_per_token']:.1f} | {s['compute']:.1f} | {s['fabric']:.1f} | {s['fill']:.1f} | "
               f"{s['wait']:.1f} | {r['ttft_ms']:.3f} | {r['published']} |\n")
    notes = [f"- {r['model']} on {r['target']}: {r['note']}" for r in record["rows"] if r.get("note")]
    if notes:
        md += "\n" + "\n".join(notes) + "\n"
    md += ("\nWhy each placement was kept (report.json `generate.systems_detail[].placement_kind_reason`, a "
           "line per system):\n\n"
           + "".join(f"- {r['model']} on {r['systems']} x {r['target']}"
                     + (f", system {i + 1}" if r["systems"] > 1 else "") + f": {why}\n"
                     for r in record["rows"] if r["ok"]
                     for i, why in enumerate(r["system_placement_reasons"])))
    return md


if __name__ == "__main__":
    main()
