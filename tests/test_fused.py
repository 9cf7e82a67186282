"""The fused engine against autograd, the paper's distribution, and the reference engine."""

import math

import numpy as np
import pytest
import torch

from superposition.kernels import fused
from superposition.config import resolve
from superposition.analysis.metrics import feature_norms
from superposition.models import forward, init_params, loss_per_instance
from superposition.training.loop import train


@pytest.mark.parametrize(
    "model, activation, hidden",
    [
        ("tied", "relu", "linear"),
        ("tied", "linear", "linear"),
        ("tied", "relu", "relu"),
        ("untied", "relu", "linear"),
        ("untied", "linear", "relu"),
        ("mlp", "linear", "relu"),
    ],
)
@pytest.mark.parametrize("data_code, target", [(0, "identity"), (1, "identity"), (2, "abs")])
# sparse: the kernel's path for batches of mostly empty rows (70% here), which skips them
@pytest.mark.parametrize("density, sparse", [(0.5, False), (0.05, False), (0.05, True)])
def test_hand_written_gradients_match_autograd(model, activation, hidden, data_code, target, density, sparse):
    config = resolve(
        {
            "model": model,
            "activation": activation,
            "hidden_activation": hidden,
            "features": 7,
            "hidden": 3,
            "sparsity": [0.5],
            "target": target,
        }
    )
    params = init_params(config, torch.Generator().manual_seed(3))
    params["b"] = torch.randn(1, 7, generator=torch.Generator().manual_seed(4)) * 0.3
    importance = torch.tensor([config.importance[0]])
    X = fused.sample(np.full(7, density, np.float32), 11, 0, 0, 256, data_code)
    W_out = params["W_out"][0].numpy() if "W_out" in params else np.zeros((1, 1), np.float32)
    loss, gW, gD, gb = fused.gradients(
        params["W"][0].numpy(), W_out, params["b"][0].numpy(), importance[0].numpy(), X,
        model == "tied", hidden == "relu", activation == "relu", target == "abs", sparse,
    )  # fmt: skip
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    x = torch.from_numpy(X.T.copy())[None]
    reference = loss_per_instance(forward(leaves, x, config), x, importance, config)[0]
    reference.backward()
    assert loss == pytest.approx(reference.item(), rel=1e-5)
    torch.testing.assert_close(torch.from_numpy(gW), leaves["W"].grad[0], rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(torch.from_numpy(gb), leaves["b"].grad[0], rtol=1e-4, atol=1e-7)
    if model != "tied":
        torch.testing.assert_close(torch.from_numpy(gD), leaves["W_out"].grad[0], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("p", [1.0, 0.3, 0.02])
def test_one_draw_gives_the_papers_distribution(p):
    X = np.stack([fused.sample(np.full(50, p, np.float32), 0, 0, step, 2048, 0) for step in range(4)])
    n = X.size
    present = X > 0
    assert present.mean() == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / n) + 1e-6)
    values = X[present]
    # present values are U[0, 1]: every decile holds a tenth of them
    deciles = np.histogram(values, bins=10, range=(0, 1))[0] / values.size
    assert np.abs(deciles - 0.1).max() < 4 * math.sqrt(0.09 / values.size)
    assert values.max() < 1.0


def test_draws_are_independent_across_features_rows_steps_and_instances():
    probs = np.full(20, 0.5, np.float32)
    a = fused.sample(probs, 0, 0, 0, 4096, 0)
    others = {
        "next step": fused.sample(probs, 0, 0, 1, 4096, 0),
        "next instance": fused.sample(probs, 0, 1, 0, 4096, 0),
        "next seed": fused.sample(probs, 1, 0, 0, 4096, 0),
    }
    bound = 4 / math.sqrt(a.size)
    for name, b in others.items():
        assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < bound, name
    assert abs(np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1]) < bound  # neighbouring features
    assert abs(np.corrcoef(a[:, :-1].ravel(), a[:, 1:].ravel())[0, 1]) < bound  # neighbouring rows
    np.testing.assert_array_equal(a, fused.sample(probs, 0, 0, 0, 4096, 0))


def test_signed_data_is_uniform_on_minus_one_one():
    X = fused.sample(np.full(20, 0.4, np.float32), 0, 0, 0, 8192, 2)
    values = X[X != 0]
    assert (X != 0).mean() == pytest.approx(0.4, abs=0.01)
    assert values.min() >= -1 and values.max() < 1
    assert values.mean() == pytest.approx(0, abs=0.02)
    assert (values < 0).mean() == pytest.approx(0.5, abs=0.01)


def test_seed_data_rows_are_unit_or_zero():
    X = fused.sample(np.full(20, 0.1, np.float32), 0, 0, 0, 4096, 1)
    norms = np.linalg.norm(X, axis=0)
    assert np.allclose(norms[norms > 0], 1, atol=1e-5)
    assert (X > 0).mean() == pytest.approx(0.1, abs=0.005)
    assert (norms == 0).mean() == pytest.approx(0.9**20, abs=0.02)


