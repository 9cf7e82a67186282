"""The training loop: a fresh batch every step, all instances in one batched model.

Early stop (`early_stop = tol`): the loss is averaged over windows of
EARLY_STOP_WINDOW steps; training stops after a window in which no instance's
mean loss fell by more than `tol` (relative) from the window before.

Warm start (`warm_start = true`, the seed's quirk): instance k starts from the
weights instance k-1 ended with, and the instances train one after another, each
for `steps` steps with a fresh optimiser; instance 0 starts from its own init.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from . import data
from .config import Config, ConfigError
from .models import Params, forward, init_params, loss_per_instance

EARLY_STOP_WINDOW = 500
PROGRESS_EVERY = 100  # steps between progress-bar refreshes (each costs a device sync)


@dataclass
class TrainResult:
    params: Params  # on the CPU
    history: Float[Tensor, "steps inst"]  # training loss per step and instance (NaN where not trained)
    steps_run: int


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no CUDA GPU is available; use --device cpu")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def lr_factor(step: int, config: Config) -> float:
    """Multiplier of the base learning rate at `step`: linear warmup, then the schedule to 0."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    t = (step - config.warmup) / max(1, config.steps - config.warmup)
    if config.schedule == "linear":
        return 1 - t
    if config.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * t))
    return 1.0


def make_optimizer(params: list[Tensor], config: Config) -> torch.optim.Optimizer:
    kind = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return kind(params, lr=config.lr, weight_decay=config.weight_decay)


def train(config: Config, progress: bool = False) -> TrainResult:
    device = resolve_device(config.device)
    params = init_params(config, torch.Generator().manual_seed(config.seed))
    data_gen = torch.Generator(device=device).manual_seed(config.seed)
    probs = data.feature_probability(config, device)
    importance = data.importance(config, device)
    reporter = _Progress(config, progress)
    with reporter:
        if not config.warm_start:
            params = {k: v.to(device) for k, v in params.items()}
            history, steps_run = _fit(params, probs, importance, config, data_gen, reporter)
        else:
            history = torch.full((config.steps, config.instances), math.nan)
            steps_run = 0
            previous = {k: v[:1] for k, v in params.items()}
            finals = []
            for k in range(config.instances):
                current = {name: v.clone().to(device) for name, v in previous.items()}
                part, ran = _fit(current, probs[k : k + 1], importance[k : k + 1], config, data_gen, reporter)
                history[:ran, k] = part[:, 0]
                steps_run = max(steps_run, ran)
                previous = current
                finals.append(current)
            params = {name: torch.cat([p[name] for p in finals]) for name in params}
    return TrainResult(
        params={k: v.detach().cpu() for k, v in params.items()},
        history=history[:steps_run],
        steps_run=steps_run,
    )


def _fit(
    params: Params,
    probs: Float[Tensor, "inst feat"],
    importance: Float[Tensor, "inst feat"],
    config: Config,
    generator: torch.Generator,
    reporter: _Progress,
) -> tuple[Float[Tensor, "steps inst"], int]:
    """Train `params` in place; return the loss history and the number of steps run."""
    tensors = [p.requires_grad_() for p in params.values()]
    optimizer = make_optimizer(tensors, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    history = torch.empty(config.steps, probs.shape[0], device=probs.device)
    for step in range(config.steps):
        x = data.sample(config.data, probs, config.batch_size, generator)
        out = forward(params, x, config.model, config.activation)
        per_instance = loss_per_instance(out, x, importance)
        optimizer.zero_grad(set_to_none=True)
        per_instance.sum().backward()
        optimizer.step()
        schedule.step()
        history[step] = per_instance.detach()
        done = step + 1
        if done % PROGRESS_EVERY == 0 or done == config.steps:
            reporter.advance(done, history[step])
        if config.early_stop and _converged(history[:done], config.early_stop):
            break
    for p in tensors:
        p.requires_grad_(False)
    return history[:done].cpu(), done


def _converged(history: Float[Tensor, "steps inst"], tol: float) -> bool:
    steps = history.shape[0]
    if steps % EARLY_STOP_WINDOW or steps < 2 * EARLY_STOP_WINDOW:
        return False
    current = history[-EARLY_STOP_WINDOW:].mean(0)
    before = history[-2 * EARLY_STOP_WINDOW : -EARLY_STOP_WINDOW].mean(0)
    return bool(((before - current) <= tol * before).all())


class _Progress:
    """A rich progress bar with the mean loss and ETA; silent when disabled."""

    def __init__(self, config: Config, enabled: bool):
        self.enabled = enabled
        phases = config.instances if config.warm_start else 1
        self.total = config.steps * phases
        self.offset = 0
        self.last = 0
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TimeRemainingColumn(),
                transient=True,
            )
            self.task = self.bar.add_task("train", total=self.total, loss="-")

    def __enter__(self) -> _Progress:
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()

    def advance(self, done: int, loss: Tensor) -> None:
        if done < self.last:  # a new warm-start phase began
            self.offset += self.last
        self.last = done
        if self.enabled:
            self.bar.update(self.task, completed=self.offset + done, loss=f"{loss.mean().item():.3g}")
