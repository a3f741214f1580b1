"""gpt-oss-120b on a WSE-3 (issue 30): a forward pass and a training step from its published config
(shapes only, on the meta device), and a training step of gpt-oss-20b (its published config.json in
benchmarks/configs/gpt-oss-20b), each `wafer compile` in a fresh process.

    python benchmarks/gpt_oss.py [--seq 2048] [--train-batch 8] [--no-train] [--render]

Writes benchmarks/results/gpt_oss.md and .json (docs/moe.md reads them). Every figure is simulated
with the model's assumptions (docs/moe.md, waferscale/backends/assumptions.py); nothing is fitted.
Its experts are grouped GEMMs (``moe_linear``) costed under uniform routing; its attention has a
sink per head and every other layer a window of 128 positions (``sink_attention``).
"""

from __future__ import annotations

import argparse

from results_io import args_or_render, command, compile_outputs, machine, write  # benchmarks/ is on sys.path here

MODEL = "gpt-oss-120b"
# openai/gpt-oss-20b's config.json: 24 layers of 32 experts, the rest as 120b's (20.9 B parameters)
SMALLER = "benchmarks/configs/gpt-oss-20b/config.json"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--train-batch", type=int, default=8)
    p.add_argument("--no-train", action="store_true", help="the forward pass only")
    a = args_or_render(p, "gpt_oss", markdown)
    record = {"command": command(), "machine": machine(), "model": MODEL}
    out, err = compile_outputs(MODEL, "--target", "wse3", "--seq", str(a.seq))
    if out:
        r = out["report.json"]
        record["forward"] = {"seq": a.seq, "mode": r.get("mode"), "params": r["model"]["params"],
                             "flops_per_token": r["model"]["flops_per_token"], "seconds": r["time"]["seconds"],
                             "tokens_per_s": r["time"]["tokens_per_s"], "stream_seconds": r["time"]["stream_seconds"],
                             "mfu": r["time"]["mfu"]}
    else:
        record["forward"] = {"seq": a.seq, "error": err}
    if not a.no_train:
        record["train"] = [train(m, a.seq, a.train_batch) for m in (MODEL, SMALLER)]
    write("gpt_oss", record, markdown(record))


def train(model: str, seq: int, batch: int) -> dict:
    out, err = compile_outputs(model, "--train", "--target", "wse3", "--seq", str(seq), "--batch", str(batch))
    name = "gpt-oss-20b" if model == SMALLER else model
    if not out:
        return {"model": name, "batch": batch, "seq": seq, "error": err}
    t = out["report.json"]["train"]
    return {"model": name, "seq": seq, "params": out["report.json"]["model"]["params"],
            **{k: t[k] for k in ("mode", "batch", "micro_batch", "micro_batches", "step_seconds", "tokens_per_s",
                                 "flops_per_token", "flops_per_token_forward", "flops_per_token_backward",
                                 "flops_per_token_closed_form", "mfu", "stream_in_bytes", "stream_out_bytes")},
            "optimizer_exposed_seconds": t["optimizer"]["exposed_seconds"]}


def markdown(r: dict) -> str:
    f = r["forward"]
    lines = [f"# {r['model']} on a WSE-3", "", f"`{r['command']}` ({r['machine']})", ""]
    if "error" in f:
        lines += [f"Forward of {f['seq']} tokens: {f['error']}", ""]
    else:
        lines += [f"Forward of {f['seq']} tokens ({f['mode']}): {f['params']:,} parameters, "
                  f"{f['flops_per_token'] / 1e9:.2f} GFLOP/token; {f['seconds']:.3f} s, {f['tokens_per_s']:,.0f} "
                  f"tokens/s, weights streamed in {f['stream_seconds']:.3f} s; MFU {100 * f['mfu']:.1f}%.", ""]
    for t in r.get("train", []):
        lines += [train_line(t), ""]
    return "\n".join(lines)


def train_line(t: dict) -> str:
    if "error" in t:
        return f"{t['model']}, training step of batch {t['batch']} x {t['seq']}: {t['error']}"
    return (f"{t['model']} ({t['params']:,} parameters), training step of batch {t['batch']} x {t['seq']} "
            f"({t['mode']}, {t['micro_batches']} micro-batch(es) "
            f"of {t['micro_batch']}): {t['step_seconds']:.3f} s, {t['tokens_per_s']:,.0f} tokens/s, "
            f"{t['flops_per_token'] / 1e9:.2f} GFLOP/token (forward {t['flops_per_token_forward'] / 1e9:.2f}, "
            f"backward {t['flops_per_token_backward'] / 1e9:.2f}; closed form "
            f"{t['flops_per_token_closed_form'] / 1e9:.2f}), MFU {100 * t['mfu']:.1f}%; streamed in "
            f"{t['stream_in_bytes'] / 1e9:.1f} GB, out {t['stream_out_bytes'] / 1e9:.1f} GB; the optimizer's "
            f"exposed tail {t['optimizer_exposed_seconds']:.3f} s.")


if __name__ == "__main__":
    main()
