"""One point of the coupling dial: train a network at one coupling strength and measure where it ended.

Chapter 4 sweeps the dial with uncached runs of :func:`coupling_point`; the
grids of chapters 6-8 go through :func:`itercourse.experiments.run`, which
caches by config hash.
"""
from __future__ import annotations

import time
from dataclasses import asdict, replace

from .coupling import block_difference, block_similarity, block_spread, effective_parameters
from .models import build_resnet, count_parameters
from .training import TrainConfig, train


def coupling_point(data, model_cfg, strength: float | None, *, train_cfg=None, identical_init: bool = True,
                   seed: int = 0, progress: bool = False) -> dict:
    """Train one model at coupling ``strength`` and measure where it ended on the dial (JSON-ready dict).

    Chapter 4's uncached run (the grids of chapters 6-8 go through :func:`run`).
    Returns the config, per-epoch history, final ``block_spread`` (conv
    weights and all parameters), ``block_difference``, the last stage's block
    similarity matrix (conv weights), ``effective_parameters``,
    ``count_parameters`` and wall time.
    """
    train_cfg = TrainConfig() if train_cfg is None else train_cfg
    train_cfg = replace(train_cfg, coupling=strength, identical_init=identical_init, seed=seed)
    model = build_resnet(model_cfg, seed=seed)
    t0 = time.perf_counter()
    history = train(model, data, train_cfg, progress=progress)
    return {"strength": strength, "identical_init": identical_init, "seed": seed, "dataset": data.name,
            "model": asdict(model_cfg), "train": asdict(train_cfg), "history": history.as_dict(),
            "spread": block_spread(model), "spread_conv": block_spread(model, include_norm=False),
            "max_difference": block_difference(model),
            "similarity_last_stage": block_similarity(model, len(model.stages) - 1, include_norm=False).tolist(),
            "effective_parameters": effective_parameters(model), "parameters": count_parameters(model),
            "seconds": time.perf_counter() - t0}
