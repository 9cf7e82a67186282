"""Train a batch of SAEs (saes.py) on activations with known features (activations.py).

Every SAE instance trains at once: one Adam step on the sum of their losses, then the
kind's `after_step` (unit decoder rows, but for ReLU), and its `fold` when training ends.
Each step draws fresh activations from the source (the
same batch for every setting of a source instance, so settings differ only in the
setting).

Dead latents:
  a latent is dead once it has not fired for DEAD_STEPS steps (TopK's AuxK loss uses these;
  Gao et al. counted 10 million tokens, here 100 steps of 1,024 rows);
  every `resample_every` steps a check counts the latents that have not fired since the
  last one (recorded for every check), and with `resample`, in the first `resample_until`
  of training, resamples them as in "Towards Monosemanticity" (which did it at 25k, 50k,
  75k and 100k steps, for neurons silent for 12,500, from ~800k inputs): each gets an input
  of a pool of `resample_pool` fresh rows, drawn without replacement with probability
  proportional to the square of its squared error; its decoder row that input's direction
  (after b_dec) at the mean norm of the live rows, its encoder column the same direction at 0.2 times the mean norm of the
  live encoder columns, b_enc 0 (θ its initial value), and Adam's moments for all of those
  set to zero. Where fewer rows than dead latents have any error, only that many are
  resampled.
"""

from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numba
import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ..config import ConfigError
from ..kernels import fused, sae_fused
from ..kernels.sae_fused import ROW_UNITS
from ..runs import load_run
from ..training.compiled import backend, own_code
from ..training.engines import ENGINES, device_of, engine_of
from ..training.loop import Diverged, LossBar, divergence, require_memory
from ..training.steps import BETAS, EPS
from . import AUXK_WEIGHT, BANDWIDTH, THRESHOLD_INIT, Params, forward, k_aux, saelens
from .config import SAEConfig, config_sha256
from .sources import CALIBRATION, RESAMPLING, RESAMPLING_POOL, SAE_INIT, DictionarySource, RunSource, derived_seed, dictionary_data

DEAD_STEPS = 100
RESAMPLE_SCALE = 0.2
CALIBRATION_BATCHES = 8  # a kind that calibrates after training (BatchTopK's threshold) reads this many


@dataclass
class SAEResult:
    config: SAEConfig
    params: Params  # on the CPU
    history: Float[Tensor, "steps inst"]
    resampled: Int[Tensor, "inst"]  # latents resampled over the run
    checks: list[int]  # the steps after which dead latents were counted
    dead: Int[Tensor, "checks inst"]  # and their counts, before any resampling
    seconds: float  # wall time of the training loop
    setup_seconds: float  # before it: the engine's start (loading or compiling the kernel)
    engine: str  # the engine that trained it


def source_run(config: SAEConfig, run=None):
    """The Run an SAE config reads (None for a dictionary): `run` itself, or read from config.run
    and checked against the config's hash of it."""
    if config.source != "run" or run is not None:
        return run

    if config.run is None:
        raise ConfigError("run: this SAE was trained on a run that was never saved; pass the Run itself")
    run = load_run(config.run)
    if config_sha256(run) != config.run_config_sha256:
        raise ConfigError(f"run: {config.run} is not the run this SAE was trained on (its config changed)")
    return run


def source_of(config: SAEConfig, run=None, device: str = "cpu") -> RunSource:
    """The activations an SAE config reads: its run (see source_run) or its dictionary."""
    if config.source == "dictionary":
        return DictionarySource(dictionary_of(config), config.seed, device, config.orthogonal, config.orthogonalize)
    if config.source == "saelens":
        if saelens.weights_sha256(Path(config.run)) != config.run_config_sha256:
            raise ConfigError(f"data: {config.run} is not the SAELens model these SAEs were trained on (its weights changed)")
        return saelens.SAELensSource(saelens.read(config.run), device)
    run = source_run(config, run)
    return RunSource(run.config, run.params["W"], device)


def dictionary_of(config: SAEConfig):
    """A dictionary source's data config (its features' probabilities and options)."""
    return dictionary_data(config.source_instances, config.features, config.dims, config.density, config.data_options, config.generator, config.firing)


