"""Our column reduce's per-stage cost beside the HPDC'24 wafer-scale Reduce model (issue 26).

    python benchmarks/hpdc_reduce.py            # the model comparison (instant)
    python benchmarks/hpdc_reduce.py --decode   # also llama-3.1-8b's decode on a WSE-3 at ramp 1, 2, 4 (minutes)

Luczynski, Gianinazzi, Iff, Wilson, De Sensi, Hoefler, "Near-Optimal Wafer-Scale Reduce" (HPDC 2024,
arXiv 2404.15888) model a collective on a WSE-2 as ``T = max(C, E/N + L) + (2 T_R + 1) D``: C the
elements through the busiest PE, E the element-hops, N the links used, L the longest path in hops (one
cycle a hop), D the dependent stages on it, each paying ``2 T_R + 1`` (our reading: the ramp down into
the core, one cycle for the add, the ramp back up; ``T_R`` about 2 cycles), model error under 4% (abstract). The
paper's own text could not be read here (docs/calibration-sources.md): the form and T_R ~ 2 are as
quoted second-hand, and no measured cycles for any (n, P) were found, so nothing here is a measurement.

Our tile level charges a chain stage ``hop + ramp + psum_add`` (backends/gemm.py ``descent``; the same in
rowwise.py, attention.py and the tree's ``_tokens``) = 3 cycles on wse2.yaml (4 on wse3.yaml, whose
hop is 2 cycles), i.e. per stage a hop plus 2 where their model has a hop plus ``2 T_R + 1`` = 5:
our core puts its sum onto its router in the cycle of the add (no ramp up) and our ramp down is 1
(assumed). For a chain of P PEs reducing B elements both models have the same stream term
(``max(C, E/N + L) = B + P - 1``); they differ by
``(2 T_R + 1 - ramp - psum_add) (P - 1)`` cycles.

``--decode`` prices llama-3.1-8b's decode (prompt 128, 2 new tokens, batch 1, latency placement) on a
WSE-3 machine file with ``ramp_cycles`` 1 (the file's), 2 (T_R as one ramp) and 4 (a chain stage at
their 6 cycles; this also prices every single ramp, e.g. injector to core, at 4: an upper bound).
The PE-level simulators take only a ramp of 1 (``runtime/pe_machine.py``; any hop), so nothing below is
held to them.

Writes benchmarks/results/hpdc_reduce.json and .md.
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from dataclasses import replace
from pathlib import Path

# benchmarks/ is on sys.path when a script here runs
from results_io import RESULTS, command, compile_report, heading, machine, write

from waferscale.backends.machine import WSE2, WSE3, Machine

T_R = 2  # cycles per ramp (HPDC'24 as quoted second-hand: docs/calibration-sources.md)
SIDES = (8, 16, 64, 512)
ELEMENTS = (1, 256, 4096)
RAMPS = (1, 2, 4)
DECODE = ["--generate", "--prompt-len", "128", "--new-tokens", "2", "--batch", "1", "--placement", "latency"]


def hpdc_time(c: int, e: int, n: int, length: int, depth: int, t_r: float = T_R) -> float:
    """``T = max(C, E/N + L) + (2 T_R + 1) D``: cycles of a collective in the HPDC'24 model."""
    return max(c, e / n + length) + (2 * t_r + 1) * depth


def hpdc_chain(p: int, b: int, t_r: float = T_R) -> float:
    """A 1D chain Reduce of ``b`` elements on ``p`` PEs: every PE but the last receives, adds and forwards
    (C = B, E = B (P - 1) on N = P - 1 links, L = D = P - 1)."""
    return hpdc_time(b, b * (p - 1), max(p - 1, 1), p - 1, p - 1, t_r)


def our_stage(machine: Machine = WSE2) -> int:
    """Cycles our tile level charges a chain stage: one hop, one ramp, one partial-sum add."""
    return machine.hop_cycles + machine.ramp_cycles + machine.costs.psum_add


def our_chain(p: int, b: int, machine: Machine = WSE2) -> int:
    """Our chain down ``p`` cores of ``b`` partial sums: the stream, plus ``p - 1`` stages
    (``gemm.gemm_time``'s ``descent``, less the edges and the FMACs)."""
    return b + (p - 1) * our_stage(machine)


