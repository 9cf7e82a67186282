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

import contextlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numba
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from .. import data
from ..config import Config, ConfigError
from ..kernels import dataset_fused, fused
from ..models import KINDS, Params, forward, init_params, loss_per_instance, loss_weights
from . import compiled, dataset  # noqa: F401  (compiled: its steppers register with the engine)
from .dataset import training_set
from .engines import ENGINES, settle
from .steps import BETAS, CHUNK, EPS, Stepper, lr_factor, make_optimizer

if TYPE_CHECKING:
    from .dataset import Sparse

# restarts' copies are judged on the training batches of this last share of their steps
JUDGED_SHARE = 0.1
EARLY_STOP_WINDOW = 500


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
    temporaries, the reference engine's training batch (or the training set), and the loss
    history."""
    copies = config.instances * config.restarts  # restarts train together, are evaluated one at a time
    weights = 8 * copies * config.features * (2 * config.hidden + 1) * 4  # with grads and Adam's moments
    if config.dataset_size:

        evaluation = 6 * dataset.CHUNK_VALUES * 4  # evaluated in chunks of rows
        training = dataset.bytes_needed(config.model_copy(update={"restarts": 1}), config.engine != "fused")
        training += dataset.scratch_bytes(config, copies) if config.engine == "fused" else 0
    else:
        evaluation = 6 * config.instances * config.eval_batch_size * config.features * 4
        training = 8 * copies * config.batch_size * config.features * 4
    return evaluation + training + weights + 4 * config.steps * copies + checkpoint_bytes(config)


def checkpoint_bytes(config: Config) -> int:
    """Bytes of the weights kept at the config's checkpoints (float32, every copy)."""
    values = sum(math.prod(shape) for shape in KINDS[config.model].shapes(config).values())
    return 4 * len(config.checkpoints or ()) * config.restarts * values


def available_memory(device: str = "cpu") -> int:
    """Free bytes of this machine's memory, or of the GPU's where the run is on CUDA."""
    if device == "cuda":
        return torch.cuda.mem_get_info()[0]
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def require_memory(needed: int, key: str, subject: str, detail: str, advice: str, device: str = "cpu") -> None:
    """Refuse, naming `key`, a job that needs more bytes than this machine (or its GPU) has free."""
    free = available_memory(device)
    if needed > free:
        where, advice = ("GPU memory", f"{advice}, or --device cpu") if device == "cuda" else ("memory", advice)
        raise ConfigError(
            f"{key}: {subject} about {needed / 2**30:.1f} GiB of {where} ({detail}), "
            f"{free / 2**30:.1f} GiB is available; {advice}"
        )


def check_memory(config: Config) -> None:
    """Refuse, before allocating anything, a config that cannot fit in this machine's memory,
    or in its GPU's where it trains on CUDA (the same estimate: the same tensors live there)."""
    if config.dataset_size:
        require_memory(
            memory_needed(config), "dataset_size", "this config needs",
            f"{config.instances * config.restarts} training sets of {config.dataset_size} examples x "
            f"{config.features} features" + (f", dense for the {config.engine} engine" if config.engine != "fused" else ""),
            "use a smaller dataset_size or fewer instances" + (", or the fused engine" if config.engine != "fused" else ""),
            config.device,
        )  # fmt: skip
        return
    require_memory(
        memory_needed(config), "eval_batch_size", "this config needs",
        f"{config.instances * config.restarts} instances x {config.features} features x "
        f"batches of {config.batch_size} and {config.eval_batch_size}",
        "use fewer instances or smaller batches",
        config.device,
    )  # fmt: skip


@dataclass
class TrainResult:
    config: Config  # as run: device and engine settled
    params: Params  # on the CPU
    history: Float[Tensor, "steps inst"]  # training loss per step and instance (NaN where not trained)
    steps_run: int
    dataset: Sparse | None = None  # the training set of a finite-data run
    # the weights at each step of config.checkpoints that training reached: (checkpoints, inst, ...)
    checkpoints: Params | None = None