def warmed(config: SAEConfig, step: int) -> float:
    """The share of its penalty a step trains with: rising linearly to 1 over the first
    sparsity_warmup of training (step s of a warm-up of w steps: (s + 1) / w)."""
    span = round(config.sparsity_warmup * config.steps)
    return min(1.0, (step + 1) / span) if span > 0 else 1.0


def settings_tensor(config: SAEConfig, device: str = "cpu") -> Float[Tensor, "inst"]:
    """Each SAE instance's setting (l1, k or l0), setting-major."""
    return torch.tensor(config.settings, dtype=torch.float32, device=device).repeat_interleave(config.source_instances)


def memory_needed(config: SAEConfig) -> int:
    """Bytes of host memory an SAE job needs at its peak, roughly: the (inst, rows, latents)
    temporaries of a reference step, of resampling and of the scoring batch, the compiled
    engine's data and present features per unit, the weights with their gradients and
    Adam's moments, the resampling pool's chances and the loss history."""

    n, d, L = config.instances, config.dims, config.latents
    rows = 6 * n * config.batch_size * L + 4 * n * config.eval_batch_size * L + 2 * n * (config.batch_size + config.eval_batch_size) * d
    kernel = 3 * max(n, ROW_UNITS) * config.features * config.batch_size
    if config.kind == "batchtopk":  # its kept pre-activations, and the candidates for its cut
        kernel += 2 * max(n, ROW_UNITS) * config.batch_size * L
    weights = 8 * n * (2 * d + 2) * L + config.source_instances * config.features * d
    pool = 2 * n * config.resample_pool  # the resampling candidates' chances, float64
    return 4 * (rows + kernel + weights + pool + config.steps * n)


def check(config: SAEConfig) -> None:
    """Refuse, before anything is created or allocated, SAEs that cannot train here: their
    device, their engine, or the memory they need."""
    check_memory(config)  # first: a dictionary too large to hold is refused before its data is built
    data = dictionary_of(config) if config.source == "dictionary" else saelens.read(config.run).data if config.source == "saelens" else None
    engine_of(config, device_of(config), data)


def check_memory(config: SAEConfig) -> None:
    """Refuse, before anything is allocated, SAEs that cannot fit in this machine's memory."""
    # named after features where latents is their default: the key the user gave
    derived = config.latents == 2 * config.features
    require_memory(
        memory_needed(config), "features" if derived else "latents", "these SAEs need",
        f"{config.instances} SAEs x {config.latents} latents{' (2 x features)' if derived else ''} x "
        f"batches of {config.batch_size} and {config.eval_batch_size}",
        "use fewer latents (--latents) or settings, or smaller batches",
    )  # fmt: skip


def train(config: SAEConfig, run=None, progress: bool = False) -> SAEResult:
    device = device_of(config)
    source = source_of(config, run, device)
    engine = engine_of(config, device, source.config)
    kind = config.sae_kind
    n, d, L = config.instances, config.dims, config.latents
    copies = len(config.settings)
    # every setting starts from the same weights on the same data: only the setting differs
    first = kind.init(config.source_instances, d, L, torch.Generator().manual_seed(derived_seed(config.seed, SAE_INIT)))
    params = {k: v.repeat(copies, *(1,) * (v.dim() - 1)).to(device) for k, v in first.items()}
    history = torch.empty(config.steps, n)
    resampled = torch.zeros(n, dtype=torch.long)
    every = config.resample_every
    checks: list[int] = []
    dead_counts: list[Tensor] = []
    done = 0
    with LossBar("sae", config.steps, progress) as bar:
        started = time.perf_counter()
        with bar.compiling(f"sae-{engine}"):
            stepper = ENGINES[engine].stepper("sae", config, params, source)
        looping = time.perf_counter()
        while done < config.steps:
            count = min(every - done % every, config.steps - done)
            history[done : done + count] = stepper.run(done, count)
            done += count
            bar.advance(done, history[done - 1])
            # a diverged SAE stops here: its resampling would draw from non-finite errors
            problem = divergence(stepper.params, history[done - count : done].amax(0).tolist())
            if problem:
                raise Diverged(problem)
            if done % every == 0:
                dead = stepper.last_fired < done - every  # silent for the whole of the last `every` steps
                checks.append(done)
                dead_counts.append(dead.sum(-1).cpu())
                if config.resample and done <= config.resample_until * config.steps:
                    with torch.no_grad():
                        resampled += _resample(config, source, stepper, kind, dead, len(checks)).cpu()
    looped = time.perf_counter() - looping  # the loop's time: a calibration after it is not a step
    with torch.no_grad():
        kind.fold(stepper.params)
    if kind.calibrates:
        with torch.no_grad():
            calibrate(config, source, kind, stepper.params)
    params = {k: v.detach().cpu().clone() for k, v in stepper.params.items()}
    dead = torch.stack(dead_counts) if dead_counts else torch.zeros(0, n, dtype=torch.long)
    return SAEResult(config, params, history, resampled, checks, dead, looped, looping - started, engine)


