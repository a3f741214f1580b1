"""Matrix products. FLOPs: 2 per multiply-accumulate, plus 1 per output element for a bias."""

from __future__ import annotations

import numpy as np

from ..registry import Attr, define
from ..types import INT_DTYPES, TensorType, broadcast_shapes, promote
from .grad import unbroadcast


def _swap_last(emit, x):
    perm = tuple(range(x.type.rank - 2)) + (x.type.rank - 1, x.type.rank - 2)
    return emit("transpose", x, perm=perm)


def _matmul_backward(e, op, g):
    """d(a @ b) = (g @ b^T, a^T @ g), each summed over the batch dims it was broadcast along."""
    a, b = op.operands
    return (unbroadcast(e, e("matmul", g, _swap_last(e, b)), a.type),
            unbroadcast(e, e("matmul", _swap_last(e, a), g), b.type))


def _linear_backward(e, op, g):
    """d(x @ w + b) = (g @ w^T, x^T g over all tokens, g summed over all tokens). A sparse weight's
    (density < 1): g @ w^T with the same sparse w, and x^T g masked by w's mask (``e.masks``: the
    mask parameter autodiff gave it), so a pruned weight's gradient is zero."""
    x, w = op.operands[:2]
    t = op.attr.get("transpose_w", False)
    d = op.attr.get("density", 1.0)
    sparse = {"density": d, "mask_seed": op.attr.get("mask_seed", 0)} if d < 1.0 else {}
    mask = getattr(e, "masks", {}).get(w.name) if sparse else None
    grads = [e("linear", g, w, transpose_w=not t, **sparse),
             e("linear_grad_w", x, g, mask, transpose_w=t, **sparse) if mask is not None else
             e("linear_grad_w", x, g, transpose_w=t)]
    if len(op.operands) == 3:
        grads.append(e("reduce_sum", g, axes=tuple(range(g.type.rank - 1)), keepdim=False))
    return tuple(grads)


def _matmul_infer(ins, a):
    x, y = ins
    if x.rank < 2 or y.rank < 2:
        raise ValueError(f"matmul needs operands of rank >= 2, got {x} and {y}")
    if x.shape[-1] != y.shape[-2]:
        raise ValueError(f"matmul contracts {x} with {y}: inner sizes {x.shape[-1]} != {y.shape[-2]}")
    batch = broadcast_shapes(x.shape[:-2], y.shape[:-2])
    return TensorType(batch + (x.shape[-2], y.shape[-1]), promote(x.dtype, y.dtype))


define("matmul", "contraction", _matmul_infer, lambda args, a: np.matmul(args[0], args[1]),
       flops=lambda ins, out, a: 2 * out.numel * ins[0].shape[-1], arity=(2, 2), backward=_matmul_backward,
       doc="batched matrix product with NumPy broadcasting of the batch dimensions")


def _linear_infer(ins, a):
    x, w = ins[0], ins[1]
    if w.rank != 2 or x.rank < 1:
        raise ValueError(f"linear needs a 2-D weight and an input of rank >= 1, got {x} and {w}")
    k, n = (w.shape[1], w.shape[0]) if a["transpose_w"] else w.shape
    if x.shape[-1] != k:
        raise ValueError(f"linear contracts {x} with weight {w}"
                         f"{' (transposed)' if a['transpose_w'] else ''}: {x.shape[-1]} != {k}")
    if len(ins) == 3 and ins[2].shape != (n,):
        raise ValueError(f"linear bias {ins[2]} must have shape [{n}]")
    if not 0.0 < a["density"] <= 1.0:
        raise ValueError(f"linear density={a['density']} must be in (0, 1]")
    return TensorType(x.shape[:-1] + (n,), promote(*(t.dtype for t in ins)))


def _linear_ref(args, a):
    x, w = args[0], args[1]
    y = x @ (w.T if a["transpose_w"] else w)
    return y + args[2] if len(args) == 3 else y


def _linear_flops(ins, out, a):
    k = ins[0].shape[-1]
    return round(2 * out.numel * k * a["density"]) + (out.numel if len(ins) == 3 else 0)


define("linear", "contraction", _linear_infer, _linear_ref, flops=_linear_flops, arity=(2, 3),
       attrs={"transpose_w": Attr("bool", False),
              # a sparse weight (the sparsify pass): its fraction of non-zeros, and the seed of the random
              # mask of a weight that has no data. The numbers do not change (the weights hold the zeros);
              # the FLOPs count the non-zeros' products, and the mesh kernel skips the zeros.
              "density": Attr("float", 1.0), "mask_seed": Attr("int", 0)},
       backward=_linear_backward,
       doc="x @ w (+ b); w is [in, out], or [out, in] with transpose_w (torch.nn.Linear); "
           "density < 1: w is sparse, with that fraction of non-zeros")


def _embedding_infer(ins, a):
    table, ids = ins
    if table.rank != 2:
        raise ValueError(f"embedding table must be 2-D, got {table}")
    if ids.dtype not in INT_DTYPES:
        raise ValueError(f"embedding indices must be integers, got {ids}")
    return TensorType(ids.shape + (table.shape[1],), table.dtype)


def _embedding_bytes(ins, out, a):
    table, ids = ins
    return ids.nbytes + out.nbytes, out.nbytes  # reads only the rows it gathers


define("embedding", "gather", _embedding_infer, lambda args, a: args[0][args[1]], arity=(2, 2),
       bytes_moved=_embedding_bytes,
       backward=lambda e, op, g: (e("embedding_grad", g, op.operands[1], rows=op.operands[0].type.shape[0]), None),
       doc="gather rows of a [vocab, dim] table by integer ids")



def sparse_params(g) -> dict[str, float]:
    """The parameters of graph g that sparse linear ops (``sparsify``) read as their weight, with
    their density."""
    params = {p.name for p in g.params}
    return {op.operands[1].name: op.attr["density"] for op in g.ops
            if op.kind == "linear" and op.attr.get("density", 1.0) < 1.0 and op.operands[1].name in params}