def train(config: Config, progress: bool = False, sources: list[int] | None = None) -> TrainResult:
    """sources: the instance whose training set each instance trains on (restarts' copies
    share their instance's); default, its own."""
    config = settle(config)
    check_memory(config)
    if config.restarts > 1:
        return _best_of_restarts(config, progress)
    params = init_params(config, torch.Generator().manual_seed(config.seed))
    device = torch.device(config.device)
    probs = data.feature_probability(config, device)
    importance = loss_weights(config, device)
    sources = list(range(config.instances)) if sources is None else sources
    examples = _training_set(config, sources) if config.dataset_size else None

    def fit(params: Params, first: int, count: int) -> tuple[Tensor, int, list[Params]]:
        share = slice(first, first + count)
        if examples is not None:
            part, own = examples.subset(range(first, first + count)), sources[share]
            run = ENGINES[config.engine].stepper("finite", params, part, own, importance[share], config)
        else:
            run = ENGINES[config.engine].stepper("fresh", params, probs[share], importance[share], config, first)
        return _fit(run, config, count, reporter, lambda: {k: v.detach().to("cpu", copy=True) for k, v in params.items()})

    with _Progress(config, progress) as reporter:
        if not config.warm_start:
            params = {k: v.to(device) for k, v in params.items()}
            history, steps_run, kept = fit(params, 0, config.instances)
            snapshots = [kept]
        else:
            history = torch.full((config.steps, config.instances), math.nan)
            steps_run = 0
            group = config.replicates
            previous = {k: v[:group] for k, v in params.items()}
            finals, snapshots = [], []
            for first in range(0, config.instances, group):
                current = {name: v.detach().clone().to(device) for name, v in previous.items()}  # fresh leaves
                part, ran, kept = fit(current, first, group)
                history[:ran, first : first + group] = part
                steps_run = max(steps_run, ran)
                previous = current
                finals.append(current)
                snapshots.append(kept)
            params = {name: torch.cat([p[name] for p in finals]) for name in params}
    return TrainResult(
        config=config,
        params={k: v.detach().cpu() for k, v in params.items()},
        history=history[:steps_run],
        steps_run=steps_run,
        dataset=examples,
        checkpoints=_stack(snapshots, params) if config.checkpoints else None,
    )


def _stack(snapshots: list[list[Params]], params: Params) -> Params:
    """Each warm-start phase's (or the one phase's) snapshots as one tensor per parameter,
    (checkpoints, inst, ...): the steps every phase reached (early stop may end one sooner)."""
    reached = min(map(len, snapshots))
    if reached == 0:  # early stop came before the first checkpoint: none, every parameter's shape kept
        return {name: torch.empty(0, *v.shape) for name, v in params.items()}
    return {
        name: torch.stack([torch.cat([phase[c][name] for phase in snapshots]) for c in range(reached)])
        for name in snapshots[0][0]
    }


def _training_set(config: Config, sources: list[int]) -> Sparse:
    """Each distinct source's set drawn once; copies of an instance share its rows' storage."""

    first = {}
    for i, source in enumerate(sources):
        first.setdefault(source, i)
    distinct = list(first)
    drawn = training_set(config.subset([first[s] for s in distinct]), distinct)
    position = {source: k for k, source in enumerate(distinct)}
    return drawn.subset([position[s] for s in sources])


def _best_of_restarts(config: Config, progress: bool) -> TrainResult:
    """Train `restarts` copies of every instance at once; keep each instance's best copy.

    All copies of an instance train on its data stream, so they face the same batches.
    They are judged by their mean training loss over the last JUDGED_SHARE of the steps:
    at 4,000 steps, 400 batches of 1,024 fresh rows. The evaluation batch's 10,000 rows
    are too few to tell copies apart where features are rare: at 1-S = 0.01 the n = 3
    phase diagram's copies were ranked as a 400,000-row evaluation ranks them in 61% of
    cells, and the diagram agreed with theory on 67% (by 400,000 rows: 81%). With a
    finite training set, copies are judged by their loss on it (the paper's choice).
    """

    k = config.restarts
    copies = config.subset([i for i in range(config.instances) for _ in range(k)]).model_copy(update={"restarts": 1})
    result = train(copies, progress, sources=[i for i in range(config.instances) for _ in range(k)])
    examples = result.dataset.subset(range(0, config.instances * k, k)) if config.dataset_size else None

    if examples is not None:
        losses = torch.stack([dataset.evaluate(config, {n: v[r::k] for n, v in result.params.items()}, examples) for r in range(k)])
    else:
        judged = result.history[-max(1, round(JUDGED_SHARE * len(result.history))) :].mean(0)  # (instances x copies,)
        losses = judged.view(config.instances, k).T
    losses = torch.nan_to_num(losses, nan=math.inf)  # a diverged copy never wins (argmin prefers NaN)
    best = losses.argmin(0) + k * torch.arange(config.instances)  # index of each instance's best copy
    return TrainResult(
        config=config,
        params={n: v[best].clone() for n, v in result.params.items()},
        history=result.history[:, best],
        steps_run=result.steps_run,
        dataset=examples.compact() if examples is not None else None,
        checkpoints=None if result.checkpoints is None else {n: v[:, best].clone() for n, v in result.checkpoints.items()},
    )