def calibrate(config: SAEConfig, source, kind, params: Params) -> None:
    """Let the kind set what its inference needs from CALIBRATION_BATCHES fresh training-sized
    batches (their own stream of the seed; the same rows for every setting)."""
    seed = derived_seed(config.seed, CALIBRATION) % 2**63
    setting = settings_tensor(config, params["W_enc"].device)
    pres = [kind.pre(params, source.batch(seed, config.batch_size, b).repeat(len(config.settings), 1, 1)) for b in range(CALIBRATION_BATCHES)]
    kind.calibrate(params, pres, setting)


def step_loss(
    kind, params: Params, h: Float[Tensor, "inst batch d_in"], setting: Float[Tensor, "inst"], dead: Bool[Tensor, "inst latents"]
) -> tuple[Float[Tensor, "inst"], Bool[Tensor, "inst latents"]]:
    """Each SAE's loss on the batch h, and which of its latents fired."""
    pre, a, h_hat = forward(kind, params, h, setting)
    loss = kind.reconstruction_loss(params, h, a, h_hat) + kind.sparsity_loss(params, pre, a, setting) + kind.aux_loss(params, h - h_hat, pre, dead)
    return loss, (a > 0).any(1)


@ENGINES["reference"].builds("sae")
class _Reference:
    """Autograd and torch's Adam, on any device."""

    def __init__(self, config: SAEConfig, params: Params, source):
        self.config, self.source = config, source
        self.kind = config.sae_kind
        self.loss_of = self.loss_function()
        self.params = {k: v.requires_grad_() for k, v in params.items()}
        # θ trained as log θ takes its own Adam step (`_log_threshold_step`)
        self.log_threshold = self.params["threshold"] if config.log_threshold else None
        plain = [p for p in self.params.values() if p is not self.log_threshold]
        self.optimizer = torch.optim.Adam(plain, lr=config.lr, betas=(config.beta1, BETAS[1]), eps=EPS, foreach=True)
        if self.log_threshold is not None:
            self.threshold_moments = (torch.zeros_like(self.log_threshold), torch.zeros_like(self.log_threshold))
        device = params["W_enc"].device
        self.setting = settings_tensor(config, device)
        self.last_fired = torch.full((config.instances, config.latents), -1, dtype=torch.long, device=device)

    def loss_function(self) -> Callable:
        """(params, h, setting, dead) -> (loss, fired): `step_loss` of this kind."""
        return partial(step_loss, self.kind)

    def run(self, first: int, count: int) -> Tensor:
        config, params = self.config, self.params
        losses = torch.empty(count, config.instances, device=self.setting.device)
        for s in range(count):
            step = first + s
            h = self.source.batch(config.seed, config.batch_size, step).repeat(len(config.settings), 1, 1)
            dead = (step - self.last_fired) >= DEAD_STEPS
            loss, fired = self.loss_of(params, h, self.setting * warmed(config, step), dead)
            self.optimizer.zero_grad(set_to_none=True)
            if self.log_threshold is not None:
                self.log_threshold.grad = None
            loss.sum().backward()
            self.optimizer.step()
            with torch.no_grad():
                if self.log_threshold is not None:
                    self._log_threshold_step(step)
                self.kind.after_step(params)
                self.last_fired[fired] = step
                losses[s] = loss.detach()
        return losses.cpu()

    def _log_threshold_step(self, step: int) -> None:
        """Adam on log θ, whose gradient is θ ∂L/∂θ, in torch's Adam's arithmetic."""
        theta, (m, v) = self.log_threshold, self.threshold_moments
        g = theta.grad * theta
        beta1, beta2 = self.config.beta1, BETAS[1]
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        c1, c2 = 1 - beta1 ** (step + 1), (1 - beta2 ** (step + 1)) ** 0.5
        theta.copy_((theta.log() - (self.config.lr / c1) * m / (v.sqrt() / c2 + EPS)).exp())

    def moments(self) -> dict[str, tuple[Tensor, Tensor]]:
        state = self.optimizer.state
        pairs = {k: (state[p]["exp_avg"], state[p]["exp_avg_sq"]) for k, p in self.params.items() if p in state}
        return pairs | ({"threshold": self.threshold_moments} if self.log_threshold is not None else {})


