"""Qwen3-235B-A22B on WSE-3s: decode on a pipeline of wafers and a 2,048-token forward pass (weight
streaming), each `wafer compile` in a fresh process, beside Cerebras' published decode rate.

    python benchmarks/moe.py [--systems 24] [--prompt-len 128] [--new-tokens 16] [--seq 2048]
                             [--routing uniform] [--render]

Writes benchmarks/results/moe.md and .json (docs/moe.md reads them). Every figure is simulated with
the model's assumptions (docs/moe.md, waferscale/backends/assumptions.py); the published rate is a
measurement of Cerebras' own deployment, set beside ours, not fitted to. About ten minutes.
"""

from __future__ import annotations

import argparse

from results_io import args_or_render, command, compile_outputs, machine, write  # benchmarks/ is on sys.path here

MODEL = "qwen3-235b-a22b"
# Cerebras Inference documentation, the Qwen 3 235B model page (model id qwen-3-235b-a22b): "Speed ~1500
# tokens/sec" (https://inference-docs.cerebras.ai/models/qwen-3-235b; the stored copy is undated)
PUBLISHED = {"tokens_per_s": 1500.0, "source": "https://inference-docs.cerebras.ai/models/qwen-3-235b",
             "quote": "Speed ~1500 tokens/sec", "date": "undated page"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--systems", type=int, default=24)
    p.add_argument("--prompt-len", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--routing", default="uniform", help="--expert-routing of the forward pass")
    a = args_or_render(p, "moe", markdown)
    record = {"command": command(), "machine": machine(), "model": MODEL, "published": PUBLISHED}
    out, err = compile_outputs(MODEL, "--generate", "--target", "wse3", "--systems", str(a.systems),
                               "--prompt-len", str(a.prompt_len), "--new-tokens", str(a.new_tokens))
    if out:
        g = out["report.json"]["generate"]
        rate = g["decode_tokens_per_second_per_user"]
        record["decode"] = {"systems": a.systems, "prompt_len": a.prompt_len, "tokens_per_s_per_user": rate,
                            "seconds_per_token": g["decode_seconds_per_token"], "ttft_seconds": g["ttft_seconds"],
                            "prefill_tokens_per_s": g["prefill_tokens_per_second"],
                            "roofline_seconds_per_token": g["decode_roofline_seconds"],
                            "error_vs_published": rate / PUBLISHED["tokens_per_s"] - 1,
                            # per system: the placement its decode step kept, and that step's cycles
                            "systems_detail": [{"placement_kind": s["placement_kind"],
                                                "decode_cycles": s["decode_cycles_first"],
                                                "decode_cycles_by_placement": s["decode_cycles_by_placement"],
                                                "first_kernel": s["first_kernel"]} for s in g["systems_detail"]]}
        energy = out["report.json"].get("energy")
        if energy:  # the energy model's (docs/energy.md): all systems together
            record["decode"] |= {"joules_per_token": energy["joules_per_token"],
                                 "average_watts": energy["average_watts"]}
    else:
        record["decode"] = {"systems": a.systems, "error": err}
    out, err = compile_outputs(MODEL, "--target", "wse3", "--seq", str(a.seq), "--expert-routing", a.routing)
    if out:
        r = out["report.json"]
        layer = r["moe"]["layers"][0]
        record["forward"] = {"seq": a.seq, "mode": r.get("mode"), "seconds": r["time"]["seconds"],
                             "tokens_per_s": r["time"]["tokens_per_s"], "stream_seconds": r["time"]["stream_seconds"],
                             "mfu": r["time"]["mfu"], "routing": a.routing,
                             "busiest_expert_cycles": layer["busiest_cycles"],
                             "mean_expert_cycles": layer["mean_cycles"],
                             "expert_region": r["moe"]["experts"][layer["busiest"]]["region"]}
    else:
        record["forward"] = {"seq": a.seq, "error": err}
    write("moe", record, markdown(record))


def markdown(r: dict) -> str:
    d, f, pub = r["decode"], r["forward"], r["published"]
    lines = [f"# {r['model']} on WSE-3s", "", f"`{r['command']}` ({r['machine']})", ""]
    if "error" in d:
        lines += [f"decode on {d['systems']} x WSE-3: {d['error']}", ""]
    else:
        lines += ["| decode, batch 1 | waferscale | Cerebras Inference |", "|---|---|---|",
                  f"| tokens/s per user | {d['tokens_per_s_per_user']:,.0f} on {d['systems']} x WSE-3 | "
                  f"~{pub['tokens_per_s']:,.0f} ({pub['source']}, {pub['date']}) |",
                  f"| time to first token, {d['prompt_len']}-token prompt | {1e3 * d['ttft_seconds']:.1f} ms | "
                  "not published |",
                  *([f"| systems in latency placement | "
                     f"{sum(x['placement_kind'] == 'latency' for x in d['systems_detail'])} of {d['systems']} "
                     f"(slowest step {max(x['decode_cycles'] for x in d['systems_detail']):,} cycles) | |"]
                    if "systems_detail" in d else []),
                  *([f"| energy per token (all systems) | {d['joules_per_token']:,.0f} J at "
                     f"{d['average_watts'] / 1e3:,.0f} kW | not published |"] if "joules_per_token" in d else []), "",
                  f"Error against the published rate: {100 * d['error_vs_published']:+.0f}%.", ""]
    if "error" in f:
        lines += [f"forward of {f['seq']} tokens on one WSE-3: {f['error']}", ""]
    else:
        lines += [f"Forward of {f['seq']} tokens on one WSE-3 ({f['mode']}, routing {f['routing']}): "
                  f"{f['seconds']:.3f} s, {f['tokens_per_s']:,.0f} tokens/s, weights streamed in "
                  f"{f['stream_seconds']:.3f} s; a layer's busiest expert {f['busiest_expert_cycles']:,} cycles "
                  f"(mean {f['mean_expert_cycles']:,}) on {f['expert_region']['rows']} x "
                  f"{f['expert_region']['cols']} cores; MFU {100 * f['mfu']:.1f}%.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
