"""A text IR file as a compiler input: any graph ``wafer opt`` prints, or a dump that ``wafer
compile --print-ir-after`` wrote, which carries a header of ``#`` lines naming the passes that
already ran and the model it came from, so that compiling the dump resumes where it stopped:

    # waferscale 0.1.0: cerebras-gpt-111m after pass 2 of 6
    # pipeline: canonicalize,fuse{epilogues=true,prologues=true}
    # model: {"name": "cerebras-gpt-111m", "batch": 4, "seq": 2048, ...}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import limits as L
from ..errors import UsageError
from ..ir import Graph, parse, verify
from ..safe_read import loads_json, read_bytes

PIPELINE, MODEL = "# pipeline: ", "# model: "


@dataclass
class IrFile:
    graph: Graph
    model: dict | None  # the report's model section, from the header
    done: str  # the pipeline that made it ("" if none is recorded)


def header(pipeline: str, model: dict, title: str) -> str:
    return (f"# {title}\n{PIPELINE}{pipeline}\n"
            f"{MODEL}{json.dumps(model, sort_keys=True, separators=(',', ':'))}\n")


# The keys of the model section a header must carry (the report reads them), and their types.
MODEL_KEYS = {
    **dict.fromkeys(("name", "source", "activation", "dtype", "traced_on"), str),
    **dict.fromkeys(("layers", "d_model", "heads", "d_ffn", "vocab", "context", "batch", "seq", "torch_params",
                     "params", "weight_bytes", "bytes_read", "bytes_written"), int),
    **dict.fromkeys(("flops", "flops_per_token"), (int, float)),
    "flops_per_token_by_class": dict,
}


# Architecture keys a user's nn.Module has no value for: null in its header.
MAY_BE_NULL = frozenset({"layers", "d_model", "heads", "d_ffn", "vocab", "context", "activation"})
FLOP_CLASSES = ("matmul", "attention", "other")


def check_model(model: dict, p: Path) -> None:
    for key, kind in MODEL_KEYS.items():
        v = model.get(key)
        if v is None and key in MAY_BE_NULL and key in model:
            continue
        if isinstance(v, bool) or not isinstance(v, kind):
            what = "lacks" if key not in model else "has a bad"
            raise UsageError(f"{p}: the '# model:' header {what} {key!r}; write the dump again with "
                             "--print-ir-after, or delete the header line to compile the graph alone")
    by = model["flops_per_token_by_class"]
    if any(isinstance(by.get(c), bool) or not isinstance(by.get(c), (int, float)) for c in FLOP_CLASSES):
        raise UsageError(f"{p}: the '# model:' header's flops_per_token_by_class needs numbers for "
                         f"{', '.join(FLOP_CLASSES)}; write the dump again with --print-ir-after")
    # the values the report divides by and the simulator loops over: in range, or one line (a doctored
    # header's batch of 10^38 or flops_per_token of 0 otherwise fails deep inside)
    bounds = {"batch": L.MAX_BATCH, "seq": L.MAX_TOKENS, "flops_per_token": float("inf")}
    for key, top in bounds.items():
        if not 1 <= model[key] <= top:
            raise UsageError(f"{p}: the '# model:' header's {key!r} is out of range ({str(model[key])[:40]}); write "
                             "the dump again with --print-ir-after")
    if model["batch"] * model["seq"] > L.MAX_TOKENS:
        raise UsageError(f"{p}: the '# model:' header's batch x seq is over {L.MAX_TOKENS:,} tokens; write the dump "
                         "again with --print-ir-after")
    if not all(0 <= by[c] < float("inf") for c in FLOP_CLASSES) or sum(by[c] for c in FLOP_CLASSES) <= 0:
        raise UsageError(f"{p}: the '# model:' header's flops_per_token_by_class needs non-negative finite numbers "
                         "that are not all 0; write the dump again with --print-ir-after")


def read_ir_file(path: str) -> IrFile:
    p = Path(path)
    try:
        text = read_bytes(p, "text IR file", L.MAX_IR_FILE_BYTES).decode()
    except UnicodeDecodeError:
        raise UsageError(f"{p} is not a UTF-8 text file; pass a text IR file") from None
    model, done = None, ""
    for line in text.splitlines():
        if not line.startswith("#"):
            if line.startswith("program @"):
                raise UsageError(f"{p} is a dump of the lowered program (after 'lower'); compile a dump of the "
                                 "graph (one written before 'lower') or the model itself")
            if line.strip():
                break
        elif line.startswith(PIPELINE):
            done = line[len(PIPELINE):].strip()
        elif line.startswith(MODEL):
            model = loads_json(line[len(MODEL):], f"{p}: the '# model:' header line")
            if not isinstance(model, dict):
                raise UsageError(f"{p}: the '# model:' header line is not a JSON object")
            check_model(model, p)
    return IrFile(verify(parse(text, source=str(p))), model, done)
