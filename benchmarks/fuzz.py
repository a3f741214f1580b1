"""Fuzz the `wafer` command with bad and odd inputs: the contract is exit 0, or exit 2 with exactly
one line on stderr; never a traceback, a bug (exit 3), a hang (a case still running after CASE_SECONDS) or a
blow-up of memory (the run's peak RSS is reported).

    python benchmarks/fuzz.py [--cases 10000] [--seed 0]     (make fuzz)

Five generators, seeded, each case a fresh mutation: an IR text of the tiny model with characters
deleted, inserted or replaced (`wafer opt`), the same with digits changed compiled onto a small
mesh (`wafer compile FILE.ir --target`), the tiny model's torch-dialect `.mlir` file mutated the
same way (`wafer compile FILE.mlir`), Hugging Face GPT-2 configs with random keys and values
(`wafer compile DIR`), and random command lines (`wafer compile tiny ...`, `wafer simulate-kernel
...`). Writes benchmarks/results/fuzz.md and .json: cases per generator, failures with their
first line and a reproducer. ``tests/test_fuzz.py`` runs a few hundred of the same cases.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import resource
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from waferscale.cli import main  # noqa: E402

CHARS = ['"', "{", "}", "[", "]", "%", "\x01", "\n", "x", "9", "(", ")", ":", ",", "\\", "é", "-", "@", "#", "0",
         "e", ".", "[" * 500, "inf", "nan", "f64", "i1"]
VALUES = [0, -1, 1, 2, 3, 4, 7, 8, 64, 10 ** 9, 10 ** 30, 0.5, -0.5, 1e300, float("nan"), "", "x", None, True, [],
          {}, "gelu", "bogus", "relu", "gelu_new"]
KEYS = ["n_layer", "n_embd", "n_head", "n_positions", "vocab_size", "n_inner", "activation_function",
        "layer_norm_epsilon", "model_type", "scale_attn_weights", "tie_word_embeddings", "n_ctx", "bogus_key"]
# A Llama-style config (any causal LM family goes through the same checks), and the keys to vary in it
LLAMA = {"model_type": "llama", "num_hidden_layers": 1, "hidden_size": 16, "num_attention_heads": 2,
         "num_key_value_heads": 1, "intermediate_size": 32, "max_position_embeddings": 16, "vocab_size": 64}
LLAMA_KEYS = ["num_hidden_layers", "hidden_size", "num_attention_heads", "num_key_value_heads", "intermediate_size",
              "max_position_embeddings", "vocab_size", "head_dim", "hidden_act", "rms_norm_eps", "rope_theta",
              "rope_scaling", "rope_parameters", "model_type", "tie_word_embeddings", "bogus_key"]
LLAMA_VALUES = ["llama", "mistral", "qwen2", "gpt_neox", "opt", "phi", "vit", "silu",
                {"rope_type": "llama3"}, {"rope_type": "linear", "factor": 2.0}]
FLAGS = {"--batch": ["1", "2", "0", "-1", "99999999999999999999999999", "1e3", "x", ""],
         "--seq": ["1", "8", "16", "0", "129", "-3", "x"],
         "--dtype": ["f16", "f32", "bf16", "f8", ""],
         "--target": ["mesh:16x16", "mesh:8x8", "mesh:1x1", "mesh:0x4", "mesh:2000x2", "mesh:8x8,fmac=0.5",
                      "mesh:8x8,sram_kib=7", "mesh:8x8,sram_kib=1e9", "mesh:8x8,clock_ghz=0", "wse2", "wse9",
                      "mesh:16x16,io_gbs=0.001", "mesh:4x4,link_bytes=8", "mesh:", "mesh:8x8,fmac=nan"],
         "--mode": ["auto", "pipelined", "streaming", "x"],
         "-p": ["canonicalize", "canonicalize,fuse,lower,place,route,simulate", "lower", "fuse{x=1}", "place{",
                "simulate{chunk=0}", "simulate{chunk=-1}", ",,", "canonicalize,lower,place,route,simulate{chunk=1}"],
         "--seed": ["0", "-1", "99999999999999999999"],
         "--compile-to": ["canonicalize", "lower", "nope"],
         "--print-ir-after": ["canonicalize", "all", "nope"]}
KERNEL = {"--m": ["1", "0", "3", "-2", "1000000000000", "x"], "--k": ["1", "16", "0", "65536", "1e12"],
          "--n": ["1", "16", "7", "0", "65536"], "--mesh": ["4x4", "0x0", "wse2", "mesh:2x2", "1x1000000000"],
          "--level": ["pe", "tile", "both"], "--dtype": ["f16", "f32"], "--reduce": ["chain", "tree", "auto", "x"]}


CASE_SECONDS = 60  # a case still running after this is a hang


class Hang(BaseException):  # not an Exception: the CLI's catch-all of bugs must not take it
    pass


def _alarm(signum, frame):
    raise Hang


def run_cli(argv: list[str]) -> tuple[int, str]:
    """(exit code, stderr) of one command line, run in this process; a hang is exit -1."""
    err, out = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own errors
            code = e.code if isinstance(e.code, int) else 2
        except Hang:
            code = -1
            err.write(f"hang: still running after {CASE_SECONDS} s\n")
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)
    return code, err.getvalue()


def mutate(text: str, rng: random.Random, chars=CHARS, edits: int = 5) -> str:
    t = list(text)
    for _ in range(rng.randint(1, edits)):
        pos = rng.randrange(len(t))
        r = rng.random()
        if r < 0.3:
            del t[pos:pos + rng.randint(1, 20)]
        elif r < 0.6:
            t.insert(pos, rng.choice(chars))
        else:
            t[pos] = rng.choice(chars)
    return "".join(t)


class Fuzzer:
    def __init__(self, work: Path):
        self.work = work
        code, err = run_cli(["compile", "tiny", "--seq", "8", "-q", "-o", str(work / "tiny")])
        assert code == 0, err
        self.ir = (work / "tiny" / "model.ir").read_text()
        code, err = run_cli(["compile", "tiny", "--seq", "8", "-q", "--frontend", "torch-mlir", "-o", str(work / "m")])
        assert code == 0, err
        self.mlir_text = (work / "m" / "model.mlir").read_text()

    def ir_opt(self, rng):
        f = self.work / "m.ir"
        f.write_text(mutate(self.ir, rng), errors="surrogateescape")
        return ["opt", str(f)]

    def mlir(self, rng):
        f = self.work / "m.mlir"
        f.write_text(mutate(self.mlir_text, rng, edits=3), errors="surrogateescape")
        return ["compile", str(f), "-q", "-o", str(self.work / "out")]

    def ir_compile(self, rng):
        f = self.work / "c.ir"
        f.write_text(mutate(self.ir, rng, chars=list("0123456789 ,x"), edits=3))
        return ["compile", str(f), "--target", "mesh:16x16", "-q", "-o", str(self.work / "out")]

    def config(self, rng):
        cfg = {"model_type": "gpt2", "n_layer": 1, "n_embd": 16, "n_head": 2, "n_positions": 16, "vocab_size": 64}
        for _ in range(rng.randint(1, 4)):
            cfg[rng.choice(KEYS)] = rng.choice(VALUES)
        if rng.random() < 0.5:
            cfg = dict(LLAMA)
            for _ in range(rng.randint(1, 4)):
                cfg[rng.choice(LLAMA_KEYS)] = rng.choice(VALUES + LLAMA_VALUES)
        d = self.work / "cfg"
        d.mkdir(exist_ok=True)
        text = json.dumps(cfg, allow_nan=True)
        if rng.random() < 0.1:
            text = mutate(text, rng, edits=2)
        (d / "config.json").write_text(text)
        return ["compile", str(d), "--seq", "4", "-q", "-o", str(self.work / "out")]

    def flags(self, rng):
        if rng.random() < 0.25:
            argv = ["simulate-kernel", rng.choice(["gemm", "gemv"])]
            for flag in rng.sample(sorted(KERNEL), rng.randint(1, len(KERNEL))):
                argv += [flag, rng.choice(KERNEL[flag])]
            return argv
        argv = ["compile", "tiny", "-q", "-o", str(self.work / "out")]
        for flag in rng.sample(sorted(FLAGS), rng.randint(1, 4)):
            argv += [flag, rng.choice(FLAGS[flag])]
        if "--seq" not in argv:
            argv += ["--seq", "8"]
        return argv

    GENERATORS = ("ir_opt", "ir_compile", "mlir", "config", "flags")


def check(code: int, err: str) -> str | None:
    """What is wrong with an outcome, or None."""
    lines = err.strip().splitlines()
    if code == 0:
        return None
    if code == 2 and len(lines) == 1:
        return None
    if code == 2 and lines and lines[0].startswith("usage:") and lines[-1].startswith("wafer"):
        return None  # argparse: usage line and one error line
    return f"exit {code}: " + (lines[0][:300] if lines else "(nothing on stderr)")


def fuzz(cases: int, seed: int = 0, progress=None) -> dict:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        fz = Fuzzer(Path(tmp))
        counts = dict.fromkeys(Fuzzer.GENERATORS, 0)
        failures = []
        t0 = time.perf_counter()
        for i in range(cases):
            gen = Fuzzer.GENERATORS[i % len(Fuzzer.GENERATORS)]
            case_seed = rng.randrange(2 ** 32)
            argv = getattr(fz, gen)(random.Random(case_seed))
            code, err = run_cli(argv)
            counts[gen] += 1
            problem = check(code, err)
            if problem:
                failures.append({"generator": gen, "case_seed": case_seed, "argv": argv, "problem": problem})
            if progress and (i + 1) % 100 == 0:
                progress(i + 1, cases, len(failures))
        return {"cases": cases, "seed": seed, "per_generator": counts, "failures": failures,
                "seconds": round(time.perf_counter() - t0, 1),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main_() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    r = fuzz(a.cases, a.seed, progress=lambda i, n, f: print(f"{i}/{n} cases, {f} failures", flush=True))
    cmd = f"python benchmarks/fuzz.py --cases {a.cases} --seed {a.seed}"
    out = Path(__file__).resolve().parent / "results"
    (out / "fuzz.json").write_text(json.dumps({"command": cmd, **r}, indent=1) + "\n")
    md = ["# Fuzzing the `wafer` command", "",
          f"Command: `{cmd}` ({r['seconds']} s, peak RSS {r['peak_rss_mib']} MiB).",
          "", "Contract: exit 0, or exit 2 with one line on stderr; never a traceback, a bug (exit 3), a hang or a "
          "memory blow-up.", "", "| generator | cases |", "|---|---:|"]
    md += [f"| {g} | {n} |" for g, n in r["per_generator"].items()]
    md += ["", f"**{len(r['failures'])} failures.**", ""]
    md += [f"- {f['generator']} (case seed {f['case_seed']}): {f['problem']}" for f in r["failures"][:50]]
    (out / "fuzz.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main_()
