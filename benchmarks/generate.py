"""Generation on the wafer: time to first token and decode tokens/s of the zoo's big models, each
`wafer compile --generate` in a fresh process, beside the published decode rates of real wafers.

    python benchmarks/generate.py [--models cerebras-gpt-1.3b,...] [--targets wse2,wse3]
                                  [--prompt-len 128] [--new-tokens 256] [--batches 1,16]
                                  [--systems MODEL:TARGET:N,...]

Writes benchmarks/results/generate.md and .json. Every figure is simulated (the model's
assumptions in waferscale/backends/assumptions.py); the published rates are measurements of other
mappings on real systems (benchmarks/calibration/published_kernels.json), set beside ours, not
fitted to.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import results_io  # benchmarks/ is on sys.path when a script here runs
from results_io import args_or_render, command, compile_outputs, heading, write

CALIBRATION = Path(__file__).resolve().parent / "calibration" / "published_kernels.json"
DEFAULT_MODELS = "cerebras-gpt-1.3b,cerebras-gpt-6.7b,cerebras-gpt-13b,llama-3.1-8b"
DEFAULT_SYSTEMS = "cerebras-gpt-13b:wse2:2,llama-3.1-70b:wse3:4,llama-3.1-70b:wse3:5"


# Published decode rates (tokens/s per sequence) beside the nearest case here: (what, rate, the fact in
# published_kernels.json it is read from, our model, target, systems). Other mappings, other machines'
# details: set beside ours, not fitted to.
CEREBRAS = "Cerebras Inference decode (CS-3, multi-wafer, 16-bit weights)"
PUBLISHED = [
    ("WaferLLM, LLaMA3-8B on a WSE-2 (420 x 420 cores)", 2699.9, "WaferLLM decode TPR (tokens/s/request, WSE-2)",
     "llama-3.1-8b", "wse2", 1),
    ("WaferLLM, LLaMA2-13B on a WSE-2 (420 x 420 cores)", 2039.2, "WaferLLM decode TPR (tokens/s/request, WSE-2)",
     "cerebras-gpt-13b", "wse2", 1),
    ("Cerebras Inference, Llama 3.1 8B (CS-3)", 1800.0, CEREBRAS, "llama-3.1-8b", "wse3", 1),
    ("Cerebras Inference, Llama 3.1 70B (CS-3s)", 450.0, CEREBRAS, "llama-3.1-70b", "wse3", 4),
]


def known(model: str) -> bool:
    from waferscale.frontend.zoo import ZOO

    return model in ZOO


def one(model: str, target: str, batch: int, prompt_len: int, new_tokens: int, systems: int) -> dict:
    args = ["--target", target, "--generate", "--prompt-len", str(prompt_len), "--new-tokens", str(new_tokens),
            "--batch", str(batch), "--systems", str(systems)]
    row = {"model": model, "target": target, "systems": systems, "batch": batch, "prompt_len": prompt_len,
           "new_tokens": new_tokens}
    out, error = compile_outputs(model, *args)
    if error:
        return row | {"ok": False, "error": error}
    g = out["report.json"]["generate"]
    return row | {
        "ok": True, "ttft_ms": 1e3 * g["ttft_seconds"], "decode_us_per_token": 1e6 * g["decode_seconds_per_token"],
        "decode_us_first": 1e6 * g["decode_seconds_first"], "decode_us_last": 1e6 * g["decode_seconds_last"],
        "decode_tokens_per_s": g["decode_tokens_per_second"],
        "decode_tokens_per_s_per_user": g["decode_tokens_per_second_per_user"],
        "roofline_tokens_per_s": batch / g["decode_roofline_seconds"],
        "over_roofline": g["decode_seconds_per_token"] / g["decode_roofline_seconds"],
        "kv_cache_mib": g["kv_cache_bytes"] / 2 ** 20, "kv_cache_bytes_per_core": g["kv_cache_bytes_per_core"],
        "weight_gb": g["weight_bytes"] / 1e9, "cores_used": sum(s["cores_used"] for s in g["systems_detail"]),
        "generate_ms": 1e3 * g["generate_seconds"],
        "placement": g["placement_kind"], "prefill_placement": g["prefill_placement_kind"],
    }


def published() -> list[dict]:
    facts = json.loads(CALIBRATION.read_text())["facts"]
    return [f for f in facts if "decode" in f["fact"].lower()]


def why_not(error: str) -> str:
    """A fit error, short: what the kernels need against what the mesh has."""
    m = re.search(r"(?:need at least|take) ([\d,]+) cores(?: at their narrowest)? \(([\d.]+ GB) of SRAM\).*?"
                  r"has ([\d.]+ GB) usable", error)
    if not m:
        return error[:160]
    packs = "; they do not pack into the mesh's bands" if "do not pack" in error else ""
    part = re.search(r"the part of (system \d+ of \d+)", error)
    return (f"does not fit{' (' + part.group(1) + ')' if part else ''}: its kernels need {m.group(1)} cores, "
            f"{m.group(2)} of SRAM, of {m.group(3)} usable{packs}")


def comparison(rows: list[dict]) -> str:
    lines = ["| published | tokens/s per sequence | here (batch 1) | tokens/s per sequence | published / here |",
             "|---|---|---|---|---|"]
    for what, rate, _, model, target, systems in PUBLISHED:
        r = next((r for r in rows if (r["model"], r["target"], r["systems"], r["batch"]) == (model, target, systems, 1)
                  and r["ok"]), None)
        if r is not None:
            ours = r["decode_tokens_per_s_per_user"]
            lines.append(f"| {what} | {rate:,.0f} | {model} on {systems} x {target} | {ours:,.0f} | "
                         f"{rate / ours:.2f} |")
    return "\n".join(lines) + "\n"


def table(rows: list[dict]) -> str:
    head = ("| model | target | systems | batch | placement (decode / prefill) | TTFT ms "
            "| decode us/token (first .. last) | tokens/s | per user | roofline tokens/s | x roofline | KV cache MiB "
            "| KV B/core |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        if not r["ok"]:
            lines.append(f"| {r['model']} | {r['target']} | {r['systems']} | {r['batch']} | {why_not(r['error'])} "
                         "||||||||||")
            continue
        # rows of a run before the placement was recorded were of the throughput placement
        kinds = f"{r.get('placement', 'throughput')} / {r.get('prefill_placement', 'throughput')}"
        lines.append(f"| {r['model']} | {r['target']} | {r['systems']} | {r['batch']} | {kinds} | {r['ttft_ms']:.3f} | "
                     f"{r['decode_us_per_token']:.1f} ({r['decode_us_first']:.1f} .. {r['decode_us_last']:.1f}) | "
                     f"{r['decode_tokens_per_s']:,.0f} | {r['decode_tokens_per_s_per_user']:,.0f} | "
                     f"{r['roofline_tokens_per_s']:,.0f} | {r['over_roofline']:,.0f} | {r['kv_cache_mib']:.0f} | "
                     f"{r['kv_cache_bytes_per_core']:,} |")
    return head + "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--targets", default="wse2,wse3")
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--batches", default="1,16")
    p.add_argument("--systems", default=DEFAULT_SYSTEMS, help="MODEL:TARGET:N cases over several wafers")
    a = args_or_render(p, "generate", markdown)
    cases = [(m, t, b, 1) for m in a.models.split(",") for t in a.targets.split(",")
             for b in map(int, a.batches.split(","))]
    for spec in filter(None, a.systems.split(",")):
        m, t, n = spec.split(":")
        cases += [(m, t, b, int(n)) for b in map(int, a.batches.split(","))]
    rows, skipped = [], []
    for m, t, b, n in cases:
        if not known(m):
            skipped.append(m)
            continue
        r = one(m, t, b, a.prompt_len, a.new_tokens, n)
        rows.append(r)
        print(f"{m} on {n} x {t}, batch {b}: " + (f"TTFT {r['ttft_ms']:.3f} ms, {r['decode_us_per_token']:.1f} "
              f"us/token, {r['decode_tokens_per_s']:,.0f} tokens/s" if r["ok"] else r["error"]), flush=True)
    record = {"command": command(), "machine": results_io.machine(), "prompt_len": a.prompt_len,
              "new_tokens": a.new_tokens, "rows": rows, "not_in_the_zoo": sorted(set(skipped)),
              "published": published()}
    write("generate", record, markdown(record))


def markdown(record: dict) -> str:
    rows, skipped = record["rows"], record["not_in_the_zoo"]
    md = (heading("Generation: time to first token and decode tokens/s", record) + "; "
          f"prompt {record['prompt_len']} tokens, {record['new_tokens']} new, f16, layer-pipelined (every weight and "
          "every sequence's KV cache in SRAM); decode us/token is the mean of the first and last decode steps. "
          "Simulated, not measured: see waferscale/backends/assumptions.py.\n\n" + table(rows))
    if skipped:
        md += f"\nNot in the zoo at this revision (skipped): {', '.join(skipped)}.\n"
    md += ("\nPlacement: `wafer compile --generate` weighs both (`--placement auto`) and keeps, for the decode steps "
           "and for the prefill apart, the latency or the throughput placement, whichever runs it faster "
           "(docs/decode.md); rows of a run before that was recorded are of the throughput placement.\n")
    md += ("\nBeside published decode rates (other mappings and systems, so a comparison of orders, not a "
           "calibration; docs/generation.md discusses it):\n\n" + comparison(rows))
    md += "\nThe published facts (benchmarks/calibration/published_kernels.json):\n\n"
    md += "".join(f"- {f['fact']}: {f['value']} ({f['source']})\n" for f in record["published"])
    return md


if __name__ == "__main__":
    main()
