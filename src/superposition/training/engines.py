"""The engines, each an object that says what it runs, and the one place an engine is chosen.

A job is a toy model's Config (fresh data, or a finite set with `dataset_size`) or an
SAEConfig. An engine answers `supports(job, device)`: None where it trains the job on
that device, otherwise the reason it does not, in words a user can act on. `settle`
fills in `auto`: the device (the GPU where there is one, unless the engine named runs on
the CPU only), then the first engine of PREFERENCE for that device that supports the
job. An engine named that cannot run the job is refused with its own reason.

An engine builds the stepper of each workload (WORKLOADS) it runs: the module of the
workload's loop registers its builder with `@ENGINES[name].builds(workload)`, and the loop
asks `ENGINES[config.engine].stepper(workload, ...)`. A stepper runs a chunk of steps and
returns their losses (steps.Stepper).

  fused      numba kernels, CPU only: fused.py (toy models), dataset_fused.py (finite
             sets with a ReLU output and a linear hidden layer), sae_fused.py (SAEs);
             model and SAE kinds only where the kind's own class declares `fused`
  compiled   torch.compile, every model and SAE kind, fresh data and finite sets: a toy
             model's whole step (CUDA graphs on a GPU), an SAE's loss and its gradients
  reference  autograd and torch.optim, everything, on any device
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ..config import Config
from ..data import GENERATORS
from ..errors import ConfigError
from ..models import KINDS
from ..saes import SAE_KINDS

if TYPE_CHECKING:
    from ..saes.config import SAEConfig

    Job = Config | SAEConfig  # a toy model's config, or an SAE job's


# toy models on fresh data, toy models on a finite set, SAEs
WORKLOADS = ("fresh", "finite", "sae")


class Engine:
    name: ClassVar[str]
    devices: ClassVar[tuple[str, ...]] = ("cpu", "cuda")

    def __init__(self) -> None:
        self.builders: dict[str, Callable[..., Any]] = {}

    def builds(self, workload: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Register, as a decorator, how this engine builds the stepper of `workload`."""
        assert workload in WORKLOADS, workload

        def register(builder: Callable[..., Any]) -> Callable[..., Any]:
            self.builders[workload] = builder
            return builder

        return register

    def stepper(self, workload: str, *args: Any) -> Any:
        """This engine's stepper of `workload`, built from `args` (its builder's)."""
        return self.builders[workload](*args)

    def supports(self, job: Job, device: str, data: Config | None = None) -> str | None:
        """None where this engine trains `job` on `device`; otherwise why not, and what to use.
        `data`: the config whose generator draws the data (an SAE's source; a toy model's own)."""
        return None


class Fused(Engine):
    name, devices = "fused", ("cpu",)

    def supports(self, job: Job, device: str, data: Config | None = None) -> str | None:
        toy = isinstance(job, Config)
        data = job if toy else data
        if data is not None and GENERATORS[data.data].kernel_draw(data) is None:
            drawn = ", ".join(f"{name} {g.kernel_scope}".strip() for name, g in GENERATORS.items() if g.kernel is not None)
            return f"the fused engine's kernels have no draw of {GENERATORS[data.data].describe(data)} (they draw {drawn}); use --engine compiled or reference"
        if toy and job.optimizer == "sgd":
            return "the fused engine trains with Adam(W); use --engine reference for SGD"
        if toy and KINDS[job.model].fused is None:
            return f"the fused engine does not run the {job.model} model; use --engine reference"
        if not toy and not SAE_KINDS[job.kind].fused:
            return f"the fused engine does not run the {job.kind} SAE; use --engine reference"
        if toy and job.dataset_size and (job.activation != "relu" or job.hidden_activation != "linear"):
            # its sparse step skips the outputs a ReLU makes zero: a linear output has none
            return "the fused engine trains a finite dataset with a ReLU output and a linear hidden layer; use --engine reference"
        if device != "cpu":
            return "the fused engine runs on the CPU; use --engine compiled with --device cuda"
        return None


class Compiled(Engine):
    name = "compiled"

    def supports(self, job: Job, device: str, data: Config | None = None) -> str | None:
        if isinstance(job, Config) and job.optimizer == "sgd":
            return "the compiled engine's step is Adam(W); use --engine reference for SGD"
        return None


class Reference(Engine):
    name = "reference"


ENGINES: dict[str, Engine] = {engine.name: engine for engine in (Fused(), Compiled(), Reference())}
# the fastest first: on the CPU the numba kernels, on a GPU one CUDA graph per 100 steps
PREFERENCE = {"cpu": ("fused", "reference"), "cuda": ("compiled", "reference")}


def device_of(job: Job) -> str:
    """The device a job trains on: as asked, or the GPU where there is one (the CPU where
    the engine asked for runs only there)."""
    if job.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but no CUDA GPU is available; use --device cpu")
    if job.device != "auto":
        return job.device
    if job.engine != "auto" and "cuda" not in ENGINES[job.engine].devices:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


def engine_of(job: Job, device: str, data: Config | None = None) -> str:
    """The engine that trains `job` on `device`: the one asked for, if it can; for `auto`, the
    first of PREFERENCE[device] that can. `data`: an SAE's source config, where known."""
    if job.engine != "auto":
        reason = ENGINES[job.engine].supports(job, device, data)
        if reason:
            raise ConfigError(f"engine: {reason}")
        return job.engine
    return next(name for name in PREFERENCE[device] if ENGINES[name].supports(job, device, data) is None)


def settle(job: Job) -> Job:
    """The job with `auto` replaced by what will run: its device, and the engine for it."""
    device = device_of(job)
    return job.model_copy(update={"device": device, "engine": engine_of(job, device)})