def _fit(
    run: Stepper, config: Config, instances: int, reporter: _Progress, snapshot: Callable[[], Params]
) -> tuple[Tensor, int, list[Params]]:
    """Run `config.steps` steps in chunks, reporting progress and checking early stop between
    them; a chunk also ends at every checkpoint, where `snapshot` copies the weights."""
    history = torch.empty(config.steps, instances)
    engine = f"{config.engine}-dataset" if config.dataset_size and config.engine == "fused" else config.engine
    if engine != "compiled":
        with reporter.compiling(engine):
            run(0, 0)  # a numba kernel loads, or compiles, here: before the bar counts any step
    wanted = config.checkpoints or []
    kept = [snapshot()] if 0 in wanted else []
    done = 0
    while done < config.steps:
        # chunks stay aligned to CHUNK (early stop looks at whole windows of them)
        count = min(CHUNK - done % CHUNK, config.steps - done, *(step - done for step in wanted if step > done))
        # torch.compile compiles in the first call that runs a step
        with reporter.compiling(engine) if done == 0 and engine == "compiled" else contextlib.nullcontext():
            history[done : done + count] = run(done, count)
        done += count
        if done in wanted:
            kept.append(snapshot())
        reporter.advance(done, history[done - 1])
        if config.early_stop and _converged(history[:done], config.early_stop):
            break
    return history[:done], done, kept


@ENGINES["reference"].builds("fresh")
def _reference_stepper(
    params: Params,
    probs: Float[Tensor, "inst feat"],
    importance: Float[Tensor, "inst feat"],
    config: Config,
    first_instance: int,
) -> Stepper:
    """The plain loop: torch ops, autograd, torch.optim, on any device, on the kernel's data stream."""
    instances = torch.arange(first_instance, first_instance + probs.shape[0], device=probs.device)
    loss_of = _reference_step(params, config)

    def run(first: int, count: int) -> Tensor:
        losses = torch.empty(count, probs.shape[0], device=probs.device)
        for s in range(count):
            losses[s] = loss_of(data.batch(config, probs, instances, first + s), importance, first + s)
        return losses.cpu()

    return run


def _reference_step(params: Params, config: Config) -> Callable[[Tensor, Tensor, int], Tensor]:
    """One optimiser step of autograd on a batch: (x, importance, step) -> loss per instance."""
    tensors = [p.requires_grad_() for p in params.values()]
    optimizer = make_optimizer(tensors, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))

    def step(x: Float[Tensor, "inst batch feat"], importance: Float[Tensor, "inst feat"], index: int) -> Tensor:
        per_instance = loss_per_instance(forward(params, x, config), x, importance, config)
        optimizer.zero_grad(set_to_none=True)
        per_instance.sum().backward()
        try:
            optimizer.step()
        except RuntimeError as error:  # foreach Adam refuses a step size beyond float32
            if "overflow" not in str(error):
                raise
            raise Diverged(
                f"non-finite weights or loss: the Adam update of step {index} overflows float32; "
                "lower lr or weight_decay, or add warmup"
            ) from None
        schedule.step()
        return per_instance.detach()

    return step


def _kernel_state(params: Params, importance: Float[Tensor, "inst feat"], config: Config):
    """The numba engines' views of the weights (updated in place), Adam's moments, the
    model's flags and the optimiser."""

    W, b = params["W"].numpy(), params["b"].numpy()
    tied = KINDS[config.model].fused == "tied"
    W_out = np.zeros((W.shape[0], 1, 1), np.float32) if tied else params["W_out"].numpy()
    weights = fused.Weights(W, W_out, b)
    moments = fused.Moments(*(np.zeros_like(a) for a in (W, W, W_out, W_out, b, b)))
    model = fused.Model(
        importance=importance.numpy(),
        tied=tied,
        hidden_relu=config.hidden_activation == "relu",
        relu_out=config.activation == "relu",
        abs_target=config.target == "abs",
    )
    optimiser = fused.Optimiser(BETAS[0], BETAS[1], EPS, config.weight_decay, config.optimizer == "adamw")
    return weights, moments, model, optimiser


