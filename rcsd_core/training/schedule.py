"""What a round does at each step, from the config alone: the learning-rate factor, the step's
prompts and the seeds. Pure functions of (config, step, rank), so a resumed round repeats the
straight one step for step, and every rank agrees without talking.

    from rcsd_core.training.schedule import lr_factor, step_tasks, derive_seed
    lr_factor(1, config)                      # 1-based step -> multiplier of config.learning_rate
    step_tasks(train_tasks, config, step)     # the step's prompts_per_step tasks (all ranks)
    derive_seed(config.seed, step, rank)      # the sampling seed of one rank at one step
"""

from __future__ import annotations

import math

import numpy as np

from rcsd_core.contracts.config import RoundConfig
from rcsd_core.contracts.tasks import Task


def lr_factor(step: int, config: RoundConfig) -> float:
    """Multiplier of the learning rate at 1-based step `step`: linear warmup, then the schedule."""
    warmup = config.warmup_steps
    if warmup and step <= warmup:
        return step / warmup
    if config.lr_schedule == "constant":
        return 1.0
    span = max(1, config.steps - warmup - 1)
    progress = min(1.0, max(0.0, (step - warmup - 1) / span))
    floor = config.min_lr_ratio
    if config.lr_schedule == "linear":
        return floor + (1 - floor) * (1 - progress)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def derive_seed(*parts: int) -> int:
    """A 31-bit seed from integers (seed, step, rank, ...), stable across runs and processes."""
    return int(np.random.SeedSequence([abs(int(p)) for p in parts]).generate_state(1)[0] % (2**31 - 1))


def step_tasks(train: list[Task], config: RoundConfig, step: int) -> list[Task]:
    """The prompts of a 1-based step: a seeded permutation per epoch, consumed in order.

    Every rank computes the same list; rank r then takes items r, r+W, ... (W processes).
    """
    n = len(train)
    out = []
    for j in range(config.prompts_per_step):
        i = (step - 1) * config.prompts_per_step + j
        epoch, index = divmod(i, n)
        order = np.random.default_rng([config.seed, epoch]).permutation(n)
        out.append(train[int(order[index])])
    return out
