"""waferscale: lower GPT models onto a wafer-scale mesh of cores and simulate them.

``waferscale.compile`` is the compiler's entry point (``wafer compile`` is built on it)."""

from .version import __version__

__all__ = ["__version__", "compile"]

EXECUTION = ("auto", "pipelined", "streaming")


def compile(model, example_inputs=None, *, mode=None, target=None, pipeline=None, execution=None, batch=1, seq=None,
            dtype=None, weights="auto", seed=0, frontend="torch-export", print_ir_after=(), print_ir_after_all=False,
            compile_to=None, systems=None, split=None, sparsity=None, lora=None, prompt_len=None, new_tokens=None,
            log=None, quantize=None, expert_routing=None):
    """Compile a model and, with ``target``, place and simulate it on a machine.

    model: a zoo name (``"llama-3.1-8b"``), a Hugging Face causal LM config (a folder holding
    ``config.json``, the file, or a ``PretrainedConfig``), a ``.mlir`` or ``.ir`` file, or any
    ``torch.nn.Module`` together with ``example_inputs`` (a tensor or a tuple of them).
    mode: what to run, a registered mode (``waferscale.modes.MODES``): ``inference`` (the default,
    a forward pass), ``train`` (a training step: forward, backward, AdamW; options ``lora`` a lora
    pass string, ``sparsity``) or ``generate`` (prefill and KV-cache decode; options
    ``prompt_len``, ``new_tokens``). For compatibility ``mode`` may also be an execution mode.
    execution: the mode on the wafer, ``auto``, ``pipelined`` or ``streaming``.
    target: ``"wse2"``, ``"wse3"``, a machine file or ``"mesh:RxC"``; pipeline: a pass pipeline replacing the default
    (inference; ``wafer passes`` lists them). batch and seq shape a model by name or config (seq
    None: its default), dtype (``f16``, ``bf16``, ``f32``) its weights and activations (None: f16,
    or a module's own); weights ``auto``, ``meta`` or ``random``. systems, split: several systems
    (train: data parallel; generate: a pipeline of layers). sparsity: keep this fraction of every
    linear weight but lm_head (``sparsify{density=...}``).
    quantize: a quantize pass added after canonicalize, e.g. ``"quantize{weights=int8,group=0}"``
    (inference, generate).
    expert_routing (inference): a MoE model's routing distribution on the mesh, ``uniform``,
    ``zipf:S`` or a file of measured counts per expert (``backends/routing.py``, docs/moe.md).

    Returns a ``Compiled``: ``.report`` (report.json as a dict, its ``run`` section the spec that
    ``wafer replay`` compiles again), ``.ir`` (the text IR), ``.graph``, ``.program``,
    ``.placement`` (placement.json as a dict), ``.summary()`` (report.txt), ``.run(*inputs)`` (the
    outputs, by the placed numerics or the NumPy interpreter) and ``.write(dir)``. A user error
    raises ``waferscale.errors.WaferError`` with one line.
    """
    from .driver import compile_run
    from .errors import UsageError
    from .modes import RunSpec

    if mode in EXECUTION:  # the older meaning of mode
        if execution is not None:
            raise UsageError(f"mode={mode!r} is an execution mode, and execution={execution!r} is given too")
        mode, execution = None, mode
    mode = mode or "inference"
    if isinstance(print_ir_after, str):
        print_ir_after = (print_ir_after,)
    names = tuple(n.strip() for v in print_ir_after for n in v.split(",") if n.strip())
    given = {"sparsity": sparsity, "lora": lora, "prompt_len": prompt_len, "new_tokens": new_tokens,
             "quantize": quantize, "expert_routing": expert_routing}
    options = {k: v for k, v in given.items() if v is not None}
    run = RunSpec(model, mode, options, target=target, execution=execution, systems=systems, split=split,
                  batch=batch, seq=seq, dtype=dtype, weights=weights, seed=seed, frontend=frontend,
                  pipeline=pipeline, compile_to=compile_to, print_ir_after=names,
                  print_ir_after_all=print_ir_after_all, example_inputs=example_inputs)
    return compile_run(run, log or (lambda msg: None))
