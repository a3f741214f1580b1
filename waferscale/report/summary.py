"""Compile reports: ``report.json`` (the keys are a contract users script against) and
``report.txt`` (the same facts for a person). Writing an output directory is ``outputs.py``'s
(``replace_dir`` and ``write_dir`` are re-exported here)."""

from __future__ import annotations

import json

from ..passes.pipeline import describe_change
from .outputs import replace_dir, write_dir

__all__ = ["generate_text", "replace_dir", "to_json", "to_text", "train_text", "write_dir"]


def to_json(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=True) + "\n"


def _si(x: float, unit: str = "") -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {prefix}{unit}"
    return f"{x:g} {unit}".rstrip()


def to_text(report: dict) -> str:
    m, ir, c = report["model"], report["ir"], report["compile"]
    by = m["flops_per_token_by_class"]
    total = m["flops_per_token"]
    lines = [
        f"waferscale {report['version']}  model {m['name']}  frontend {c['frontend']}",
        "",
        "Model",
        f"  architecture       {m['layers']} layers, d_model {m['d_model']}, {m['heads']} heads, "
        f"d_ffn {m['d_ffn']}, vocab {m['vocab']}, context {m['context']}" if m.get("layers") is not None
        else f"  architecture       not recorded (imported from {m['source']})",
        f"  shape              batch {m['batch']} x seq {m['seq']}, {m['dtype']}, traced on {m['traced_on']}",
        f"  parameters         {m['params']:,} ({_si(m['params'])})",
        f"  weight bytes       {m['weight_bytes']:,} ({_si(m['weight_bytes'], 'B')})",
        f"  forward FLOPs/tok  {_si(total, 'FLOP')}  = matmul {100 * by['matmul'] / total:.1f}% + "
        f"attention {100 * by['attention'] / total:.1f}% + other {100 * by['other'] / total:.1f}%",
        "",
        f"IR: {ir['op_count']} ops, {ir['param_count']} parameter tensors",
    ]
    width = max(map(len, ir["ops"]), default=0)
    lines += [f"  {k:<{width}}  {v:>6}" for k, v in ir["ops"].items()]
    lines += [
        "",
        f"Compile: {c['seconds']:.2f} s (loading transformers {c['imports_seconds']:.2f}, build "
        f"{c['build_seconds']:.2f}, torch.export {c['export_seconds']:.2f}, ours "
        f"{c['our_seconds']:.2f}), peak RSS {_si(c['peak_rss_bytes'], 'B')}",
        f"Pipeline: {report['pipeline'] or '(none)'}",
    ]
    lines += [f"  {r['name']:<13} {1e3 * r['seconds']:9.1f} ms  {describe_change(r['before'], r['after'])}"
              for r in c.get("passes", [])]
    if "train" in report:
        lines += train_text(report["train"])
    if "generate" in report:
        lines += generate_text(report["generate"])
    if "energy" in report:
        from .energy import energy_text

        lines += ["", "Energy (backends/energy.py; docs/energy.md)", energy_text(report["energy"])]
    return "\n".join(lines) + "\n"


