"""The compiled engine: every training step compiled whole by torch.compile, and on CUDA
a chunk of steps replayed as one CUDA graph.

On a GPU the reference engine is bound by launches: ~30 small kernels and a Python round
trip per step, whatever the model's size. Here one step (draw the batch from the counter
stream on the device, the model kind's loss, its gradients by torch.func.grad, Adam(W))
is one function that torch.compile traces whole. The step counter, the learning rates
of the current chunk of steps and the weight decay are device tensors, so nothing in the
step depends on Python, and no input's shape on the number of steps. On CUDA the engine
records `steps.CHUNK` consecutive steps once into a CUDA graph and replays it: one
launch per chunk, no Python per step. Elsewhere the compiled step runs once per step:
that is how the test suite checks it on a CPU, whose fast engine is `fused`.

Why torch.compile rather than a hand-written kernel: it runs every model kind (a new
kind's autograd is compiled with it), every data option (the stream is `data.draw`
itself) and finite training sets, and its gradients are autograd's. The price is a
compilation per graph, 15-40 s cold on this project's 2-core CPU and a few seconds from
Inductor's cache: one graph per combination of the fields in GRAPH_FIELDS, sizes
included until a second size makes torch.compile trace one graph for all sizes.

Adam(W) is torch's foreach update written out (the same lerp, addcmul and bias
corrections), so the engines differ in rounding only. The batches are the stream's: the
same presence pattern everywhere; on a GPU, Triton's float32 division may put a present
value a few ulps from `data.batch`'s.

Each `train` call captures its own graph (two warm-up steps and 100 recorded calls), since
the graph holds the addresses of that run's weights: a cost per run, not per step.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from .. import data
from ..config import Config
from ..models import Params, forward, loss_per_instance
from . import dataset
from .dataset import gather
from .engines import ENGINES
from .steps import BETAS, CHUNK, EPS, Stepper, lr_factor

if TYPE_CHECKING:
    from .dataset import Sparse

# The config fields a compiled step is specialised on; everything else is a tensor input.
GRAPH_FIELDS = ("model", "activation", "hidden_activation", "target", "data", "data_options", "normalize", "optimizer")
_STEPS: dict[tuple, Callable] = {}


def backend() -> str:
    """Inductor, unless SUPERPOSITION_COMPILE_BACKEND names another torch.compile backend: the
    tests trace with "aot_eager" (the same graph run op by op, no build to wait for)."""
    return os.environ.get("SUPERPOSITION_COMPILE_BACKEND", "inductor")


def _compiled_step(config: Config, source: str) -> Callable:
    """The compiled step for this config's graph fields and batch source, built once."""
    key = (*(_hashable(getattr(config, name)) for name in GRAPH_FIELDS), source, backend())
    if key not in _STEPS:
        _STEPS[key] = torch.compile(own_code(_step_function(config, source), len(_STEPS)), backend=key[-1], fullgraph=True)
    return _STEPS[key]


def _hashable(value: object) -> object:
    """A field's value as a key: a generator's options dict as its sorted items."""
    return tuple(sorted(value.items())) if isinstance(value, dict) else value


def own_code(function: Callable, number: int) -> Callable:
    """The function with a code object of its own. Dynamo keeps its compiled graphs, and
    counts recompilations against a limit of 8, per code object, and every step function
    is a closure of the same code: a ninth config would fail (an SAE's loss: a ninth kind
    or shape would run uncompiled)."""
    code = function.__code__.replace(co_name=f"{function.__name__}_{number}")
    return types.FunctionType(code, function.__globals__, code.co_name, function.__defaults__, function.__closure__)


def _step_function(spec: Config, source: str) -> Callable:
    """One optimiser step, in place: spec supplies only GRAPH_FIELDS, `source` says where
    the batch comes from ("fresh": the counter stream; "set": a whole training set;
    "minibatch": rows of it picked per step)."""

    beta1, beta2 = BETAS
    decoupled = spec.optimizer == "adamw"
    draw = data.drawer(spec)

    def loss_of(params: Params, x: Float[Tensor, "inst batch feat"], importance: Float[Tensor, "inst feat"]):
        per_instance = loss_per_instance(forward(params, x, spec), x, importance, spec)
        return per_instance.sum(), per_instance

    def step(
        params: Params,
        moments: tuple[Params, Params],
        step: Int[Tensor, ""],  # the global step index, advanced here
        slot: Int[Tensor, ""],  # its row in `losses`, advanced here
        lrs: Float[Tensor, "chunk"],  # float64: the scheduled learning rate of every step of the chunk
        weight_decay: Float[Tensor, "1"],  # float64; 1-D: Dynamo guards a 0-D float input with .item()
        losses: Float[Tensor, "chunk inst"],
        importance: Float[Tensor, "inst feat"],
        batch: tuple,  # fresh: (probs, instance keys, counters); set: (examples,); minibatch: (examples, picks)
    ) -> None:
        if source == "fresh":
            probs, keys, counter = batch
            x = draw(probs, data.at_step(keys, step), counter.shape[1], counter)
        elif source == "set":
            x = batch[0]
        else:
            x = gather(batch[0], batch[1].index_select(1, slot.view(1)).squeeze(1))
        grads, per_instance = torch.func.grad(loss_of, has_aux=True)(params, x, importance)
        losses.index_copy_(0, slot.view(1), per_instance.view(1, -1))
        lr = lrs.index_select(0, slot.view(1))
        count = (step + 1).double()
        step_size = (lr / (1 - beta1**count)).float()
        root_c2 = (1 - beta2**count).sqrt().float()
        first, second = moments
        for name, p in params.items():
            g = grads[name]
            if decoupled:
                p.mul_((1 - lr * weight_decay).float())
            else:
                g = g + weight_decay.float() * p
            first[name].lerp_(g, 1 - beta1)
            second[name].mul_(beta2).addcmul_(g, g, value=1 - beta2)
            p.sub_(step_size * first[name] / (second[name].sqrt() / root_c2 + EPS))
        step.add_(1)
        slot.add_(1)

    return step


