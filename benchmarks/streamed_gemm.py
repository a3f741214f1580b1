"""The streamed-weight (activation-stationary) GEMM against the weight-stationary one, and unstructured
sparsity on it (issue 27, item 4), in weight-streaming mode on a WSE-2:

1. a compute-bound layer: cerebras-gpt-13b's MLP (5120 -> 20480, GELU, 20480 -> 5120) at batch 64 x
   2048 tokens, f16, two such blocks and the second timed (its input resident, as a layer's is inside
   a model); weight-stationary dense (``place{streamed_gemm=none}``), streamed dense (``all``), the
   streamed kernel at densities 0.5 to 0.03 (``sparsify{density=D}``, the default ``sparse``) and the
   weight-stationary kernel at 0.1 (``none``);
2. a whole layer of cerebras-gpt-13b at the same batch (`wafer compile`, each in a fresh process):
   dense weight-stationary, dense streamed, and density 0.1 streamed;
3. the PE level (``runtime/pe_streamed.py``) against the tile level (``backends/streamed.py``) on
   random small shapes (meshes to 8 x 8, densities 1 to 0.03, f16 and f32 lanes).

    python benchmarks/streamed_gemm.py [--pe-cases 24] [--no-model]

Writes benchmarks/results/streamed_gemm.md and .json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import results_io  # benchmarks/ is on sys.path when a script here runs
from results_io import command, compile_outputs, write

from waferscale.backends.sparse import SparseWeight
from waferscale.backends.streamed import streamed_time
from waferscale.driver import run_passes
from waferscale.ir import parse
from waferscale.runtime.pe_streamed import simulate_streamed

B, S, D, F = 64, 2048, 5120, 20480
CLOCK = 1.1e9  # WSE-2 (machine.py)


def mlp_graph():
    body, params, x = [], [], "%x"
    for i in range(2):
        params.append(f"  param %w1_{i} : f16[{D},{F}]\n  param %w2_{i} : f16[{F},{D}]")
        body += [f'  %a{i} = linear {x}, %w1_{i} : f16[{B},{S},{F}] loc("h.{i}.mlp.c_fc")',
                 f'  %b{i} = gelu %a{i} : f16[{B},{S},{F}] loc("h.{i}.mlp.act")',
                 f'  %c{i} = linear %b{i}, %w2_{i} : f16[{B},{S},{D}] loc("h.{i}.mlp.c_proj")']
        x = f"%c{i}"
    return parse(f"graph @mlp(%x: f16[{B},{S},{D}]) {{\n" + "\n".join(params) + "\n" + "\n".join(body)
                 + f"\n  return {x}\n}}")


def mlp_rows() -> list[dict]:
    g, rows = mlp_graph(), []
    for density, which in [(1.0, "none"), (1.0, "all"), (0.5, "sparse"), (0.25, "sparse"), (0.1, "sparse"),
                           (0.03, "sparse"), (0.1, "none")]:
        sp = f"sparsify{{density={density}}}," if density < 1 else ""
        t0 = time.perf_counter()
        s = run_passes(g, f"canonicalize,{sp}fuse,lower,place{{mode=streaming,streamed_gemm={which}}},route,simulate",
                       batch=B, seq=S, target="wse2")
        layer = s.sim.groups[1]
        rows.append({"density": density, "streamed_gemm": which, "cycles": layer.end - layer.start,
                     "stream_cycles": layer.stream_end - layer.stream_start,
                     "rects": [[r.rows, r.cols] for r in s.placement.rects[2:]],
                     "seconds_to_compile": time.perf_counter() - t0})
        print(f"MLP density {density} streamed_gemm={which}: {rows[-1]['cycles']:,} cycles", flush=True)
    return rows


def model_rows() -> list[dict]:
    rows = []
    for density, which in [(1.0, "none"), (1.0, "all"), (0.1, "sparse")]:
        sp = f"sparsify{{density={density}}}," if density < 1 else ""
        pipe = f"canonicalize,{sp}fuse,lower,place{{mode=streaming,streamed_gemm={which}}},route,simulate"
        out, error = compile_outputs("cerebras-gpt-13b", "--target", "wse2", "--batch", str(B), "--seq", str(S),
                                     "-p", pipe)
        if error:
            rows.append({"density": density, "streamed_gemm": which, "error": error})
            continue
        rep = out["report.json"]
        layer = rep["time"]["layers"][1]
        rows.append({"density": density, "streamed_gemm": which, "layer_cycles": layer["compute_cycles"],
                     "layer_stream_cycles": layer["stream_cycles"], "step_ms": 1e3 * rep["time"]["seconds"],
                     "mfu": rep["time"]["mfu"]})
        print(f"13B density {density} streamed_gemm={which}: layer {layer['compute_cycles']:,} cycles, "
              f"step {rows[-1]['step_ms']:.1f} ms", flush=True)
    return rows


def pe_rows(cases: int) -> list[dict]:
    rng, rows = np.random.default_rng(1), []
    for _ in range(cases):
        m, k, n = int(rng.integers(8, 200)), int(rng.integers(8, 300)), int(rng.integers(4, 48))
        kp, mp = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        d, lanes = float(rng.choice([1.0, 0.5, 0.25, 0.1, 0.03])), float(rng.choice([4.0, 1.0]))
        a = rng.standard_normal((m, k)).astype(np.float32)
        mask = rng.random((k, n)) < d
        w = rng.standard_normal((k, n)).astype(np.float32) * mask
        pe = simulate_streamed(a, w, kp, mp, lanes).cycles
        tile = streamed_time(m, k, n, kp, mp, lanes, SparseWeight("w", k, n, mask.mean(), mask) if d < 1 else None)
        rows.append({"m": m, "k": k, "n": n, "kp": kp, "mp": mp, "density": d, "lanes": lanes, "pe": pe,
                     "tile": tile.total, "error": (tile.total - pe) / pe})
        print(f"PE {m}x{k}x{n} on {kp}x{mp} d={d} lanes={lanes}: PE {pe:,} tile {tile.total:,} "
              f"({100 * rows[-1]['error']:+.2f}%)", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pe-cases", type=int, default=24)
    p.add_argument("--no-model", action="store_true", help="skip the whole cerebras-gpt-13b layer (3 compiles)")
    a = p.parse_args()
    mlp = mlp_rows()
    model = [] if a.no_model else model_rows()
    pe = pe_rows(a.pe_cases)
    cmd = command()
    stationary, streamed = mlp[0]["cycles"], mlp[1]["cycles"]
    lines = [f"# Streamed-weight GEMM and unstructured sparsity, weight streaming on a WSE-2, batch {B} x {S}, f16", "",
             f"Command: `{cmd}` on {results_io.machine()}.", "",
             "Simulated figures. Layer = the second of two cerebras-gpt-13b MLP blocks (its input resident); "
             "cycles of its compute (its weights stream in behind the layer before). `streamed_gemm`: none = "
             "weight-stationary GEMM, all/sparse = the streamed-weight GEMM (waferscale/backends/streamed.py).", "",
             "| density | GEMM | layer cycles | ms | vs stationary dense | vs streamed dense | 1/d | rectangles |",
             "|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in mlp:
        kind = "stationary" if r["streamed_gemm"] == "none" else "streamed"
        lines.append(f"| {r['density']} | {kind} | {r['cycles']:,} | {1e3 * r['cycles'] / CLOCK:.2f} | "
                     f"{stationary / r['cycles']:.2f} | {streamed / r['cycles']:.2f} | {1 / r['density']:.1f} | "
                     f"{', '.join(f'{x}x{y}' for x, y in r['rects'])} |")
    if model:
        lines += ["", "Whole layer of cerebras-gpt-13b (transformer.h.0, `wafer compile cerebras-gpt-13b "
                  f"--target wse2 --batch {B} --seq {S} -p ...`): its compute cycles, and the whole step.", "",
                  "| density | GEMM | layer cycles | layer speed-up | step ms | MFU |",
                  "|---:|---|---:|---:|---:|---:|"]
        base = model[0].get("layer_cycles")
        for r in model:
            if "error" in r:
                lines.append(f"| {r['density']} | {r['streamed_gemm']} | - | - | - | {r['error'][:80]} |")
                continue
            kind = "stationary" if r["streamed_gemm"] == "none" else "streamed"
            lines.append(f"| {r['density']} | {kind} | {r['layer_cycles']:,} | {base / r['layer_cycles']:.2f} | "
                         f"{r['step_ms']:.1f} | {100 * r['mfu']:.1f}% |")
    errs = np.array([r["error"] for r in pe])
    lines += ["", f"PE level against tile level, {len(pe)} random shapes: mean |error| "
              f"{100 * np.abs(errs).mean():.2f}%, from {100 * errs.min():+.2f}% to {100 * errs.max():+.2f}% "
              "(tile - PE).", "",
              "| m | k | n | K parts | M parts | density | lanes | PE cycles | tile cycles | error |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['m']} | {r['k']} | {r['n']} | {r['kp']} | {r['mp']} | {r['density']} | {r['lanes']:g} | "
              f"{r['pe']:,} | {r['tile']:,} | {100 * r['error']:+.2f}% |" for r in pe]
    write("streamed_gemm", {"command": cmd, "machine": results_io.machine(), "mlp": mlp, "model": model, "pe": pe},
          "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
