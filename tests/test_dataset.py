"""Finite training sets (dataset_size, normalize): the set, both engines on it, what a run
records, D_t, the double-descent preset, sweeps over T, and bad input."""

import json
import math

import numpy as np
import pytest
import torch

import superposition as sp
from superposition import data
from superposition.training import dataset
from superposition.kernels import dataset_fused
from superposition.config import ConfigError
from superposition.analysis.metrics import measure
from superposition.models import forward, init_params, loss_per_instance, loss_weights
from superposition.training.steps import BETAS, EPS, lr_factor
from superposition.training.loop import train

SMALL = dict(features=30, hidden=2, sparsity=[0.9, 0.95], importance_decay=0.9, normalize=True, lr=1e-2, device="cpu")


@pytest.mark.parametrize(
    "keys",
    [
        {"data": "paper", "normalize": False},
        {"data": "paper", "normalize": True},
        {"data": "signed", "normalize": True},
        {"data": "paper", "correlation": "anticorrelated", "set_size": 3, "sparsity": [0.8]},
    ],
)
def test_training_set_is_the_streams_batch_and_depends_on_the_seed(keys):
    config = sp.Config(**{**SMALL, "dataset_size": 70, **keys})
    drawn = dataset.training_set(config)
    assert drawn.shape == (config.instances, 70, 30)
    probs, instances = data.feature_probability(config), torch.arange(config.instances)
    assert torch.equal(drawn.dense(), data.batch(config, probs, instances, dataset.DATASET_STEP, rows=70))
    assert torch.equal(drawn.dense(), dataset.training_set(config).dense())  # same seed, same set
    other = dataset.training_set(config.model_copy(update={"seed": 1})).dense()
    assert not torch.equal(drawn.dense(), other)
    assert not torch.equal(drawn.dense(), dataset.test_block(config, 0).dense()[:, :70])
    if config.normalize:
        norms = drawn.dense().norm(dim=-1)
        assert torch.allclose(norms[norms > 0], torch.ones(1), atol=1e-6)
        assert torch.equal(norms == 0, drawn.dense().abs().sum(-1) == 0)  # an all-zero example stays zero
        assert (norms == 0).any() or config.data_options["correlation"] != "none"


def test_minibatches_cover_every_example_once_per_epoch():
    config = sp.Config(**{**SMALL, "dataset_size": 50, "batch_size": 20})
    picks = dataset.batches(config, 0, 10, [0, 1])  # 200 positions: 4 epochs
    flat = picks.reshape(2, -1)
    for epoch in range(4):
        assert sorted(flat[0, 50 * epoch : 50 * (epoch + 1)].tolist()) == list(range(50))
    assert not np.array_equal(flat[0, :50], flat[0, 50:100])  # reshuffled each epoch
    assert not np.array_equal(flat[0], flat[1])  # each instance its own order
    assert np.array_equal(dataset.batches(config, 3, 2, [1]), picks[1:, 3:5])  # any chunk, the same steps


def test_sample_returns_what_each_step_trains_on():
    config = sp.Config(**{**SMALL, "dataset_size": 50, "batch_size": 20})
    x = sp.sample(config, steps=[0, 3])
    assert x.shape == (2, 2, 20, 30)
    whole = dataset.training_set(config).dense()
    picks = dataset.batches(config, 3, 1, [0, 1])
    assert torch.equal(x[1, 1], whole[1, picks[1, 0]])
    assert torch.equal(sp.sample(config.model_copy(update={"batch_size": 64}), steps=[7])[0], whole)