class CompiledSteps:
    """Trains `params` in place, `count` steps per call from a given step: (first, count) ->
    losses (count, inst) on the CPU, as training._fit calls every engine."""

    def __init__(self, params: Params, importance: Float[Tensor, "inst feat"], config: Config, source: str, batch: tuple):
        device = importance.device
        self.step = _compiled_step(config, source)
        self.params, self.importance, self.batch = params, importance, batch
        self.moments = ({k: torch.zeros_like(v) for k, v in params.items()}, {k: torch.zeros_like(v) for k, v in params.items()})
        self.config = config
        self.lrs = torch.zeros(CHUNK, dtype=torch.float64, device=device)
        self.weight_decay = torch.tensor([config.weight_decay], dtype=torch.float64, device=device)
        self.counter = torch.zeros((), dtype=torch.long, device=device)
        self.slot = torch.zeros((), dtype=torch.long, device=device)
        self.losses = torch.zeros(CHUNK, importance.shape[0], device=device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.replay = device.type == "cuda"  # the first whole chunk captures the graph

    def _arguments(self) -> tuple:
        return (self.params, self.moments, self.counter, self.slot, self.lrs, self.weight_decay, self.losses, self.importance, self.batch)

    def __call__(self, first: int, count: int) -> Float[Tensor, "count inst"]:
        self.counter.fill_(first)
        self.slot.zero_()
        schedule = [self.config.lr * lr_factor(first + s, self.config) for s in range(count)]
        self.lrs[:count].copy_(torch.tensor(schedule, dtype=torch.float64))
        if self.replay and count == CHUNK:
            if self.graph is None:
                self.graph = self._capture()
            self.graph.replay()
            return self.losses.cpu()
        for _ in range(count):
            self.step(*self._arguments())
        return self.losses[:count].cpu()

    def _capture(self) -> torch.cuda.CUDAGraph:
        """CHUNK steps recorded as one CUDA graph. A capture records without running, so the
        compilation and its warm-up (cuBLAS, Triton's autotuning) run first, on copies of
        the state the step writes."""
        params, moments, counter, slot, lrs, weight_decay, losses, importance, batch = self._arguments()
        spare_moments = tuple({k: v.clone() for k, v in m.items()} for m in moments)
        spare = ({k: v.clone() for k, v in params.items()}, spare_moments, counter.clone(), slot, lrs, weight_decay, losses.clone(), importance, batch)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                slot.zero_()
                self.step(*spare)
        torch.cuda.current_stream().wait_stream(side)
        slot.zero_()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(CHUNK):
                self.step(*self._arguments())
        return graph


@ENGINES["compiled"].builds("fresh")
def fresh_stepper(
    params: Params, probs: Float[Tensor, "inst feat"], importance: Float[Tensor, "inst feat"], config: Config, first_instance: int
) -> CompiledSteps:
    """A fresh batch every step from the counter stream, as every engine draws it."""
    instances = torch.arange(first_instance, first_instance + probs.shape[0], device=probs.device)
    keys = data.instance_keys(config.seed, instances)
    counter = data.counters(probs.shape[1], config.batch_size, probs.device)
    return CompiledSteps(params, importance, config, "fresh", (probs, keys, counter))


@ENGINES["compiled"].builds("finite")
def dataset_stepper(
    params: Params, examples: Sparse, sources: list[int], importance: Float[Tensor, "inst feat"], config: Config
) -> Stepper:
    """A finite training set held dense on the device: whole, or the minibatches of
    dataset.batches, CHUNK steps' picks copied in before each call."""

    x_all = examples.dense().to(importance.device)  # (inst, T, feat)
    if dataset.full_batch(config):
        return CompiledSteps(params, importance, config, "set", (x_all,))
    picks = torch.zeros(len(sources), CHUNK, config.batch_size, dtype=torch.long, device=importance.device)
    steps = CompiledSteps(params, importance, config, "minibatch", (x_all, picks))

    def run(first: int, count: int) -> Tensor:
        chosen = torch.from_numpy(np.ascontiguousarray(dataset.batches(config, first, count, sources)))
        picks[:, :count].copy_(chosen)
        return steps(first, count)

    return run
