"""WaferLLM's decode, like for like: one LLaMA3-8B layer of WaferLLM's own shapes on a P x P region of a WSE-2.

    python benchmarks/waferllm_mesh.py [--render] [--meshes 420,540,660] [--hop-cycles N]

WaferLLM (OSDI 2025, Table 4) decodes LLaMA3-8B at 2,699.9 / 2,501.5 / 2,243.3 tokens/s on 420 x 420 /
540 x 540 / 660 x 660 cores of a WSE-2: smaller meshes are faster. Its code (github.com/MeshInfra/WaferLLM,
``Decode/WSE-2``) times ONE layer on the P x P mesh, its dimensions rounded to multiples of P
(``model_config/llama8B_4k_1_{P}.json``: dim 4200 / 4320 / 4620, ffn 14700 / 14580 / 14520, one head of
``dim``, K and V ``dim x dim``, 4K-position KV cache, ``layer_num`` 32), every GEMV over the whole mesh
followed by a two-level tree allreduce (``decode.csl``: about ten allreduces per layer). A token is 32 such
layers. We simulate that layer (as a Hugging Face config; 35 / 36 / 35 heads of about 120 dimensions, as our
rotary kernel takes heads, not one of 4,200) on a machine file of wse2.yaml cut to P x P, with 1 and with 2
layers (prompt 4096, the decode step at position 4096), and take the difference as one layer's cycles
(the embedding, the LM head and the ends cancel), times 32. Two mappings:

- ``latency``: our latency placement, every kernel on the rectangle that finishes it soonest;
- ``spread``: WaferLLM's, every GEMM on the whole P x P region, kernels in program order
  (``passes/latency.py`` ``spread``).

Beside them, WaferLLM's own program priced call by call with our cost table (``waferllm_program.py``:
no simulation, nothing fitted), and the same at 1.25 / 1.5 / 1.75 cycles per core along its
allreduce lines (a sensitivity, not a model change).

Writes benchmarks/results/waferllm_mesh.json and .md.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import results_io  # benchmarks/ is on sys.path when a script here runs
import waferllm_program
from results_io import command, heading, write

from waferscale.backends.machine import get_machine

LAYERS = 32
# P: (dim, ffn, heads, published tokens/s), WaferLLM model_config/llama8B_4k_1_{P}.json and Table 4
MESHES = {420: (4200, 14700, 35, 2699.9), 540: (4320, 14580, 36, 2501.5), 660: (4620, 14520, 35, 2243.3)}
GROUPS = {420: 20, 540: 20, 660: 22}  # group_num of the same files: the allreduce's groups per line
HOPS = (1.0, 1.25, 1.5, 1.75)  # cycles per core along a line, for the program's sensitivity
CLOCK_HZ = get_machine("wse2").clock_hz  # the file cut below keeps it
PROMPT = 4096


def machine_file(p: int, d: Path, hop: int | None = None) -> Path:
    """wse2.yaml cut to ``p`` x ``p`` cores (with ``hop`` cycles a hop, for a sensitivity run)."""
    src = (Path(__file__).parents[1] / "waferscale/backends/machines/wse2.yaml").read_text()
    src = src.replace('name: "wse2"', f'name: "wse2-{p}x{p}"')
    sizes = {key: p for key in ("rows", "cols", "fabric_rows", "fabric_cols")}
    for key, v in {**sizes, **({"hop_cycles": hop} if hop is not None else {})}.items():
        src = re.sub(rf"(?m)^({key}:\n  value: )\d+", rf"\g<1>{v}", src)
    out = d / f"wse2_{p}.yaml"
    out.write_text(src)
    return out


def config(p: int, layers: int, d: Path) -> Path:
    dim, ffn, heads, _ = MESHES[p]
    out = d / f"llama_{p}_{layers}"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": dim, "intermediate_size": ffn,
        "num_attention_heads": heads, "num_key_value_heads": heads, "head_dim": dim // heads,
        "num_hidden_layers": layers, "vocab_size": 64, "max_position_embeddings": 8192, "hidden_act": "silu",
        "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": False}))
    return out


CASE = """
import sys, functools
import waferscale.modes.generate_placement as gp
from waferscale.passes.latency import place_latency
if sys.argv[1] == "spread":
    gp.place_latency = functools.partial(place_latency, spread=True)
