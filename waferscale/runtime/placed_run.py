"""The numbers of a placed program: every kernel computed the way its rectangle of cores would.

Each kernel is split as ``backends/kernels.py`` says, and each core's tile is computed on its
own slice of the data: a GEMM's cores multiply their ``W[K_i, N_j]`` tiles and the partial sums
are added north to south down each column; an embedding's rows look up only the vocabulary
rows they hold; a normalization or softmax combines per-core partial statistics across the
columns of a row (all-reduces); attention keeps a partial softmax per core over its cyclic
share of the keys and combines the partials down each column (flash-decoding). Layout ops run
as in the interpreter. The result must equal the interpreter's up to float rounding (tested).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..backends.lowering import LAYOUT, Program
from ..ir import registry
from ..passes.placement import Placement


def _blocks(size: int, parts: int) -> list[slice]:
    edges = np.linspace(0, size, min(parts, size) + 1).round().astype(int)
    return [slice(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def _f32(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) if x.dtype == np.float16 else x


def gemm(x, w, b, rows, cols):
    k = w.shape[0]
    x2 = _f32(x).reshape(-1, k)
    out = np.zeros((x2.shape[0], w.shape[1]), dtype=np.result_type(x2, _f32(w)))
    for nj in _blocks(w.shape[1], cols):
        acc = 0
        for ki in _blocks(k, rows):  # the partial sums flow south, each row adding its own
            acc = acc + x2[:, ki] @ _f32(w[ki, nj])
        out[:, nj] = acc
    if b is not None:
        out = out + b
    return out.reshape(*x.shape[:-1], w.shape[1])


def embedding(table, ids, rows, cols):
    out = np.zeros((*ids.shape, table.shape[1]), dtype=table.dtype)
    for vi in _blocks(table.shape[0], rows):
        mine = (ids >= vi.start) & (ids < vi.stop)
        for dj in _blocks(table.shape[1], cols):
            out[..., dj] += np.where(mine[..., None], table[np.clip(ids, vi.start, vi.stop - 1), dj], 0)
    return out


def _row_allreduce(tiles, fn=np.sum):
    """Combine per-core partials across the columns of a row."""
    return fn(np.stack(tiles), axis=0)


def rowwise(kind, args, attrs, out_shape, rows, cols):
    f = out_shape[-1] if out_shape else 1
    if kind in ("layernorm", "softmax") or kind.startswith("reduce"):
        x = _f32(args[0])
        f = x.shape[-1]
    col_blocks = _blocks(f, cols)
    if kind == "layernorm":
        if attrs.get("axes", 1) != 1:
            return registry.evaluate(kind, args, attrs)
        mean = _row_allreduce([x[..., c].sum(-1, keepdims=True) for c in col_blocks]) / f
        var = _row_allreduce([((x[..., c] - mean) ** 2).sum(-1, keepdims=True) for c in col_blocks]) / f
        y = np.empty_like(x)
        for c in col_blocks:
            t = (x[..., c] - mean) / np.sqrt(var + attrs["eps"])
            if len(args) > 1:
                t = t * args[1][c]
            if len(args) > 2:
                t = t + args[2][c]
            y[..., c] = t
        return y
    if kind == "softmax":
        m = _row_allreduce([x[..., c].max(-1, keepdims=True) for c in col_blocks], np.max)
        s = _row_allreduce([np.exp(x[..., c] - m).sum(-1, keepdims=True) for c in col_blocks])
        return np.concatenate([np.exp(x[..., c] - m) / s for c in col_blocks], axis=-1)
    if kind.startswith("reduce"):
        part = {"reduce_sum": np.sum, "reduce_mean": np.sum, "reduce_max": np.max}[kind]
        r = _row_allreduce([part(x[..., c], axis=-1, keepdims=True) for c in col_blocks], part if kind ==
                           "reduce_max" else np.sum)
        r = r / f if kind == "reduce_mean" else r
        return r if attrs.get("keepdim") else r[..., 0]
    # elementwise: tokens cyclic over rows, the last axis over columns
    full = [np.broadcast_to(a, out_shape) for a in args]
    t = int(np.prod(out_shape[:-1])) if len(out_shape) > 1 else 1
    flat = [a.reshape(t, f) for a in full]
    out = None
    for r in range(min(rows, t)):
        for c in col_blocks:
            y = np.asarray(registry.evaluate(kind, [a[r::rows, c] for a in flat], attrs))
            if out is None:
                out = np.empty((t, f), dtype=y.dtype)
            out[r::rows, c] = y
    return out.reshape(out_shape)


def attention(q, k, v, attrs, rows, cols):
    q, k, v = _f32(q), _f32(k), _f32(v)
    scale = attrs.get("scale") or 1.0 / np.sqrt(q.shape[-1])
    L, S = q.shape[-2], k.shape[-2]
    heads = q.shape[-3] if q.ndim >= 3 else 1
    out = np.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
    qpos = np.arange(L)[:, None]
    for hj in _blocks(heads, cols):
        qh, kh, vh = q[..., hj, :, :], k[..., hj, :, :], v[..., hj, :, :]
        m = np.full(qh.shape[:-1] + (1,), -np.inf, dtype=q.dtype)
        den = np.zeros_like(m)
        acc = np.zeros(qh.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
        for r in range(min(rows, S)):  # this core's keys: positions r, r + rows, ...
            kp = np.arange(r, S, rows)
            s = (qh @ np.swapaxes(kh[..., kp, :], -1, -2)) * np.asarray(scale, dtype=q.dtype)
            if attrs.get("causal"):
                s = np.where(kp[None, :] <= qpos, s, -np.inf)
            mi = s.max(-1, keepdims=True)
            new = np.maximum(m, mi)
            safe = np.where(np.isinf(new), 0, new)
            p = np.exp(s - safe)
            den = den * np.exp(m - safe) + p.sum(-1, keepdims=True)
            acc = acc * np.exp(m - safe) + p @ vh[..., kp, :]
            m = new
        out[..., hj, :, :] = acc / den
    return out


def run_placed(prog: Program, placement: Placement, inputs: Mapping[str, np.ndarray],
               weights: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    g = prog.graph
    env: dict[str, np.ndarray] = {v.name: np.asarray(inputs[v.name]) for v in g.inputs}
    env.update({v.name: np.asarray(weights[v.name]).astype(v.type.np_dtype, copy=False) for v in g.params})
    kernel_of = {k.op.result.name: i for i, k in enumerate(prog.kernels)}
    for op in g.ops:
        args = [env[x.name] for x in op.operands]
        a = registry.with_defaults(op.kind, op.attr)
        if op.kind in LAYOUT:
            y = registry.evaluate(op.kind, args, op.attr)
        else:
            r = placement.rects[kernel_of[op.result.name]]
            if op.kind in ("linear", "matmul"):
                w = args[1].T if a.get("transpose_w") else args[1]
                y = gemm(args[0], w, args[2] if len(args) > 2 else None, r.rows, r.cols)
            elif op.kind == "embedding":
                y = embedding(args[0], args[1], r.rows, r.cols)
            elif op.kind == "attention":
                y = attention(*args[:3], a, r.rows, r.cols)
            else:
                y = rowwise(op.kind, args, a, op.type.shape, r.rows, r.cols)
        y = np.asarray(y)
        if y.shape != op.type.shape:
            raise AssertionError(f"placed {op.kind} gave shape {y.shape}, the IR says {op.type}")
        env[op.result.name] = y.astype(op.type.np_dtype, copy=False)
    return [env[v.name] for v in g.outputs]
