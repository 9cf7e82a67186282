"""The compiled engine (compiled.py): torch.compile'd steps, CUDA graphs on a GPU.

Tests trace it with "aot_eager" (conftest.py: torch.compile's trace of the whole step,
forward, autograd's backward and Adam, run op by op), except those that ask for Inductor:
a cold Inductor build costs ~15 s on this machine's 2 cores.
"""

from __future__ import annotations

import pytest
import torch

from superposition.config import resolve
from superposition.training.loop import train


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
            "normalize": True, "warmup": 30, "schedule": "cosine", "weight_decay": 0.1, "strength": 0.6,
        },
        {"model": "untied", "data": "seed", "optimizer": "adam", "weight_decay": 1e-3, "warm_start": True, "replicates": 1},
        {"model": "mlp", "data": "signed", "target": "abs", "correlation": "anticorrelated", "set_size": 2, "sparsity": [0.6, 0.9]},
    ],
    ids=["tied-privileged-partly-correlated-normalized-cosine", "untied-seed-adam-warm-start", "mlp-signed-anticorrelated"],
)  # fmt: skip
def test_same_weights_as_the_reference_engine(keys):
    """Same stream, same model and Adam: only rounding differs, so 150 steps end within 2e-5.
    A wrong draw, gradient, bias correction or schedule moves weights by 1e-3 or more. Warm
    start builds a stepper per phase (fresh Adam state, step 0) from the last phase's weights."""
    _assert_same(*_both(keys))


def test_finite_training_sets_full_and_minibatch():
    for size in (40, 300):  # the whole set each step; shuffled minibatches of 128
        _assert_same(*_both({"dataset_size": size, "batch_size": 128, "activation": "relu"}))


def test_inductor_build_matches_the_reference_engine(inductor):
    """The engine as users get it, on the default model and data: Inductor's generated code,
    one step at a time on the CPU."""
    _assert_same(*_both({}), atol=1e-4)


def test_a_kind_registered_outside_the_package_runs_on_it():
    """The engine differentiates the kind's own forward: a new kind needs no engine code."""
    from test_api import Scaled

    from superposition.models import KINDS, register

    register(Scaled)
    try:
        ours, reference = _both({"model": "test-scaled"})
        assert not torch.equal(ours.params["s"], torch.ones(3, 1, 1))  # its scale was trained
        _assert_same(ours, reference)
    finally:
        KINDS.pop("test-scaled")


def test_each_config_keeps_its_own_compiled_graphs():
    """Dynamo counts recompilations per code object, 8 at most: were every config's step one
    code object, the ninth config would fail. With the limit at 1, two configs train."""
    with torch._dynamo.config.patch(recompile_limit=1):
        for keys in ({"model": "untied", "data": "signed", "target": "abs"}, {"model": "untied", "data": "signed"}):
            train(resolve({"features": 4, "hidden": 2, "steps": 3, "engine": "compiled", "device": "cpu", **keys}))


def test_unit_norm_data_compiles_once_for_every_feature_count():
    """Summed feature by feature in Python, the norm would specialise the graph on the
    feature count: a sweep over 9 or more counts would hit Dynamo's limit of 8 recompiles."""
    for features in range(3, 15):
        train(resolve({"features": features, "hidden": 2, "steps": 2, "data": "seed", "engine": "compiled", "device": "cpu"}))


def test_a_set_larger_than_the_gpus_free_memory_is_refused_in_one_line(monkeypatch):
    from superposition.config import ConfigError
    from superposition.training.loop import check_memory

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (2 * 2**30, 80 * 2**30))
    config = resolve({"features": 1000, "dataset_size": 1_000_000, "device": "cuda", "engine": "compiled"})
    with pytest.raises(ConfigError, match=r"^dataset_size: .* GiB of GPU memory .* 2\.0 GiB is available; .* or --device cpu$"):
        check_memory(config)
    check_memory(config.model_copy(update={"dataset_size": 1000}))  # 4 MB dense: fits


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(
    "keys, replays",
    [
        ({}, 2),  # steps 0-99 and 100-199; the last 50 one by one
        ({"dataset_size": 300, "batch_size": 128, "activation": "relu"}, 2),  # minibatch picks copied in per chunk
        ({"warm_start": True, "replicates": 1}, 6),  # a graph per phase, 3 phases
    ],
    ids=["fresh", "minibatches", "warm-start"],
)
def test_cuda_graph_replay_matches_the_reference_engine(inductor, monkeypatch, keys, replays):
    """On a GPU the engine replays 100-step CUDA graphs (and steps one by one for the rest)."""
    seen = []
    replay = torch.cuda.CUDAGraph.replay
    monkeypatch.setattr(torch.cuda.CUDAGraph, "replay", lambda graph: seen.append(graph) or replay(graph))
    ours, reference = _both({"steps": 250, **keys}, device="cuda")
    assert len(seen) == replays
    _assert_same(ours, reference, atol=1e-4)