# m = 2 walks the tree in its own copy of the step (the second case: 512 leaves, 10 levels of
# the walk); m = 1 and m >= 3 take the dense pass, which pads the points (size - 30) and
# features to whole tiles and works in chunks of 1,024 of each
@pytest.mark.parametrize(
    "hidden, features, size", [(2, 42, 300), (2, 1_030, 4_000), (1, 42, 300), (3, 42, 300), (3, 1_030, 1_100)]
)
@pytest.mark.parametrize("tied, abs_target", [(True, False), (False, False), (False, True)])
def test_sparse_step_gradients_equal_autograd(tied, abs_target, hidden, features, size):
    """The kernel's loss and gradients (active pairs through the tree, the rest skipped or in
    closed form; or every pair) against autograd on the dense set, for a state with outputs
    on and off."""
    generator = torch.Generator().manual_seed(3)
    config = sp.Config(
        features=features, hidden=hidden, sparsity=[0.9], dataset_size=size, data="signed" if abs_target else "paper",
        target="abs" if abs_target else "identity", model="tied" if tied else "untied", importance_decay=0.95,
    )  # fmt: skip
    examples = dataset.training_set(config)
    W = torch.randn(features, hidden, generator=generator) * 0.7
    W_out = torch.randn(hidden, features, generator=generator) * 0.7
    b = torch.randn(features, generator=generator) * 0.3
    imp = loss_weights(config)[0]
    rows = np.arange(20, size - 10)  # a minibatch: not every example
    loss, gW, gD, gb = dataset_fused.gradients(
        W.numpy(), W_out.numpy(), b.numpy(), imp.numpy(), examples.row_ptr[0], examples.cols, examples.values, rows, tied, abs_target
    )
    params = {"W": W[None].clone().requires_grad_(), "b": b[None].clone().requires_grad_()}
    if not tied:
        params["W_out"] = W_out[None].clone().requires_grad_()
    x = examples.dense()[:, rows]
    reference = loss_per_instance(forward(params, x, config), x, imp[None], config)[0]
    reference.backward()
    assert loss == pytest.approx(reference.item(), rel=1e-5)
    assert torch.allclose(torch.from_numpy(gW), params["W"].grad[0], atol=1e-7, rtol=1e-4)
    assert torch.allclose(torch.from_numpy(gb), params["b"].grad[0], atol=1e-7, rtol=1e-4)
    if not tied:
        assert torch.allclose(torch.from_numpy(gD), params["W_out"].grad[0], atol=1e-7, rtol=1e-4)


# the fused kernel has its own copy of the step for hidden = 2; the last case takes the other,
# with the dense pass
@pytest.mark.parametrize(
    "model, batch_size, hidden, reduction",
    [("tied", 1024, 2, "mean"), ("tied", 16, 2, "mean"), ("untied", 1024, 2, "mean"), ("tied", 16, 3, "mean"), ("tied", 16, 2, "sum"), ("untied", 1024, 2, "sum")],
)
def test_both_engines_agree_on_a_finite_data_run(model, batch_size, hidden, reduction):
    keys = {"dataset_size": 40, "steps": 300, "model": model, "batch_size": batch_size, "hidden": hidden, "loss_reduction": reduction}
    config = sp.Config(**{**SMALL, **keys})
    fused = train(config.model_copy(update={"engine": "fused"}))
    reference = train(config.model_copy(update={"engine": "reference"}))
    assert fused.config.engine == "fused" and reference.config.engine == "reference"
    # the sum is the mean with eps / n: rounding in the near-zero gradients of an untied
    # decoder's rare features is then divided by a 30x smaller eps (4e-5 apart, against 5e-6)
    atol = 2e-5 if reduction == "mean" else 1e-4
    for name in fused.params:
        assert torch.allclose(fused.params[name], reference.params[name], atol=atol), name
    assert torch.allclose(fused.history, reference.history, rtol=1e-3, atol=1e-7)


