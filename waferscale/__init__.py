"""waferscale: lower GPT models onto a wafer-scale mesh of cores and simulate them.

``waferscale.compile`` is the compiler's entry point (``wafer compile`` is built on it)."""

from .version import __version__

__all__ = ["__version__", "compile"]


def compile(model, example_inputs=None, *, target=None, pipeline=None, mode=None, batch=1, seq=None, dtype=None,
            weights="auto", seed=0, frontend="torch-export", print_ir_after=(), print_ir_after_all=False,
            compile_to=None, sparsity=None, log=None, quantize=None):
    """Compile a model and, with ``target``, place and simulate it on a machine.

    model: a zoo name (``"llama-3.1-8b"``), a Hugging Face causal LM config (a folder holding
    ``config.json``, the file, or a ``PretrainedConfig``), a ``.mlir`` or ``.ir`` file, or any
    ``torch.nn.Module`` together with ``example_inputs`` (a tensor or a tuple of them).
    target: ``"wse2"``, ``"wse3"`` or ``"mesh:RxC"``; pipeline: a pass pipeline replacing the default
    (``wafer passes`` lists them); mode: ``auto``, ``pipelined`` or ``streaming``. batch and seq shape
    a model by name or config (seq None: its default), dtype (``f16``, ``bf16``, ``f32``) its
    weights and activations (None: f16, or a module's own); weights ``auto``, ``meta`` or ``random``.
    sparsity: keep this fraction of every linear weight but lm_head (``sparsify{density=...}``).
    quantize: a quantize pass added after canonicalize, e.g. ``"quantize{weights=int8,group=0}"``.

    Returns a ``Compiled``: ``.report`` (report.json as a dict), ``.ir`` (the text IR), ``.graph``,
    ``.program``, ``.placement`` (placement.json as a dict), ``.summary()`` (report.txt),
    ``.run(*inputs)`` (the outputs, by the placed numerics or the NumPy interpreter) and
    ``.write(dir)``. A user error raises ``waferscale.errors.WaferError`` with one line.
    """
    from .driver import compile_model

    if isinstance(print_ir_after, str):
        print_ir_after = (print_ir_after,)
    names = tuple(n.strip() for v in print_ir_after for n in v.split(",") if n.strip())
    return compile_model(model, example_inputs, batch=batch, seq=seq, dtype=dtype, weights=weights, seed=seed,
                         frontend=frontend, target=target, pipeline=pipeline, print_ir_after=names,
                         print_ir_after_all=print_ir_after_all, compile_to=compile_to, mode=mode,
                         sparsity=sparsity, log=log or (lambda msg: None), quantize=quantize)