from waferscale.cli import main
sys.argv = ["wafer", "compile", *sys.argv[2:]]
sys.exit(main())
"""


def one(p: int, layers: int, mapping: str, d: Path, hop: int | None = None) -> dict:
    out = d / f"out_{p}_{layers}_{mapping}"
    args = [str(config(p, layers, d)), "--target", str(machine_file(p, d, hop)), "--generate", "--prompt-len",
            str(PROMPT), "--new-tokens", "2", "--batch", "1", "--placement", "latency", "-o", str(out), "-q"]
    r = subprocess.run([sys.executable, "-c", CASE, mapping, *args], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"{p} x {p}, {layers} layers, {mapping}: {r.stderr.strip()[-400:]}")
    g = json.loads((out / "report.json").read_text())["generate"]
    kernels = json.loads((out / "placement.json").read_text())["kernels"]
    gemms = {k["name"].split("/")[0].rsplit(".", 1)[-1]: f"{k['rect']['rows']}x{k['rect']['cols']}"
             for k in kernels if ".layers.0." in k["name"] and k["op"] in ("fused", "linear")}
    return {"cycles": g["decode_seconds_first"] * CLOCK_HZ,
            "split": {k: v * CLOCK_HZ for k, v in g["decode_time_split_seconds"].items()}, "gemm_rects": gemms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--render", action="store_true", help="only write the .md again from the .json")
    ap.add_argument("--hop-cycles", type=int, default=None,
                    help="a sensitivity: cycles a hop in the cut machine file (default: wse2.yaml's); "
                         "writes waferllm_mesh_hopN.json and .md")
    ap.add_argument("--meshes", default=",".join(map(str, MESHES)), help="mesh sides, of " +
                    ", ".join(map(str, MESHES)))
    a = ap.parse_args()
    if a.hop_cycles is not None and a.hop_cycles < 1:
        print(f"--hop-cycles {a.hop_cycles}: give a whole number of cycles, at least 1", file=sys.stderr)
        raise SystemExit(2)
    name = "waferllm_mesh" if a.hop_cycles is None else f"waferllm_mesh_hop{a.hop_cycles}"
    if a.render:
        record = json.loads((results_io.RESULTS / f"{name}.json").read_text())
        write(name, record, markdown(record))
        raise SystemExit(0)  # as results_io.args_or_render does
    try:
        meshes = {int(m): MESHES[int(m)] for m in a.meshes.split(",")}
    except (KeyError, ValueError):
        print(f"--meshes: give some of {', '.join(map(str, MESHES))}", file=sys.stderr)
        raise SystemExit(2) from None
    rows = []
    program = program_rows()
    with tempfile.TemporaryDirectory() as tmp:
        for p, (dim, ffn, heads, rate) in meshes.items():
            for mapping in ("latency", "spread"):
                d1, d2 = Path(tmp) / f"{p}{mapping}1", Path(tmp) / f"{p}{mapping}2"
                d1.mkdir(), d2.mkdir()
                one_l, two_l = one(p, 1, mapping, d1, a.hop_cycles), one(p, 2, mapping, d2, a.hop_cycles)
                layer = two_l["cycles"] - one_l["cycles"]
                published = CLOCK_HZ / (rate * LAYERS)
                rows.append({"mesh": p, "dim": dim, "ffn": ffn, "heads": heads, "mapping": mapping,
                             "layer_cycles": layer, "published_layer_cycles": published,
                             "tokens_per_s": CLOCK_HZ / (LAYERS * layer), "published_tokens_per_s": rate,
                             "error": published / layer - 1,
                             "split": {k: two_l["split"][k] - one_l["split"][k] for k in one_l["split"]},
                             "gemm_rects": two_l["gemm_rects"]})
                print(f"{p} x {p} {mapping}: {layer:,.0f} cycles a layer against {published:,.0f}", flush=True)
    record = {"command": command(), "machine": results_io.machine(), "prompt_len": PROMPT, "rows": rows,
              "hop_cycles": get_machine("wse2").hop_cycles if a.hop_cycles is None else a.hop_cycles,
              "program": program}
    write(name, record, markdown(record))


def program_rows() -> list[dict]:
    """WaferLLM's layer program priced with our costs (``waferllm_program.layer``) at each mesh, with the
    hop cycles of ``HOPS``; the first is the machine file's."""
    wse2 = get_machine("wse2")
    out = []
    for p, (dim, ffn, _, rate) in MESHES.items():
        published = CLOCK_HZ / (rate * LAYERS)
        parts = waferllm_program.layer(p, GROUPS[p], dim, ffn, dim, wse2)
        by_hop = {str(h): waferllm_program.layer(p, GROUPS[p], dim, ffn, dim, replace(wse2, hop_cycles=h))["total"]
                  for h in HOPS}
        out.append({"mesh": p, "group_num": GROUPS[p], "published_layer_cycles": published, "parts": parts,
                    "total_by_hop_cycles": by_hop})
    return out