@ENGINES["fused"].builds("fresh")
def _fused_stepper(
    params: Params,
    probs: Float[Tensor, "inst feat"],
    importance: Float[Tensor, "inst feat"],
    config: Config,
    first_instance: int,
) -> Stepper:
    """The compiled loop of fused.py, updating `params` in place through numpy views."""


    weights, moments, model, optimiser = _kernel_state(params, importance, config)
    draw = data.GENERATORS[config.data].kernel_draw(config)
    stream = fused.Stream(
        probs=probs.numpy(),
        seed=config.seed,
        first_instance=first_instance,
        data_code=draw.code,
        set_mode=draw.set_mode,
        set_size=draw.set_size,
        batch=config.batch_size,
        normalize=config.normalize,
        magnitudes=np.asarray(draw.magnitudes, np.float32),
    )
    threads = fused.free_cores(numba.get_num_threads())
    lanes, sparse = fused.plan(stream, threads)

    def run(first: int, count: int) -> Tensor:
        lrs = np.array([config.lr * lr_factor(first + s, config) for s in range(count)], np.float32)
        losses = np.empty((count, weights.W.shape[0]), np.float32)
        with fused.thread_limit(threads):
            fused.train_steps(weights, moments, stream, model, optimiser, first, lrs, losses, lanes, sparse)
        return torch.from_numpy(losses)

    return run


@ENGINES["reference"].builds("finite")
def _reference_dataset_stepper(
    params: Params, examples: Sparse, sources: list[int], importance: Float[Tensor, "inst feat"], config: Config
) -> Stepper:
    """The plain loop on a finite training set, held dense on the device."""

    device = importance.device
    x_all = examples.dense().to(device)  # (inst, T, feat)
    loss_of = _reference_step(params, config)

    def run(first: int, count: int) -> Tensor:
        picks = None if dataset.full_batch(config) else torch.from_numpy(dataset.batches(config, first, count, sources)).to(device)
        losses = torch.empty(count, x_all.shape[0], device=device)
        for s in range(count):
            x = x_all if picks is None else dataset.gather(x_all, picks[:, s])
            losses[s] = loss_of(x, importance, first + s)
        return losses.cpu()

    return run


@ENGINES["fused"].builds("finite")
def _fused_dataset_stepper(
    params: Params, examples: Sparse, sources: list[int], importance: Float[Tensor, "inst feat"], config: Config
) -> Stepper:
    """dataset_fused.py's compiled sparse loop, updating `params` in place through numpy views."""


    weights, moments, model, optimiser = _kernel_state(params, importance, config)
    steps_cost = np.full(len(sources), float(min(config.dataset_size, config.batch_size)))
    threads = fused.free_cores(numba.get_num_threads())
    lanes = fused.lanes(steps_cost, threads)
    held = (examples.row_ptr, examples.cols, examples.values)

    def run(first: int, count: int) -> Tensor:
        lrs = np.array([config.lr * lr_factor(first + s, config) for s in range(count)], np.float32)
        losses = np.empty((count, len(sources)), np.float32)
        picks = np.zeros((len(sources), 0, 0), np.int64) if dataset.full_batch(config) else dataset.batches(config, first, count, sources)
        with fused.thread_limit(threads):
            dataset_fused.train_steps(weights, moments, held, picks, model, optimiser, first, lrs, losses, lanes)
        return torch.from_numpy(losses)

    return run


def _converged(history: Float[Tensor, "steps inst"], tol: float) -> bool:
    steps = history.shape[0]
    if steps % EARLY_STOP_WINDOW or steps < 2 * EARLY_STOP_WINDOW:
        return False
    current = history[-EARLY_STOP_WINDOW:].mean(0)
    before = history[-2 * EARLY_STOP_WINDOW : -EARLY_STOP_WINDOW].mean(0)
    return bool(((before - current) <= tol * before).all())


# What an engine compiles on its first run on a machine (numba's kernels are cached on disk
# after it, torch.compile's graphs per process), and about how long that took on a cold
# cache on 2 cores (docs/performance.md)
FIRST_COMPILE = {
    "fused": "compiling the training kernel (first run on this machine only, about 20 s on 2 cores)",
    "fused-dataset": "compiling the finite-data training kernel (first run on this machine only, about 40 s on 2 cores)",
    "compiled": "compiling the training step with torch.compile (in every new process: about 15 s on 2 cores, 6 s from Inductor's cache)",
    "sae-fused": "compiling the SAE training kernel (first run on this machine only, about 55 s on 2 cores)",
}
COMPILE_NOTICE_AFTER = 2.0  # seconds: a kernel loaded from the cache takes well under this


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

    @contextlib.contextmanager
    def compiling(self, engine: str) -> Iterator[None]:
        """Around an engine's first call: if it takes long enough to be compiling, say so above
        the bar, rather than leave the bar at 0 with nothing said."""
        if not self.enabled or engine not in FIRST_COMPILE:
            yield
            return
        notice = threading.Timer(COMPILE_NOTICE_AFTER, self.bar.console.print, (FIRST_COMPILE[engine],), {"style": "dim"})
        notice.daemon = True
        notice.start()
        try:
            yield
        finally:
            notice.cancel()


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
