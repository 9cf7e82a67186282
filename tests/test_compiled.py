"""The compiled engine (compiled.py): torch.compile'd steps, CUDA graphs on a GPU.

On the CPU it traces with "aot_eager" (torch.compile's trace of the whole step, forward,
autograd's backward and Adam, run op by op) except in one test that builds it with
Inductor: a cold Inductor build costs ~40 s on this machine's 2 cores.
"""

from __future__ import annotations

import pytest
import torch

from superposition import compiled
from superposition.config import ConfigError, resolve
from superposition.training import settle, train


@pytest.fixture
def traced(monkeypatch):
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")


def _both(keys: dict, device: str = "cpu") -> tuple:
    """The same config trained by the compiled and the reference engines."""
    config = resolve({"features": 8, "hidden": 3, "sparsity": [0, 0.7, 0.95], "steps": 150, "lr": 3e-3, **keys, "device": device})
    return tuple(train(config.model_copy(update={"engine": engine})) for engine in ("compiled", "reference"))


def _assert_same(ours, reference, atol: float = 2e-5) -> None:
    assert ours.config.engine == "compiled" and reference.config.engine == "reference"
    for name, tensor in reference.params.items():
        torch.testing.assert_close(ours.params[name], tensor, rtol=1e-4, atol=atol, msg=name)
    torch.testing.assert_close(ours.history, reference.history, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "keys",
    [
        {
            "hidden_activation": "relu", "activation": "linear", "correlation": "correlated", "set_size": 4,
            "normalize": True, "warmup": 30, "schedule": "cosine", "weight_decay": 0.1,
        },
        {"model": "untied", "data": "seed", "optimizer": "adam", "weight_decay": 1e-3, "warm_start": True, "replicates": 1},
        {"model": "mlp", "data": "signed", "target": "abs", "correlation": "anticorrelated", "set_size": 2, "sparsity": [0.6, 0.9]},
    ],
    ids=["tied-privileged-correlated-normalized-cosine", "untied-seed-adam-warm-start", "mlp-signed-anticorrelated"],
)  # fmt: skip
def test_same_weights_as_the_reference_engine(traced, keys):
    """Same stream, same model and Adam: only rounding differs, so 150 steps end within 2e-5.
    A wrong draw, gradient, bias correction or schedule moves weights by 1e-3 or more. Warm
    start builds a stepper per phase (fresh Adam state, step 0) from the last phase's weights."""
    _assert_same(*_both(keys))


def test_finite_training_sets_full_and_minibatch(traced):
    for size in (40, 300):  # the whole set each step; shuffled minibatches of 128
        _assert_same(*_both({"dataset_size": size, "batch_size": 128, "activation": "relu"}))


def test_inductor_build_matches_the_reference_engine():
    """The engine as users get it, on the default model and data: Inductor's generated code,
    one step at a time on the CPU."""
    _assert_same(*_both({}), atol=1e-4)


def test_auto_picks_it_on_cuda_only(monkeypatch):
    config = resolve({})
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert settle(config).engine == "compiled" and settle(config).device == "cuda"
    assert settle(config.model_copy(update={"device": "cpu"})).engine == "fused"
    with pytest.raises(ConfigError, match="--engine compiled with --device cuda"):
        settle(config.model_copy(update={"device": "cuda", "engine": "fused"}))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert settle(config).engine == "fused"
    assert settle(config.model_copy(update={"engine": "compiled"})).device == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replay_matches_the_reference_engine():
    """On a GPU the engine replays 100-step CUDA graphs (and steps one by one for the rest)."""
    ours, reference = _both({"steps": 250}, device="cuda")
    _assert_same(ours, reference, atol=1e-4)
