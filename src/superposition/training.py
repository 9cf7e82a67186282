"""The training loop: a fresh batch every step, all instances in one batched model.

Early stop (`early_stop = tol`): the loss is averaged over windows of
EARLY_STOP_WINDOW steps; training stops after a window in which no instance's
mean loss fell by more than `tol` (relative) from the window before.

Warm start (`warm_start = true`, the seed's quirk): instance k starts from the
weights instance k-1 ended with, and the instances train one after another, each
for `steps` steps with a fresh optimiser; instance 0 starts from its own init. With
`replicates = R` the instances are groups of R copies: the groups train one after
another, copy r of group g from copy r of group g-1, so R chains run side by side.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

import torch
from jaxtyping import Float
from torch import Tensor

from . import data
from .config import Config, ConfigError
from .models import KINDS, Params, forward, init_params, loss_per_instance

EARLY_STOP_WINDOW = 500
CHUNK = 100  # steps per call of an engine; progress and early stop are checked between calls
BETAS, EPS = (0.9, 0.999), 1e-8  # Adam's defaults, the same for both engines


class Diverged(Exception):
    """Training produced non-finite weights or losses: a failure, never a run."""


def divergence(params: Params, losses: list[float]) -> str | None:
    """Why a trained model is unusable (non-finite weights or evaluation loss), or None."""
    bad = {i for i, loss in enumerate(losses) if not math.isfinite(loss)}
    for tensor in params.values():
        bad |= set((~torch.isfinite(tensor.flatten(1))).any(1).nonzero().flatten().tolist())
    if not bad:
        return None
    shown = sorted(bad)
    return (
        f"non-finite weights or loss in {len(shown)} instance(s) {shown[:10]}; "
        "lower lr or weight_decay, or add warmup"
    )


def memory_needed(config: Config) -> int:
    """Bytes of host memory a run needs at its peak, roughly: the evaluation batch and its
    temporaries, the reference engine's training batch, and the loss history."""
    copies = config.instances * config.restarts  # restarts train together, are evaluated one at a time
    evaluation = 6 * config.instances * config.eval_batch_size * config.features * 4
    training = 8 * copies * config.batch_size * config.features * 4
    weights = 8 * copies * config.features * (2 * config.hidden + 1) * 4  # with grads and Adam's moments
    return evaluation + training + weights + 4 * config.steps * copies


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def require_memory(needed: int, key: str, subject: str, detail: str, advice: str) -> None:
    """Refuse, naming `key`, a job that needs more bytes than this machine has free."""
    free = available_memory()
    if needed > free:
        raise ConfigError(
            f"{key}: {subject} about {needed / 2**30:.1f} GiB of memory ({detail}), "
            f"{free / 2**30:.1f} GiB is available; {advice}"
        )


def check_memory(config: Config) -> None:
    """Refuse, before allocating anything, a config that cannot fit in this machine's memory."""
    require_memory(
        memory_needed(config), "eval_batch_size", "this config needs",
        f"{config.instances * config.restarts} instances x {config.features} features x "
        f"batches of {config.batch_size} and {config.eval_batch_size}",
        "use fewer instances or smaller batches",
    )  # fmt: skip


@dataclass
class TrainResult:
    config: Config  # as run: device and engine settled
    params: Params  # on the CPU
    history: Float[Tensor, "steps inst"]  # training loss per step and instance (NaN where not trained)
    steps_run: int


def settle(config: Config) -> Config:
    """Replace `auto` by what will run: the device, and the engine for it.

    The fused engine is the CPU's: asking for it settles `device = auto` on the CPU.
    """
    compiled = KINDS[config.model].compiled is not None
    if config.engine == "fused" and not compiled:
        raise ConfigError(f"engine: the fused engine does not run the {config.model} model; use --engine reference")
    device = config.device
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no CUDA GPU is available; use --device cpu")
    if device == "auto":
        device = "cpu" if config.engine == "fused" or not torch.cuda.is_available() else "cuda"
    engine = config.engine
    if engine == "auto":
        engine = "fused" if device == "cpu" and compiled else "reference"
    if engine == "fused" and device != "cpu":
        raise ConfigError("engine: the fused engine runs on the CPU; use --engine reference with --device cuda")
    return config.model_copy(update={"device": device, "engine": engine})


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
    # foreach, as torch picks on CUDA: the same update arithmetic (and failures) on every device
    return kind(params, lr=config.lr, betas=BETAS, eps=EPS, weight_decay=config.weight_decay, foreach=True)


