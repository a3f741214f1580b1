"""The PyTorch training loop that ``wafer run --train --compare`` and the tests hold ours to: the
same module, batches and AdamW settings, ``clip_grad_norm_`` then ``torch.optim.AdamW``. Sparse
weights as sparse training usually does it: the weights pruned by their masks before the first
step, each step's gradients masked before clipping, the weights masked again after the step."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def add_lora(module, adapters: dict[str, np.ndarray], scale: float) -> list:
    """Plain-torch LoRA (as peft's): each GPT-2 Conv1D with adapters ``lora.A.<weight>`` and
    ``lora.B.<weight>`` returns ``conv(x) + x @ A @ B * scale``; every other parameter is frozen.
    The adapters' parameters, in the order of ``adapters``."""
    import torch

    for p in module.parameters():
        p.requires_grad_(False)
    mods = dict(module.named_modules())
    params = []
    for name, a in adapters.items():
        if not name.startswith("lora.A."):
            continue
        weight = name.removeprefix("lora.A.")
        conv = mods["model." + weight.removesuffix(".weight")]
        conv.lora_A = torch.nn.Parameter(torch.from_numpy(a.copy()))
        conv.lora_B = torch.nn.Parameter(torch.from_numpy(adapters["lora.B." + weight].copy()))
        base = conv.forward

        def forward(x, base=base, conv=conv):
            return base(x) + (x @ conv.lora_A @ conv.lora_B) * scale
        conv.forward = forward
        params += [conv.lora_A, conv.lora_B]
    return params


def torch_train(module, batches: Iterator[tuple[np.ndarray, np.ndarray]], steps: int, cfg, params=None,
                masks: dict[str, np.ndarray] | None = None) -> list[float]:
    """Loss per step of ``module`` (token ids -> logits) trained in place; cfg is an AdamWConfig;
    ``params`` the ones to train (default: all); ``masks`` the sparse weights' (``mask.P``, as
    ``runtime/train.sparse_masks`` gives them)."""
    import torch

    params = list(module.parameters()) if params is None else params
    named = dict(module.named_parameters())
    sparse = [(named["model." + n.removeprefix("mask.")], torch.from_numpy(np.asarray(m, dtype=bool)))
              for n, m in (masks or {}).items()]
    with torch.no_grad():
        for p, m in sparse:
            p.mul_(m)
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                            weight_decay=cfg.weight_decay)
    losses = []
    for _ in range(steps):
        ids, labels = next(batches)
        opt.zero_grad()
        logits = module(torch.from_numpy(ids))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 torch.from_numpy(np.ascontiguousarray(labels)).reshape(-1))
        loss.backward()
        for p, m in sparse:
            p.grad.mul_(m)
        if cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        opt.step()
        with torch.no_grad():
            for p, m in sparse:
                p.mul_(m)
        losses.append(float(loss.detach()))
    return losses