def ramp_machine_file(ramp: int, d: Path) -> Path:
    """wse3.yaml with ``ramp_cycles`` = ``ramp`` (and its own name), written into ``d``."""
    src = (Path(__file__).parents[1] / "waferscale/backends/machines/wse3.yaml").read_text()
    src = re.sub(r'(?m)^name: "wse3"', f'name: "wse3-ramp{ramp}"', src)
    src = re.sub(r"(?m)^(ramp_cycles:\n  value: )\d+", rf"\g<1>{ramp}", src)
    f = d / f"wse3_ramp{ramp}.yaml"
    f.write_text(src)
    return f


def decode_rate(ramp: int, d: Path) -> float:
    """llama-3.1-8b's decode tokens/s on a WSE-3 machine file with ``ramp_cycles`` = ``ramp``."""
    report, error = compile_report("llama-3.1-8b", *DECODE, "--target", str(ramp_machine_file(ramp, d)))
    if error:
        raise RuntimeError(f"ramp {ramp}: {error}")
    return report["generate"]["decode_tokens_per_second_per_user"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decode", action="store_true", help="also price llama-3.1-8b's decode at ramp 1, 2, 4")
    a = ap.parse_args(argv)
    rows = [{"pes": p, "elements": b, "ours": our_chain(p, b), "hpdc": hpdc_chain(p, b),
             "ratio": our_chain(p, b) / hpdc_chain(p, b)} for p in SIDES for b in ELEMENTS]
    out = {"command": command(), "machine": machine(), "t_r": T_R, "our_stage": our_stage(), "chain": rows,
           "wse3_hop_cycles": WSE3.hop_cycles}
    if a.decode:
        with tempfile.TemporaryDirectory() as tmp:
            out["decode_8b_wse3"] = {r: decode_rate(r, Path(tmp)) for r in RAMPS}
        out["decode_command"] = command()
    else:  # the instant form keeps the last --decode run's figures (the docs quote them), with its command
        old = RESULTS / "hpdc_reduce.json"
        prior = json.loads(old.read_text()) if old.exists() else {}
        if "decode_8b_wse3" in prior:
            out["decode_8b_wse3"] = {int(r): t for r, t in prior["decode_8b_wse3"].items()}
            out["decode_command"] = prior.get("decode_command", prior["command"])
            out["wse3_hop_cycles"] = prior.get("wse3_hop_cycles", 1)  # the hop the decode figures were run at
    md = markdown(out)
    print(md)
    write("hpdc_reduce", out, md)
    return 0


def markdown(out: dict) -> str:
    md = (heading("Chain reduce: our tile level beside the HPDC'24 model", out) + "\n\n"
          f"Per stage: ours {out['our_stage']} cycles (hop + ramp + add, wse2.yaml), HPDC'24 "
          f"{1 + 2 * out['t_r'] + 1} (hop + 2 T_R + 1, T_R = {out['t_r']}). Model against model: no measured case.\n\n"
          "| PEs | elements | ours (cycles) | HPDC'24 model (cycles) | ours / theirs |\n|---|---|---|---|---|\n")
    md += "".join(f"| {r['pes']} | {r['elements']} | {r['ours']:,} | {r['hpdc']:,.0f} | {r['ratio']:.2f} |\n"
                  for r in out["chain"])
    if "decode_8b_wse3" in out:
        rates, hop = out["decode_8b_wse3"], out.get("wse3_hop_cycles", 1)
        md += ("\n## llama-3.1-8b decode on a WSE-3 by ramp_cycles\n\n"
               f"`{out['decode_command']}`, at a {hop}-cycle hop.\n\n"
               "| ramp_cycles | chain stage (cycles) | tokens/s | vs the file's |\n|---|---|---|---|\n")
        md += "".join(f"| {r} | {our_stage(replace(WSE3, hop_cycles=hop, ramp_cycles=r))} | {t:,.0f} | "
                      f"{100 * (t / rates[1] - 1):+.1f}% |\n" for r, t in rates.items())
    return md


if __name__ == "__main__":
    raise SystemExit(main())