@pytest.mark.parametrize("engine", ["reference", "fused"])
def test_the_sum_over_features_is_the_mean_with_adams_eps_over_n(engine):
    """The note's loss (sum over features) against the mean trained by hand with eps / n:
    the same steps, and a recorded loss n times the mean's."""
    config = sp.Config(**{**SMALL, "dataset_size": 25, "steps": 30, "loss_reduction": "sum", "engine": engine})
    summed = train(config)
    x = summed.dataset.dense()
    mean = config.model_copy(update={"loss_reduction": "mean"})
    params = {k: v.requires_grad_() for k, v in init_params(mean, torch.Generator().manual_seed(mean.seed)).items()}
    optimizer = torch.optim.AdamW(params.values(), lr=mean.lr, betas=BETAS, eps=EPS / mean.features, weight_decay=mean.weight_decay)
    for _ in range(mean.steps):
        optimizer.zero_grad()
        loss_per_instance(forward(params, x, mean), x, loss_weights(mean), mean).sum().backward()
        optimizer.step()
    for name, value in params.items():
        torch.testing.assert_close(summed.params[name], value.detach(), rtol=1e-4, atol=2e-5, msg=name)
    with torch.no_grad():
        by_mean = loss_per_instance(forward(summed.params, x, mean), x, loss_weights(mean), mean)
    assert torch.allclose(dataset.evaluate(config, summed.params, summed.dataset), by_mean * mean.features, rtol=1e-5)
    assert torch.allclose(summed.history[-1], by_mean * mean.features, rtol=0.05)  # the last step's, before its update


def test_saved_set_is_the_one_trained_on_and_its_train_loss_is_recorded(tmp_path):
    """Retrain the first step by hand from the saved set: the weights match the run's."""
    config = sp.Config(**{**SMALL, "dataset_size": 25, "steps": 1, "warmup": 0})
    run = sp.train(config, progress=False)
    run.save(tmp_path / "run")
    back = sp.load_run(tmp_path / "run")
    x = back.dataset.to_dense()
    assert x.shape == (2, 25, 30) and torch.equal(x, run.dataset.to_dense())
    params = {k: v.requires_grad_() for k, v in init_params(config, torch.Generator().manual_seed(config.seed)).items()}
    optimizer = torch.optim.AdamW(params.values(), lr=config.lr * lr_factor(0, config), betas=BETAS, eps=EPS, weight_decay=config.weight_decay)
    loss_per_instance(forward(params, x, config), x, loss_weights(config), config).sum().backward()
    optimizer.step()
    for name, value in params.items():
        assert torch.allclose(value.detach(), back.params[name], atol=1e-6), name
    # train loss on the saved set, recomputed from the saved weights
    trained = sp.Config(**{**SMALL, "dataset_size": 25, "steps": 200})
    later = sp.train(trained, progress=False)
    later.save(tmp_path / "later")
    again = sp.load_run(tmp_path / "later")
    x = again.dataset.to_dense()
    with torch.no_grad():
        recomputed = loss_per_instance(forward(again.params, x, trained), x, loss_weights(trained), trained)
    recorded = torch.tensor([row["train_loss"] for row in again.metrics["instances"]])
    assert torch.allclose(recomputed, recorded, rtol=1e-5)
    assert recorded.max() < min(row["test_loss"] for row in again.metrics["instances"])  # it fits its set
    assert again[1].dataset.shape == (1, 25, 30) and torch.equal(again[1].dataset.to_dense(), x[1:])