@ENGINES["compiled"].builds("sae")
class _Compiled(_Reference):
    """The reference loop with each step's loss and its gradients compiled by torch.compile
    (compiled.py's backend): one graph per kind and shape, built once per process. A kind's
    Python control flow on tensors (TopK's `int(k.max())`) splits its graph rather than
    failing, so every registered kind runs on it; Adam stays torch's, as in the reference.
    Shapes are static (dynamic=False): the frame resumed after such a split is the kind's
    own code, shared by every run in the process, and torch 2.13's dynamic shapes on it fail
    to build their guards ("sources must not be empty") once a second shape arrives."""

    def loss_function(self) -> Callable:
        key = (self.kind.name, type(self.kind), repr(self.kind.options), backend())
        if key not in _COMPILED_LOSSES:
            kind = self.kind

            def loss_of(params, h, setting, dead):
                return step_loss(kind, params, h, setting, dead)

            _COMPILED_LOSSES[key] = torch.compile(own_code(loss_of, len(_COMPILED_LOSSES)), backend=key[-1], dynamic=False)
        return _COMPILED_LOSSES[key]


_COMPILED_LOSSES: dict[tuple, Callable] = {}


@ENGINES["fused"].builds("sae")
class _Fused:
    """The compiled loop of sae_fused.py, updating the parameters in place through numpy views."""

    def __init__(self, config: SAEConfig, params: Params, source):

        self.config = config
        self.params = params
        arrays = {k: v.numpy() for k, v in params.items()}
        theta = arrays["threshold"] if "threshold" in arrays else np.zeros((config.instances, config.latents), np.float32)
        self.weights = sae_fused.Weights(arrays["W_enc"], arrays["b_enc"], arrays["W_dec"], arrays["b_dec"], theta)
        self.moment_arrays = tuple(np.zeros_like(w) for w in self.weights for _ in range(2))
        draw = source.kernel_draw()
        self.source = sae_fused.Source(
            F=source.features.numpy(), probs=source.probs.numpy(), seed=config.seed, data_code=draw.code,
            set_mode=draw.set_mode, set_size=draw.set_size, batch=config.batch_size, normalize=source.config.normalize,
            magnitudes=np.asarray(draw.magnitudes, np.float32), bias=source.bias.numpy(),
        )  # fmt: skip
        self.setting = settings_tensor(config)
        self.rule = sae_fused.Rule(
            kind=sae_fused.KIND_CODES[config.kind], factored=sae_fused.factored(config.features, config.batch_size),
            columns=sae_fused.batch_major(config.kind, config.dims, config.latents), settings=self.setting.numpy(), k_aux=k_aux(config.dims, config.latents),
            aux_weight=AUXK_WEIGHT, dead_steps=DEAD_STEPS, bandwidth=BANDWIDTH, beta1=config.beta1, beta2=BETAS[1], eps=EPS,
            warmup=round(config.sparsity_warmup * config.steps), log_threshold=config.log_threshold,
        )  # fmt: skip
        self.last_fired = torch.full((config.instances, config.latents), -1, dtype=torch.long)
        self._train = sae_fused.train_steps
        self.threads = fused.free_cores(numba.get_num_threads())
        self.run(0, 0)  # loads (or compiles) the kernel now, so that the loop's time is the loop's

    def run(self, first: int, count: int) -> Tensor:
        losses = np.empty((count, self.config.instances), np.float32)
        with fused.thread_limit(self.threads):
            self._train(self.weights, self.moment_arrays, self.source, self.rule, first, np.float32(self.config.lr), losses, self.last_fired.numpy())
        return torch.from_numpy(losses)

    def moments(self) -> dict[str, tuple[Tensor, Tensor]]:
        names = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")
        pairs = {n: (torch.from_numpy(self.moment_arrays[2 * k]), torch.from_numpy(self.moment_arrays[2 * k + 1])) for k, n in enumerate(names)}
        return {n: pair for n, pair in pairs.items() if n in self.params}


