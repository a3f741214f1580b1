"""Byte-level tokens: GPT-2's vocabulary files cannot be had offline, so `wafer run --generate`
takes a prompt's UTF-8 bytes as its token ids (0..255) and shows ids as bytes again, any id of 256
or more as ``<id>``. A model needs a vocabulary of at least 256 to read them."""

from __future__ import annotations

from ..errors import UsageError


def encode(text: str, vocab: int) -> list[int]:
    ids = list(text.encode("utf-8"))
    if not ids:
        raise UsageError("--prompt is empty: give at least one character (its UTF-8 bytes are the token ids)")
    if vocab < 256:
        raise UsageError(f"the prompt's token ids are its UTF-8 bytes (0..255), and this model's vocabulary has only "
                         f"{vocab} ids")
    return ids


def decode(ids) -> str:
    out, run = [], bytearray()
    for i in map(int, ids):
        if i < 256:
            run.append(i)
            continue
        out.append(run.decode("utf-8", errors="replace"))
        run = bytearray()
        out.append(f"<{i}>")
    out.append(run.decode("utf-8", errors="replace"))
    return "".join(out)