def train(config: Config, progress: bool = False) -> TrainResult:
    config = settle(config)
    check_memory(config)
    if config.restarts > 1:
        return _best_of_restarts(config, progress)
    params = init_params(config, torch.Generator().manual_seed(config.seed))
    device = torch.device(config.device)
    probs = data.feature_probability(config, device)
    importance = data.importance(config, device)

    def fit(params: Params, first: int, count: int) -> tuple[Tensor, int]:
        if config.engine == "fused":
            run = _fused_stepper(params, probs[first : first + count], importance[first : first + count], config, first)
        else:
            run = _reference_stepper(params, probs[first : first + count], importance[first : first + count], config, first)
        return _fit(run, config, count, reporter)

    with _Progress(config, progress) as reporter:
        if not config.warm_start:
            params = {k: v.to(device) for k, v in params.items()}
            history, steps_run = fit(params, 0, config.instances)
        else:
            history = torch.full((config.steps, config.instances), math.nan)
            steps_run = 0
            group = config.replicates
            previous = {k: v[:group] for k, v in params.items()}
            finals = []
            for first in range(0, config.instances, group):
                current = {name: v.detach().clone().to(device) for name, v in previous.items()}  # fresh leaves
                part, ran = fit(current, first, group)
                history[:ran, first : first + group] = part
                steps_run = max(steps_run, ran)
                previous = current
                finals.append(current)
            params = {name: torch.cat([p[name] for p in finals]) for name in params}
    return TrainResult(
        config=config,
        params={k: v.detach().cpu() for k, v in params.items()},
        history=history[:steps_run],
        steps_run=steps_run,
    )


def _best_of_restarts(config: Config, progress: bool) -> TrainResult:
    """Train `restarts` copies of every instance at once; keep each instance's best copy.

    Copies are judged on the evaluation batch of the config as given, so all copies of
    an instance face the same data.
    """
    from .metrics import eval_loss

    k = config.restarts
    copies = config.subset([i for i in range(config.instances) for _ in range(k)]).model_copy(update={"restarts": 1})
    result = train(copies, progress)
    losses = torch.stack([eval_loss(config, {n: v[r::k] for n, v in result.params.items()}) for r in range(k)])
    losses = torch.nan_to_num(losses, nan=math.inf)  # a diverged copy never wins (argmin prefers NaN)
    best = losses.argmin(0) + k * torch.arange(config.instances)  # index of each instance's best copy
    return TrainResult(
        config=config,
        params={n: v[best].clone() for n, v in result.params.items()},
        history=result.history[:, best],
        steps_run=result.steps_run,
    )


Stepper = Callable[[int, int], Float[Tensor, "steps inst"]]  # (first step, count) -> losses


def _fit(run: Stepper, config: Config, instances: int, reporter: _Progress) -> tuple[Tensor, int]:
    """Run `config.steps` steps in chunks, reporting progress and checking early stop between them."""
    history = torch.empty(config.steps, instances)
    done = 0
    while done < config.steps:
        count = min(CHUNK, config.steps - done)
        history[done : done + count] = run(done, count)
        done += count
        reporter.advance(done, history[done - 1])
        if config.early_stop and _converged(history[:done], config.early_stop):
            break
    return history[:done], done