def train_text(t: dict) -> list[str]:
    """The ``train`` section of report.json, for a person."""
    lines = [
        "",
        f"Training step ({t['mode']}, {t['systems']} system(s))",
        f"  batch              {t['batch']} x seq {t['seq']} = {t['tokens_per_step']:,} tokens; per system "
        f"{t['batch_per_system']} in {t['micro_batches']} micro-batch(es) of {t['micro_batch']}",
        f"  step               {1e3 * t['step_seconds']:.3f} ms ({t['step_cycles']:,} cycles); micro-batch "
        f"{1e3 * t['micro_batch_seconds']:.3f} ms",
        f"  throughput         {_si(t['tokens_per_s'])} tokens/s ({_si(t['tokens_per_s_per_system'])} per system), "
        f"MFU {100 * t['mfu']:.1f}%",
        f"  FLOPs/token        {_si(t['flops_per_token'], 'FLOP')} (forward {_si(t['flops_per_token_forward'], 'FLOP')}"
        f" + backward {_si(t['flops_per_token_backward'], 'FLOP')}; closed form "
        f"{_si(t['flops_per_token_closed_form'], 'FLOP')})",
        f"  optimizer          on {t['optimizer']['where']}: {1e3 * t['optimizer']['seconds']:.3f} ms, "
        f"{1e3 * t['optimizer']['exposed_seconds']:.3f} ms of it after the last gradient",
        f"  streamed           {_si(t['stream_in_bytes'], 'B')} of weights in, {_si(t['stream_out_bytes'], 'B')} of "
        "gradients out (per system)",
        f"  {'layer':<28} {'direction':<9} {'compute us':>11} {'stream us':>10} {'bound':<8}",
    ]
    if "sram_per_core" in t:
        sr = t["sram_per_core"]
        lines.insert(-1, f"  SRAM per core      {sr['peak']:,} B of {sr['capacity']:,} at the fullest core "
                         f"({sr['reserved']:,} B kept for the next layer's weights and the micro-batch's activations)")
    if "time_to_train" in t:
        tt = t["time_to_train"]
        paper = f"; the paper reports {tt['paper']['flops']:.3g}" if "paper" in tt else ""
        lines.insert(-1, f"  time to train      {tt['days']:.2f} days on {tt['systems']} system(s): "
                         f"{tt['tokens']:.3g} tokens ({tt['tokens_source']}) in {tt['steps']:,} steps, "
                         f"{tt['flops']:.3g} FLOPs{paper}")
    if "lora" in t:
        lo, f = t["lora"], t["lora"]["full_fine_tuning"]
        lines[-1:-1] = [f"  LoRA               {lo['pass']}: {lo['trainable_params']:,} parameters trained, "
                        f"{lo['frozen_params']:,} frozen; full fine-tuning: {1e3 * f['step_seconds']:.3f} ms a step, "
                        f"{_si(f['stream_out_bytes'], 'B')} of gradients out"]
    lines += [f"  {x['name'][:28]:<28} {x['direction']:<9} {1e6 * x['compute_seconds']:>11.1f} "
              f"{1e6 * x['stream_in_seconds']:>10.1f} {x['bound']:<8}" for x in t["layers"]]
    return lines


def generate_text(g: dict) -> list[str]:
    """The generation section of report.txt (``wafer compile --generate``)."""
    lines = [
        "",
        f"Generation: prompt {g['prompt_len']} tokens, {g['new_tokens']} new, batch {g['batch']}, "
        f"{g['systems']} system(s); KV cache {g['kv_capacity']} rows, {g.get('kv_dtype', 'f16')}, "
        f"{_si(g['kv_cache_bytes'], 'B')} "
        f"({g['kv_cache_bytes_per_core']:,} B on the busiest core)",
        f"  time to first token  {1e3 * g['ttft_seconds']:.3f} ms (prefill, {_si(g['prefill_tokens_per_second'])} "
        "tokens/s)",
        f"  decode               {1e6 * g['decode_seconds_per_token']:.2f} us/token = "
        f"{g['decode_tokens_per_second']:,.0f} tokens/s ({g['decode_tokens_per_second_per_user']:,.0f} per sequence); "
        f"{g['decode_basis']}",
        f"  roofline             {1e6 * g['decode_roofline_seconds']:.3f} us/token: {g['decode_roofline_basis']}",
        f"  whole generation     {1e3 * g['generate_seconds']:.3f} ms",
    ]
    if "inter_system_link" in g:
        link = g["inter_system_link"]
        lines.append(f"  between systems      {link['name']}: {_si(link['bytes_per_s'], 'B/s')}, "
                     f"{1e6 * link['latency_seconds']:g} us per crossing ({link['source']})")
    for i, s in enumerate(g["systems_detail"]):
        lines.append(f"  system {i + 1:<13} {s['kernels']} kernels ({s['first_kernel']} .. {s['last_kernel']}) on "
                     f"{s['cores_used']:,} cores, weights {_si(s['weight_bytes'], 'B')}, KV cache "
                     f"{_si(s['kv_cache_bytes'], 'B')}, SRAM peak {s['sram_peak_bytes_per_core']:,} B/core")
    return lines