def test_result_does_not_depend_on_thread_count():
    import numba

    config = resolve({"features": 8, "hidden": 3, "sparsity": [0, 0.5, 0.9], "steps": 200})
    both = train(config).params["W"]
    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        one = train(config).params["W"]
    finally:
        numba.set_num_threads(before)
    assert torch.equal(both, one)


@pytest.mark.parametrize("model", ["tied", "untied", "mlp"])
def test_engines_learn_the_same_solutions(model):
    """Same config, same data stream, different arithmetic (autograd, any device): same features
    represented, losses within noise."""
    config = resolve(
        {"model": model, "features": 12, "hidden": 4, "sparsity": [0, 0.8, 0.97], "steps": 3000, "lr": 3e-3}
    )
    results = {engine: train(config.model_copy(update={"engine": engine})) for engine in ("fused", "reference")}
    from superposition.analysis.metrics import eval_loss

    losses = {engine: eval_loss(config, r.params) for engine, r in results.items()}
    represented = {engine: (feature_norms(r.params["W"]) > 0.5).sum(-1) for engine, r in results.items()}
    torch.testing.assert_close(losses["fused"], losses["reference"], rtol=0.1, atol=1e-5)
    if model == "tied":  # untied and mlp can trade scale between W and W_out
        assert torch.equal(represented["fused"], represented["reference"])


@pytest.mark.parametrize("engine", ["fused", "reference"])
def test_correlated_and_anticorrelated_sets(engine):
    from superposition import data

    probs = np.full(6, 0.2, np.float32)
    if engine == "fused":
        corr = fused.sample(probs, 0, 0, 0, 20_000, 0, 1, 3).T
        anti = fused.sample(probs, 0, 0, 0, 20_000, 0, 2, 3).T
    else:  # the torch version of the stream, which the reference engine draws from
        p = torch.from_numpy(probs)[None]

        def draw(correlation):
            config = resolve({"features": 6, "sparsity": [0.8], "batch_size": 20_000, "correlation": correlation, "set_size": 3})
            return data.batch(config, p, torch.arange(1), 0)[0].numpy()

        corr, anti = draw("correlated"), draw("anticorrelated")
    for x in (corr, anti):  # every feature keeps its own probability, values U[0, 1]
        assert (x > 0).mean(0) == pytest.approx([0.2] * 6, abs=0.015)
        assert x[x > 0].mean() == pytest.approx(0.5, abs=0.01)
    on = corr > 0
    # correlated: a set's members are present together, sets independently of each other
    assert (on[:, 0] == on[:, 1]).all() and (on[:, 1] == on[:, 2]).all()
    assert (on[:, 0] & on[:, 3]).mean() == pytest.approx(0.04, abs=0.01)
    on = anti > 0
    # anticorrelated: at most one member of a set at a time
    assert on[:, :3].sum(1).max() == 1 and on[:, 3:].sum(1).max() == 1
    assert on[:, :3].any(1).mean() == pytest.approx(0.6, abs=0.015)


_CACHE_PROBE = """
import hashlib
from superposition.config import resolve
from superposition.kernels import fused
from superposition.training.loop import train
for keys in ({}, {"model": "untied", "hidden_activation": "relu"}, {"data": "signed", "target": "abs"}):
    result = train(resolve({**keys, "steps": 300, "sparsity": [0, 0.9], "device": "cpu", "engine": "fused"}))
    print(hashlib.sha256(b"".join(v.numpy().tobytes() for v in result.params.values())).hexdigest())
print("loaded" if fused.train_steps.stats.cache_hits else "built")
"""


def test_weights_do_not_depend_on_the_compiled_cache(tmp_path):
    """Issue 8.8: the run that compiles the kernel and the runs that load it from the cache agree bit for bit.

    In a fresh checkout this process has built the kernel (and cached it) by now: a new
    process loads it, and the two are compared. Where this process loaded it from an older
    cache, a new process builds it into an empty cache and another loads that."""
    import contextlib
    import io
    import os
    import subprocess
    import sys

    def probe(env=None) -> list[str]:
        done = subprocess.run([sys.executable, "-c", _CACHE_PROBE], env=env, capture_output=True, text=True, check=True)
        return done.stdout.split()

    here = io.StringIO()
    with contextlib.redirect_stdout(here):
        exec(_CACHE_PROBE, {})
    here = here.getvalue().split()
    if here[-1] == "built":
        loaded = probe()
        assert loaded == here[:-1] + ["loaded"]
        return
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    fresh = probe(env)
    assert fresh[-1] == "built" and any((tmp_path / "numba").rglob("*.nbc")), "the first run should have filled the cache"
    assert probe(env) == fresh[:-1] + ["loaded"]
    assert here[:-1] == fresh[:-1]