def test_test_loss_grows_its_set_until_its_standard_error_is_below_one_percent():
    # 200-row blocks: one block leaves the loss of these untrained weights ~5% uncertain
    config = sp.Config(**{**SMALL, "dataset_size": 25, "eval_batch_size": 200})
    params = init_params(config, torch.Generator().manual_seed(3))
    test = dataset.test_loss(config, params)
    blocks = [dataset.test_block(config, b) for b in range(test.rows // 200)]
    assert test.rows > 200 and test.rows % 200 == 0
    x = torch.cat([block.dense() for block in blocks], dim=1)
    assert torch.equal(blocks[0].dense(), data.evaluation(config))  # block 0: the evaluation batch
    probs, instances = data.feature_probability(config), torch.arange(config.instances)
    assert torch.equal(blocks[1].dense(), data.batch(config, probs, instances, data.EVAL_STEP + 1, rows=200))
    with torch.no_grad():
        out = forward(params, x, config)
    per_example = (loss_weights(config)[:, None] * (x - out) ** 2).mean(-1).double()
    assert torch.allclose(test.loss.double(), per_example.mean(1), rtol=1e-5)
    assert torch.allclose(test.se.double(), per_example.std(1) / math.sqrt(test.rows), rtol=1e-4)
    assert (test.se <= 0.01 * test.loss).all()
    # with half the rows, some instance was still above 1%: it stopped at the first size that sufficed
    half = per_example[:, : test.rows // 2]
    assert (half.std(1) / math.sqrt(half.shape[1]) > 0.01 * half.mean(1)).any()


def test_test_loss_stops_at_its_cap_and_says_how_precise_it_is(monkeypatch):
    config = sp.Config(**{**SMALL, "dataset_size": 25, "eval_batch_size": 50})
    params = init_params(config, torch.Generator().manual_seed(3))
    monkeypatch.setattr(dataset, "TEST_VALUES", 100 * 30)  # 100 rows of 30 features, for each of the 2 instances
    capped = dataset.test_loss(config, params)
    assert capped.rows == 100 and (capped.se > 0.01 * capped.loss).any()


def test_a_double_descent_peak_must_stand_clear_of_the_test_losses_standard_errors():
    from superposition.experiments.double_descent import _peak

    def rows(se, middle=1.2):
        losses = (1.0, 1.0, middle, 1.0)
        return [{"T": T, "test_loss": loss, "test_loss_se": se, "nothing": 1.0} for T, loss in zip((3, 10, 30, 100), losses)]

    assert _peak(rows(0.01)) == (30, pytest.approx(0.2))  # +20% above predicting nothing
    assert _peak(rows(0.1)) == (None, 0.0)  # 0.2 above is 1.4 standard errors of the difference
    assert _peak(rows(1e-5, middle=1.015)) == (30, pytest.approx(0.015))  # the note's bump: +1.5%
    assert _peak(rows(1e-6, middle=1.005)) == (None, 0.0)  # clear of the noise, but under BUMP


def test_double_descent_averages_its_dataset_seeds(tmp_path):
    """Each (m, T) row is the mean test loss over the run's instances (dataset seeds), its
    standard error their spread over √seeds or their own errors combined, whichever is
    larger; the paper setting trains 4 seeds per T."""
    from superposition.experiments import double_descent

    assert double_descent._keys(double_descent.SETTINGS["paper"], 2, 100)["sparsity"] == [0.999] * 4
    trained = {}
    for T in (5, 10, 20):
        config = sp.Config(**{**SMALL, "sparsity": [0.9] * 3, "importance_decay": 1.0, "dataset_size": T, "steps": 50})
        run = sp.train(config, progress=False)
        trained[2, T] = (run.config, run.params, run.examples, run.metrics)
        assert len({tuple(run.examples.dense()[i].flatten().tolist()) for i in range(3)}) == 3  # three training sets
    outcome = double_descent.conclude(trained, tmp_path)
    for row, (_, _, _, metrics) in zip(outcome.table, trained.values()):
        test = np.array([instance["test_loss"] for instance in metrics["instances"]])
        assert row["seeds"] == 3 and row["test_loss"] == pytest.approx(test.mean(), rel=1e-5)
        own = np.sqrt(sum(instance["test_loss_se"] ** 2 for instance in metrics["instances"])) / 3
        assert row["test_loss_se"] == pytest.approx(max(test.std(ddof=1) / np.sqrt(3), own), rel=1e-4)
        assert row["test_low"] <= row["test_loss"] <= row["test_high"]
        assert row["nothing"] == pytest.approx((1 - 0.9**30) / 30)  # not empty, unit norm, the mean over 30 features
    assert "of 3)" in outcome.claims[0].ours  # the regimes are judged in every seed


def test_the_loss_comparison_draws_each_convention_per_example(tmp_path):
    from superposition.experiments.double_descent import compare

    for reduction in ("mean", "sum"):
        for T in (5, 10):
            config = sp.Config(**{**SMALL, "sparsity": [0.9], "dataset_size": T, "steps": 50, "loss_reduction": reduction})
            sp.train(config, progress=False).save(tmp_path / reduction / f"m2-T{T}")
    fig = compare({"shipped": tmp_path / "mean", "note": tmp_path / "sum"})
    drawn = {bars.get_label(): bars.lines[0] for bars in fig.axes[0].containers}
    lines = [drawn["shipped (mean over features)"], drawn["note (sum over features)"]]
    for line, reduction, scale in zip(lines, ("mean", "sum"), (30, 1)):
        recorded = [sp.load_run(tmp_path / reduction / f"m2-T{T}").metrics["instances"][0]["test_loss"] for T in (5, 10)]
        assert list(line.get_xdata()) == [5, 10]
        assert np.allclose(line.get_ydata(), np.array(recorded) * scale)
    assert len(lines) == 2 and "loss summed" not in fig.get_suptitle()
    with pytest.raises(ConfigError, match="no run m2"):
        compare({"none": tmp_path / "missing"})


def _points(points):
    """A one-hot set whose examples' hidden vectors are `points` (T, 2): example t is feature t."""
    T = len(points)
    config = sp.Config(features=T, hidden=2, sparsity=[0.5], dataset_size=T, eval_batch_size=8)
    examples = dataset.Sparse(np.arange(T + 1, dtype=np.int64)[None], np.arange(T, dtype=np.int32), np.ones(T, np.float32), T)
    params = {"W": torch.tensor(points, dtype=torch.float32)[None], "b": torch.zeros(1, T)}
    return measure(config, params, examples)["instances"][0]["data_dimensionality"]


def test_data_point_dimensionality_on_hand_built_sets():
    assert _points([[1, 0], [0, 1]]) == pytest.approx([1, 1])  # orthogonal
    assert _points([[2, 0], [-2, 0]]) == pytest.approx([0.5, 0.5])  # antipodal
    angles = 2 * math.pi * np.arange(5) / 5
    assert _points(np.stack([np.cos(angles), np.sin(angles)], 1)) == pytest.approx([0.4] * 5, abs=1e-6)  # pentagon


def test_restarts_share_their_instances_training_set():
    config = sp.Config(**{**SMALL, "dataset_size": 20, "steps": 50, "restarts": 3})
    result = train(config)
    assert torch.equal(result.dataset.dense(), dataset.training_set(config).dense())


def test_double_descent_quick_claims_and_runs(tmp_path):
    from superposition.experiments import Options, reproduce

    # on the CPU: the claims were measured there, and a GPU trains another trajectory
    summary = reproduce("double-descent", tmp_path / "dd", Options(quick=True, overrides={"device": "cpu"}))
    failed = {c["claim"]: c["ours"] for c in summary["claims"] if not c["holds"]}
    assert not failed, failed
    assert len(summary["claims"]) == 4
    run = sp.load_run(tmp_path / "dd" / "m2-T30")
    assert run.config.dataset_size == 30 and run.config.normalize and run.dataset.shape == (1, 30, 200)
    assert {p.name for p in (tmp_path / "dd").glob("*.png")} == {
        "double-descent-loss.png", "double-descent-dimensionality-m2.png", "double-descent-geometry-m2.png"
    }  # fmt: skip

    # the same claims, table and figures from the saved runs, trained in two pieces
    from dataclasses import asdict

    from superposition.experiments import double_descent
    from superposition.files import to_json

    pieces = tmp_path / "m2", tmp_path / "m4"
    for piece in pieces:
        piece.mkdir()
    for run_dir in (tmp_path / "dd").glob("m*-T*"):
        run_dir.rename(pieces[run_dir.name.startswith("m4")] / run_dir.name)
    (tmp_path / "again").mkdir()
    outcome = double_descent.assemble(list(pieces), tmp_path / "again", setting="quick")
    assert [asdict(c) for c in outcome.claims] == summary["claims"]
    assert json.loads(to_json(outcome.table)) == summary["table"]
    drawn = sorted(p.name for p in (tmp_path / "dd").glob("*.png"))
    assert sorted(p.name for p in (tmp_path / "again").glob("*.png")) == drawn
    assert all((tmp_path / "again" / name).read_bytes() == (tmp_path / "dd" / name).read_bytes() for name in drawn)
    with pytest.raises(ConfigError, match="no run m4-T3 "):
        double_descent.assemble([pieces[0]], tmp_path / "again", setting="quick")


def test_runs_trained_side_by_side_equal_runs_trained_in_turn(tmp_path, monkeypatch):
    """fit_all's runs in worker processes (the paper-size preset's, one copy each on 2 cores)
    hold the same weights and training set as the same runs trained one after another in
    this process; a run that fails there stops the preset with its own error."""
    from superposition import experiments

    def jobs(root):
        return [(root / f"T{T}", {**SMALL, "sparsity": [0.9], "dataset_size": T, "steps": 200}, 1) for T in (40, 3, 15)]

    monkeypatch.setattr(experiments, "_cores", lambda: 2)
    experiments.fit_all(jobs(tmp_path / "apart"), experiments.Options())
    monkeypatch.setattr(experiments, "_cores", lambda: 1)
    experiments.fit_all(jobs(tmp_path / "in-turn"), experiments.Options())
    for T in (40, 3, 15):
        apart, in_turn = sp.load_run(tmp_path / "apart" / f"T{T}"), sp.load_run(tmp_path / "in-turn" / f"T{T}")
        assert apart.params.keys() == in_turn.params.keys()
        assert all(torch.equal(apart.params[k], in_turn.params[k]) for k in apart.params)
        assert torch.equal(apart.dataset.to_dense(), in_turn.dataset.to_dense())

    monkeypatch.setattr(experiments, "_cores", lambda: 2)
    broken = [(tmp_path / f"T{T}", {**SMALL, "dataset_size": T, "steps": 10, "lr": -1.0}, 1) for T in (5, 6)]
    with pytest.raises(ConfigError, match="lr"):
        experiments.fit_all(broken, experiments.Options())


def test_sweep_over_dataset_size(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        "[base]\nfeatures = 20\nhidden = 2\nsteps = 100\nnormalize = true\nsparsity = 0.9\n\n[axes]\ndataset_size = [5, 50]\n"
    )
    from superposition.sweeps.sweep import sweep

    sweep(spec, tmp_path / "out")
    table = sp.load_sweep(tmp_path / "out")
    assert table["dataset_size"].tolist() == [5, 50]
    assert (table["train_loss"] < table["test_loss"]).all()


@pytest.mark.parametrize(
    "flags, field",
    [
        (["--dataset-size", "0"], "dataset_size"),
        (["--dataset-size", "-3"], "dataset_size"),
        (["--data", "seed", "--normalize"], "normalize"),
        (["--features", "10000", "--sparsity", "0", "--dataset-size", "2000000000"], "dataset_size"),
        (["--features", "1000", "--dataset-size", "10000000", "--engine", "reference"], "dataset_size"),
        (["--dataset-size", "10", "--activation", "linear", "--engine", "fused"], "engine"),
        # the fused engine's tree: hidden² floats per node
        (["--features", "20", "--hidden", "2048", "--dataset-size", "20000", "--batch-size", "20000", "--device", "cpu"], "dataset_size"),
    ],
)
def test_bad_finite_data_input_one_line_exit_2_nothing_written(tmp_path, cli, flags, field):
    code, out, err = cli("train", "--out", tmp_path / "run", "--steps", "10", *flags)
    assert code == 2, (out, err)
    assert err.startswith(f"error: {field}:") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_memory_refusal_names_the_size(tmp_path, cli):
    code, _, err = cli("train", "--out", tmp_path / "run", "--features", "10000", "--sparsity", "0", "--dataset-size", "2000000000")
    assert code == 2 and "GiB" in err and "2000000000 examples" in err


def test_a_run_with_a_missing_or_altered_set_does_not_load(tmp_path):
    run = sp.train(sp.Config(**{**SMALL, "dataset_size": 10, "steps": 20}), progress=False)
    run.save(tmp_path / "run")
    path = tmp_path / "run" / "dataset.safetensors"
    path.write_bytes(path.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(ConfigError, match="checksum|corrupt|changed"):
        sp.load_run(tmp_path / "run")
    json.loads((tmp_path / "run" / "metrics.json").read_text())  # the rest is intact