def _pool_weights(config: SAEConfig, source, params: Params, kind, setting: Tensor, check: int) -> Float[Tensor, "inst pool"]:
    """Each SAE's chance weights over the check's pool of fresh rows: the square of each
    row's squared error. The pool is the source's stream under its own seed, drawn in
    chunks of eval_batch_size rows, the size whose forward pass the memory estimate holds
    for scoring (the same rows for every setting of a source instance)."""
    seed = _pool_seed(config, check)
    copies, size = len(config.settings), config.eval_batch_size
    parts = []
    for chunk, first in enumerate(range(0, config.resample_pool, size)):
        h = source.batch(seed, min(size, config.resample_pool - first), chunk).repeat(copies, 1, 1)
        _, _, h_hat = forward(kind, params, h, setting)
        # squared in float64: a float32 error above ~1e19 would square to infinity
        parts.append(((h - h_hat) ** 2).sum(-1).double() ** 2)
    return torch.cat(parts, 1)


def _pool_rows(config: SAEConfig, source, check: int, rows: Int[Tensor, "chosen"]) -> Float[Tensor, "sources chosen d_in"]:
    """The pool's rows `rows` (indices into the whole pool), each batch that holds some drawn again."""
    seed, size = _pool_seed(config, check), config.eval_batch_size
    chunks = rows // size
    out = None
    for chunk in chunks.unique().tolist():
        take = torch.nonzero(chunks == chunk).flatten()
        h = source.batch(seed, min(size, config.resample_pool - chunk * size), chunk).cpu()
        if out is None:
            out = h.new_empty(h.shape[0], len(rows), h.shape[2])
        out[:, take] = h[:, rows[take] - chunk * size]
    return out


def _pool_seed(config: SAEConfig, check: int) -> int:
    return derived_seed(config.seed, RESAMPLING_POOL, check) % 2**63


def _resample(config: SAEConfig, source, stepper, kind, dead: Bool[Tensor, "inst latents"], check: int) -> Int[Tensor, "inst"]:
    """Resample the `dead` latents of the stepper's SAEs from the check's pool and zero their
    Adam moments; their count per instance. Instance i's rows are chosen by a generator of
    its source instance, so every setting of a source instance draws alike."""
    params, moments = stepper.params, stepper.moments()
    weight = _pool_weights(config, source, params, kind, stepper.setting, check)
    if not bool(torch.isfinite(weight).all()):
        raise Diverged("non-finite reconstruction error before resampling; lower lr")
    counts = torch.minimum(dead.sum(-1).cpu(), (weight > 0).sum(-1).cpu())
    for i in torch.nonzero(counts).flatten().tolist():
        source_instance = i % config.source_instances
        draws = torch.Generator().manual_seed(derived_seed(config.seed, RESAMPLING, check, source_instance))
        rows = torch.multinomial(weight[i].cpu(), int(counts[i]), replacement=False, generator=draws)
        h = _pool_rows(config, source, check, rows)[source_instance].to(params["W_dec"].device)
        latents = torch.nonzero(dead[i]).flatten()[: int(counts[i])]
        direction = torch.nn.functional.normalize(h - params["b_dec"][i], dim=-1)  # (resampled, d_in)
        alive = params["W_enc"][i][:, ~dead[i]]
        scale = RESAMPLE_SCALE * (alive.norm(dim=0).mean() if alive.shape[1] else 1.0)
        norms = params["W_dec"][i][~dead[i]].norm(dim=-1)  # 1 but for a kind whose rows are free
        params["W_dec"][i, latents] = direction * (norms.mean() if len(norms) else 1.0)
        params["W_enc"][i][:, latents] = direction.T * scale
        params["b_enc"][i, latents] = 0.0
        if "threshold" in params:
            params["threshold"][i, latents] = THRESHOLD_INIT
        for name, pair in moments.items():
            if name != "b_dec":
                for moment in pair:
                    moment[(i, slice(None), latents) if name == "W_enc" else (i, latents)] = 0.0
    return counts
