"""Train a batch of SAEs (saes.py) on activations with known features (activations.py).

Every SAE instance trains at once: one Adam step on the sum of their losses, decoder
rows renormalised after it. Each step draws fresh activations from the source (the
same batch for every setting of a source instance, so settings differ only in the
setting).

Dead latents:
  a latent is dead once it has not fired for DEAD_STEPS steps (TopK's AuxK loss uses these);
  with `resample`, every tenth of training during its first half, the latents that have
  not fired since the last check are resampled as in "Towards Monosemanticity": each gets
  an input drawn with probability proportional to the square of its squared error, its
  decoder row that input's direction (after b_dec), its encoder column the same direction
  at 0.2 times the mean norm of the live encoder columns, b_enc 0 (θ its initial value), and
  Adam's moments for all of those set to zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .activations import DictionarySource, RunSource
from .config import ConfigError
from .sae_config import SAEConfig
from .saes import SAE_KINDS, THRESHOLD_INIT, Params, forward

DEAD_STEPS = 100
RESAMPLE_CHECKS = 10  # checks over the whole run; only those in its first half resample
RESAMPLE_SCALE = 0.2
BETAS, EPS = (0.9, 0.999), 1e-8


@dataclass
class SAEResult:
    config: SAEConfig
    params: Params  # on the CPU
    history: Float[Tensor, "steps inst"]
    resampled: Int[Tensor, "inst"]  # latents resampled over the run


def device_of(config: SAEConfig) -> str:
    if config.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no CUDA GPU is available; use --device cpu")
    if config.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return config.device


def source_of(config: SAEConfig, run=None, device: str = "cpu") -> RunSource:
    """The activations an SAE config reads: its run (given, or read from config.run) or its dictionary."""
    if config.source == "dictionary":
        return DictionarySource(config.source_instances, config.features, config.dims, config.density, config.seed, device)
    if run is None:
        from .runs import load_run
        from .sae_config import config_sha256

        if config.run is None:
            raise ConfigError("run: this SAE was trained on a run that was never saved; pass the Run itself")
        run = load_run(config.run)
        if config_sha256(run) != config.run_config_sha256:
            raise ConfigError(f"run: {config.run} is not the run this SAE was trained on (its config changed)")
    return RunSource(run.config, run.params["W"], device)


def settings_tensor(config: SAEConfig, device: str = "cpu") -> Float[Tensor, "inst"]:
    """Each SAE instance's setting (l1, k or l0), setting-major."""
    return torch.tensor(config.settings, dtype=torch.float32, device=device).repeat_interleave(config.source_instances)


def train(config: SAEConfig, run=None, progress: bool = False) -> SAEResult:
    device = device_of(config)
    source = source_of(config, run, device)
    kind = SAE_KINDS[config.kind]
    n, d, L = config.instances, config.dims, config.latents
    copies = len(config.settings)
    # every setting starts from the same weights on the same data: only the setting differs
    first = kind.init(config.source_instances, d, L, torch.Generator().manual_seed(config.seed))
    params = {k: v.repeat(copies, *(1,) * (v.dim() - 1)).to(device).requires_grad_() for k, v in first.items()}
    optimizer = torch.optim.Adam(list(params.values()), lr=config.lr, betas=BETAS, eps=EPS, foreach=True)
    setting = settings_tensor(config, device)
    last_fired = torch.zeros(n, L, dtype=torch.long, device=device)
    fired_since_check = torch.zeros(n, L, dtype=torch.bool, device=device)
    history = torch.empty(config.steps, n, device=device)
    resampled = torch.zeros(n, dtype=torch.long)
    every = max(1, config.steps // RESAMPLE_CHECKS)
    with _Bar(config.steps, progress) as bar:
        for step in range(config.steps):
            h = source.batch(config.seed, config.batch_size, step).repeat(copies, 1, 1)
            pre, a, h_hat = forward(kind, params, h, setting)
            dead = (step - last_fired) >= DEAD_STEPS
            loss = (
                ((h - h_hat) ** 2).mean(dim=(1, 2))
                + kind.sparsity_loss(params, pre, a, setting)
                + kind.aux_loss(params, h - h_hat, pre, dead)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            with torch.no_grad():
                kind.after_step(params)
                fired = (a > 0).any(1)
                last_fired[fired] = step
                fired_since_check |= fired
                history[step] = loss.detach()
                if config.resample and (step + 1) % every == 0 and step + 1 <= config.steps // 2:
                    draws = [_draws(config.seed, step, i % config.source_instances) for i in range(n)]
                    resampled += _resample(params, optimizer, ~fired_since_check, h, kind, setting, draws).cpu()
                    fired_since_check[:] = False
            bar.advance(step + 1, loss)
    return SAEResult(config, {k: v.detach().cpu() for k, v in params.items()}, history.cpu(), resampled)


def _draws(seed: int, step: int, source: int) -> torch.Generator:
    """The generator of one resampling: the same for every setting of a source instance."""
    return torch.Generator().manual_seed(hash((seed, step, source)) % 2**63)


def _resample(
    params: Params, optimizer: torch.optim.Optimizer, dead: Tensor, h: Tensor, kind, setting: Tensor, draws: list[torch.Generator]
) -> Tensor:
    """Resample the `dead` latents (inst, latents) from inputs of h (inst, batch, d_in), with
    instance i's rows drawn by draws[i]; their count per instance."""
    _, _, h_hat = forward(kind, params, h, setting)
    weight = ((h - h_hat) ** 2).sum(-1) ** 2  # (inst, batch)
    counts = dead.sum(-1)
    for i in torch.nonzero(counts * (weight.sum(-1) > 0)).flatten().tolist():
        latents = torch.nonzero(dead[i]).flatten()
        rows = torch.multinomial(weight[i].cpu(), len(latents), replacement=True, generator=draws[i]).to(h.device)
        direction = torch.nn.functional.normalize(h[i, rows] - params["b_dec"][i], dim=-1)  # (dead, d_in)
        alive = params["W_enc"][i][:, ~dead[i]]
        scale = RESAMPLE_SCALE * (alive.norm(dim=0).mean() if alive.shape[1] else 1.0)
        params["W_dec"][i, latents] = direction
        params["W_enc"][i][:, latents] = direction.T * scale
        params["b_enc"][i, latents] = 0.0
        if "threshold" in params:
            params["threshold"][i, latents] = THRESHOLD_INIT
        for name, p in params.items():
            state = optimizer.state.get(p, {})
            for moment in ("exp_avg", "exp_avg_sq"):
                if moment in state and name != "b_dec":
                    index = (i, slice(None), latents) if name == "W_enc" else (i, latents)
                    state[moment][index] = 0.0
    return counts * (weight.sum(-1) > 0)


class _Bar:
    """A rich progress bar with the mean loss; silent when disabled."""

    def __init__(self, total: int, enabled: bool):
        self.enabled, self.total = enabled, total

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("[bold]sae"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
                TimeRemainingColumn(), transient=True,
            )  # fmt: skip
            self.task = self.bar.add_task("sae", total=self.total, loss="-")
            self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.stop()

    def advance(self, done: int, loss: Tensor) -> None:
        if self.enabled and (done % 50 == 0 or done == self.total):
            self.bar.update(self.task, completed=done, loss=f"{loss.mean().item():.3g}")
