"""WaferLLM's model-level decode anchors (benchmarks/calibration/published_kernels.json, ``model_anchors``)
as held-out rows of the calibration: one `wafer compile --generate` per anchor, on a WSE-2 cut to the
anchor's mesh (``--target mesh:RxC``: WSE-2's file, that many cores), in a fresh process.

    python benchmarks/calibrate.py --models     # the kernel table, then these rows

They compile an 8B and a 13B model (meta weights) at three meshes each: minutes, so they sit behind
the flag, not in the unit tests or in the plain `calibrate.py`. Writes
benchmarks/results/hardware_fidelity_models.json and .md. Never fitted to.

What is compared, honestly:
- LLaMA3-8B is run as the zoo's llama-3.1-8b: the same shapes (hidden 4096, 32 layers, 32 query and 8
  key/value heads, intermediate 14336, vocabulary 128256); only the rope scaling differs, which costs
  nothing here.
- LLaMA2-13B has no zoo model; cerebras-gpt-13b (hidden 5120, 40 layers, but GPT-2's ungated MLP of
  20480, 50257 tokens, full attention) stands in: its row is marked a stand-in and is not held to 25%.
- The anchors do not record their context; the runs use decode.py's (a 128-token prompt, 256 new
  tokens, batch 1, ``--placement auto``).
"""

from __future__ import annotations

import re

from results_io import compile_outputs  # benchmarks/ is on sys.path when a script here runs

MODELS = {  # published model -> (zoo model, like for like)
    "LLaMA3-8B": ("llama-3.1-8b", True),
    "LLaMA2-13B": ("cerebras-gpt-13b", False),
}
PROMPT, NEW = 128, 256


def run(anchor: dict) -> dict:
    model, same = MODELS[anchor["model"]]
    target = f"mesh:{anchor['mesh']}"
    row = {"case": f"decode {anchor['model']} {anchor['mesh']}", "model": model, "like_for_like": same,
           "target": target, "published_tokens_per_s": anchor["tokens_per_s"], "source": anchor["source"],
           "command": f"python -m waferscale.cli compile {model} --target {target} --generate --prompt-len {PROMPT} "
                      f"--new-tokens {NEW} --batch 1 --placement auto"}
    out, error = compile_outputs(model, "--target", target, "--generate", "--prompt-len", str(PROMPT),
                                 "--new-tokens", str(NEW), "--batch", "1", "--placement", "auto")
    if error:
        return row | {"ok": False, "error": error}
    g = out["report.json"]["generate"]
    rate = g["decode_tokens_per_second_per_user"]
    return row | {"ok": True, "tokens_per_s": rate, "placement": g["placement_kind"],
                  "error": rate / anchor["tokens_per_s"] - 1}


def rows(anchors: list[dict]) -> list[dict]:
    return [run(a) for a in anchors if a["op"] == "decode" and a["model"] in MODELS]


def short(error: str) -> str:
    """The compile's one-line error, cut to what the table needs (a model that does not fit: the sizes)."""
    m = re.search(r"weights alone take ([\d.]+ GB).* the mesh has ([\d.]+ GB) usable", error)
    return f"does not fit (weights {m[1]}, the mesh {m[2]} of SRAM)" if m else error


def markdown(rows: list[dict], tolerance: float) -> str:
    out = ["# WaferLLM's decode rates against the simulation (model-level holdouts)", "",
           "Command: `python benchmarks/calibrate.py --models` (benchmarks/calibrate_models.py): one `wafer compile "
           f"--generate` per anchor on WSE-2's file cut to the anchor's mesh, prompt {PROMPT}, {NEW} new tokens, "
           "batch 1. Error = simulated / published tokens/s - 1. Held out: never fitted to.", "",
           "| published case | our model | like for like | published tokens/s | simulated | error | placement |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        like = "yes" if r["like_for_like"] else "stand-in"
        if not r["ok"]:
            out.append(f"| {r['case']} | {r['model']} | {like} | {r['published_tokens_per_s']:,} | "
                       f"does not run: {short(r['error'])} | | |")
            continue
        flag = "" if abs(r["error"]) <= tolerance or not r["like_for_like"] else " (outside 25%)"
        out.append(f"| {r['case']} | {r['model']} | {like} | {r['published_tokens_per_s']:,} | "
                   f"{r['tokens_per_s']:,.0f} | {100 * r['error']:+.1f}%{flag} | {r['placement']} |")
    out += ["", "Commands:", ""] + [f"- `{r['command']}`" for r in rows]
    return "\n".join(out) + "\n"
