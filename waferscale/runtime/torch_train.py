"""The PyTorch training loop that ``wafer run --train --compare`` and the tests hold ours to: the
same module, batches and AdamW settings, ``clip_grad_norm_`` then ``torch.optim.AdamW``."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def torch_train(module, batches: Iterator[tuple[np.ndarray, np.ndarray]], steps: int, cfg) -> list[float]:
    """Loss per step of ``module`` (token ids -> logits) trained in place; cfg is an AdamWConfig."""
    import torch

    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                            weight_decay=cfg.weight_decay)
    losses = []
    for _ in range(steps):
        ids, labels = next(batches)
        opt.zero_grad()
        logits = module(torch.from_numpy(ids))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 torch.from_numpy(np.ascontiguousarray(labels)).reshape(-1))
        loss.backward()
        if cfg.clip > 0:
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.clip)
        opt.step()
        losses.append(float(loss.detach()))
    return losses