def markdown(record: dict) -> str:
    md = (heading("WaferLLM's LLaMA3-8B decode layer on P x P cores of a WSE-2", record)
          + f". One layer of WaferLLM's shapes, the decode step at position {record['prompt_len']}; "
          "a layer's cycles are the 2-layer run's first decode step less the 1-layer run's; tokens/s = 1.1 GHz / "
          f"(32 x a layer). error = simulated tokens/s / published - 1. Simulated, not measured; "
          f"{record.get('hop_cycles', 1)} cycle(s) a hop.\n\n"
          "| mesh | mapping | layer cycles | WaferLLM layer cycles | tokens/s | WaferLLM tokens/s | error | "
          "compute | fabric | fill | wait | GEMM rectangles (layer 0) |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    for r in record["rows"]:
        s = r["split"]
        rects = ", ".join(f"{k} {v}" for k, v in r["gemm_rects"].items())
        md += (f"| {r['mesh']} x {r['mesh']} | {r['mapping']} | {r['layer_cycles']:,.0f} | "
               f"{r['published_layer_cycles']:,.0f} | {r['tokens_per_s']:,.0f} | {r['published_tokens_per_s']:,.1f} | "
               f"{100 * r['error']:+.0f}% | {s['compute']:,.0f} | {s['fabric']:,.0f} | {s['fill']:,.0f} | "
               f"{s['wait']:,.0f} | {rects} |\n")
    if record.get("program"):
        md += program_markdown(record["program"])
    return md


def program_markdown(rows: list[dict]) -> str:
    """The table of WaferLLM's program priced with our costs (``program_rows``)."""
    names = list(rows[0]["parts"])
    hops = list(rows[0]["total_by_hop_cycles"])
    md = ("\n## WaferLLM's own program, priced with our cost table\n\n`benchmarks/waferllm_program.py`: "
          "decode.csl's layer call by call (GEMVs, ten allreduces, the glue between them) at our vector issue, "
          "DSD setup, loop, element rates and hops; cycles a layer; no simulation, nothing fitted. The last "
          "columns re-price it at other cycles per core along the allreduce lines (a sensitivity; the machine "
          "file says 1, from the SDK white paper); error = WaferLLM / priced - 1.\n\n"
          "| mesh | " + " | ".join(names) + " | WaferLLM | "
          + " | ".join(f"hop {h}" for h in hops) + " |\n|" + "---|" * (len(names) + 2 + len(hops)) + "\n")
    for r in rows:
        pub = r["published_layer_cycles"]
        md += (f"| {r['mesh']} x {r['mesh']} | " + " | ".join(f"{r['parts'][n]:,.0f}" for n in names)
               + f" | {pub:,.0f} | " + " | ".join(f"{t:,.0f} ({100 * (pub / t - 1):+.1f}%)"
                                                  for t in r["total_by_hop_cycles"].values()) + " |\n")
    return md


if __name__ == "__main__":
    main()