def _reference_stepper(
    params: Params,
    probs: Float[Tensor, "inst feat"],
    importance: Float[Tensor, "inst feat"],
    config: Config,
    first_instance: int,
) -> Stepper:
    """The plain loop: torch ops, autograd, torch.optim, on any device, on the kernel's data stream."""
    tensors = [p.requires_grad_() for p in params.values()]
    optimizer = make_optimizer(tensors, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
    instances = torch.arange(first_instance, first_instance + probs.shape[0], device=probs.device)

    def run(first: int, count: int) -> Tensor:
        losses = torch.empty(count, probs.shape[0], device=probs.device)
        for s in range(count):
            x = data.batch(config, probs, instances, first + s)
            out = forward(params, x, config)
            per_instance = loss_per_instance(out, x, importance, config)
            optimizer.zero_grad(set_to_none=True)
            per_instance.sum().backward()
            try:
                optimizer.step()
            except RuntimeError as error:  # foreach Adam refuses a step size beyond float32
                if "overflow" not in str(error):
                    raise
                raise Diverged(
                    f"non-finite weights or loss: the Adam update of step {first + s} overflows float32; "
                    "lower lr or weight_decay, or add warmup"
                ) from None
            schedule.step()
            losses[s] = per_instance.detach()
        return losses.cpu()

    return run


def _fused_stepper(
    params: Params,
    probs: Float[Tensor, "inst feat"],
    importance: Float[Tensor, "inst feat"],
    config: Config,
    first_instance: int,
) -> Stepper:
    """The compiled loop of fused.py, updating `params` in place through numpy views."""
    import numba

    from . import fused

    W, b = params["W"].numpy(), params["b"].numpy()
    tied = KINDS[config.model].compiled == "tied"
    W_out = np.zeros((W.shape[0], 1, 1), np.float32) if tied else params["W_out"].numpy()
    weights = fused.Weights(W, W_out, b)
    moments = fused.Moments(*(np.zeros_like(a) for a in (W, W, W_out, W_out, b, b)))
    stream = fused.Stream(
        probs=probs.numpy(),
        seed=config.seed,
        first_instance=first_instance,
        data_code=fused.DATA_CODES[config.data],
        set_mode=fused.SET_MODES[config.correlation],
        set_size=config.set_size,
        batch=config.batch_size,
    )
    model = fused.Model(
        importance=importance.numpy(),
        tied=tied,
        hidden_relu=config.hidden_activation == "relu",
        relu_out=config.activation == "relu",
        abs_target=config.target == "abs",
    )
    optimiser = fused.Optimiser(BETAS[0], BETAS[1], EPS, config.weight_decay, config.optimizer == "adamw")
    lanes, sparse = fused.plan(stream, numba.get_num_threads())

    def run(first: int, count: int) -> Tensor:
        lrs = np.array([config.lr * lr_factor(first + s, config) for s in range(count)], np.float32)
        losses = np.empty((count, W.shape[0]), np.float32)
        fused.train_steps(weights, moments, stream, model, optimiser, first, lrs, losses, lanes, sparse)
        return torch.from_numpy(losses)

    return run


def _converged(history: Float[Tensor, "steps inst"], tol: float) -> bool:
    steps = history.shape[0]
    if steps % EARLY_STOP_WINDOW or steps < 2 * EARLY_STOP_WINDOW:
        return False
    current = history[-EARLY_STOP_WINDOW:].mean(0)
    before = history[-2 * EARLY_STOP_WINDOW : -EARLY_STOP_WINDOW].mean(0)
    return bool(((before - current) <= tol * before).all())


class LossBar:
    """A rich progress bar with the mean loss and ETA; silent when disabled."""

    def __init__(self, label: str, total: int, enabled: bool):
        self.enabled, self.total = enabled, total
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn(f"[bold]{label}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TimeRemainingColumn(),
                transient=True,
            )
            self.task = self.bar.add_task(label, total=total, loss="-")

    def __enter__(self):
        if self.enabled:
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()

    def advance(self, done: int, loss: Tensor) -> None:
        if self.enabled:
            self.bar.update(self.task, completed=done, loss=f"{loss.mean().item():.3g}")


class _Progress(LossBar):
    """Training's bar: warm start trains its phases one after another, each from step 0."""

    def __init__(self, config: Config, enabled: bool):
        phases = config.instances // config.replicates if config.warm_start else 1
        super().__init__("train", config.steps * phases, enabled)
        self.offset = 0
        self.last = 0

    def advance(self, done: int, loss: Tensor) -> None:
        if done < self.last:  # a new warm-start phase began
            self.offset += self.last
        self.last = done
        super().advance(self.offset + done, loss)
