"""Checkpoints (`checkpoints = N` or a list of steps), one model as a plain module, its
loader, and SGD with momentum: the seams other tools (devinterp, SPD) take a model by."""

import json

import pytest
import torch

import superposition as sp
from superposition.config import checkpoint_steps
from superposition.models import forward, init_params
from superposition.training.engines import engine_of

BASE = dict(features=6, hidden=2, sparsity=[0.9, 0.7], device="cpu")


def same(a, b) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoints_are_log_spaced_from_the_initial_weights_to_the_last_step():
    assert checkpoint_steps(5, 100) == [0, 1, 5, 22, 100]
    assert checkpoint_steps(2, 7) == [0, 7] and checkpoint_steps(1, 7) == [7]
    many = checkpoint_steps(50, 10_000)
    assert many[0] == 0 and many[-1] == 10_000 and many == sorted(set(many)) and 40 < len(many) <= 50
    assert checkpoint_steps(30, 10) == list(range(11))  # more asked than steps: every step once
    assert sp.Config(**BASE, steps=100, checkpoints=5).checkpoints == [0, 1, 5, 22, 100]


@pytest.mark.parametrize("engine", ["fused", "reference", "compiled"])
def test_a_checkpoint_is_bit_for_bit_a_run_stopped_at_its_step(engine):
    base = {**BASE, "engine": engine, "steps": 230}
    run = sp.train(sp.Config(**base, checkpoints=[0, 7, 150, 230]), progress=False)
    assert run.checkpoint_steps == [0, 7, 150, 230] and run.checkpoints["W"].shape == (4, 2, 6, 2)
    for step in (7, 150):
        stopped = sp.train(sp.Config(**{**base, "steps": step}), progress=False)
        kept = run.checkpoint(step)
        assert same(kept.params, stopped.params), step
        assert kept.step == step and kept.losses.shape == (step, 2)
        assert kept.metrics["instances"][0]["loss"] == stopped.metrics["instances"][0]["loss"]
    assert same(run.checkpoint(230).params, run.params)
    assert same(run.checkpoint(0).params, init_params(run.config, torch.Generator().manual_seed(0)))


def test_checkpoints_of_a_finite_set_restarts_and_warm_start_are_those_of_the_runs_they_keep():
    finite = {**BASE, "dataset_size": 50, "batch_size": 16, "steps": 40}
    run = sp.train(sp.Config(**finite, checkpoints=[13]), progress=False)
    assert same(run.checkpoint(13).params, sp.train(sp.Config(**{**finite, "steps": 13}), progress=False).params)
    # restarts keep each instance's best copy, and its checkpoints
    best = sp.train(sp.Config(**BASE, steps=60, restarts=3, checkpoints=[30, 60]), progress=False)
    assert same(best.checkpoint(60).params, best.params)
    # warm start: instance k's checkpoint is from its own phase, which began from instance k-1's end
    warm = sp.train(sp.Config(**BASE, steps=40, warm_start=True, checkpoints=[0, 40]), progress=False)
    assert torch.equal(warm.checkpoint(0).params["W"][1], warm.params["W"][0])


def test_checkpoints_are_saved_sealed_loaded_and_indexed(tmp_path):
    run = sp.train(sp.Config(**BASE, steps=30, checkpoints=4), progress=False)
    run.save(tmp_path / "r", figures=False)
    back = sp.load_run(tmp_path / "r")
    assert back.checkpoint_steps == [0, 1, 5, 30] and same(back.checkpoints, run.checkpoints)
    assert "checkpoints.safetensors" in json.loads((tmp_path / "r" / "superposition.json").read_text())["sha256"]
    assert same(back[1].checkpoint(5).params, {k: v[1:] for k, v in run.checkpoint(5).params.items()})
    with pytest.raises(sp.ConfigError, match="save the run"):
        run.checkpoint(5).save(tmp_path / "c")
    assert not (tmp_path / "c").exists()
    (tmp_path / "r" / "checkpoints.safetensors").write_bytes(b"broken")
    with pytest.raises(sp.ConfigError, match="checksum|corrupted|changed"):
        sp.load_run(tmp_path / "r")


def test_a_step_not_kept_or_a_run_without_checkpoints_is_one_clear_error():
    run = sp.train(sp.Config(**BASE, steps=20, checkpoints=[0, 20]), progress=False)
    with pytest.raises(sp.ConfigError, match=r"^checkpoint: step 25 is not one this run kept; it kept 2: 0, 20$"):
        run.checkpoint(25)
    with pytest.raises(sp.ConfigError, match="kept no checkpoints; train it with checkpoints"):
        sp.train(sp.Config(**BASE, steps=5), progress=False).checkpoint(5)
    for bad, message in ((dict(checkpoints=[0, 30]), "steps run from 0 .* to steps \\(20\\)"), (dict(checkpoints=[5, 2]), "increasing order"), (dict(checkpoints=0), "from 1 up")):
        with pytest.raises(sp.ConfigError, match=f"^checkpoints: .*{message}"):
            sp.Config(**BASE, steps=20, **bad)


def test_metrics_of_a_checkpoint_on_the_command_line(cli, tmp_path):
    code, _, err = cli("train", "--out", tmp_path / "r", "--features", "5", "--hidden", "2", "--sparsity", "0.9", "--steps", "40", "--checkpoints", "0,10,40", "--device", "cpu", "--quiet")
    assert code == 0, err
    code, out, err = cli("metrics", tmp_path / "r", "--checkpoint", "10", "--json")
    assert code == 0, err
    assert json.loads(out)["instances"][0]["loss"] == sp.load_run(tmp_path / "r").checkpoint(10).metrics["instances"][0]["loss"]
    code, out, err = cli("metrics", tmp_path / "r", "--checkpoint", "11")
    assert code == 2 and err.count("\n") == 1 and "step 11 is not one this run kept" in err


def test_the_plain_module_computes_the_run_and_its_loss_is_the_recorded_one():
    config = sp.Config(**BASE, steps=50, checkpoints=[20])
    run = sp.train(config, progress=False)
    x = sp.sample(config, steps=[20])[0]  # the batch step 20 trained on: (inst, batch, feat)
    for i in range(2):
        module = run[i].checkpoint(20).plain_module()
        assert {n: tuple(p.shape) for n, p in module.named_parameters()} == {"W": (6, 2), "b": (6,)}
        # the loss of step 20 was computed on the weights before its update: the checkpoint's
        assert module.loss(module(x[i]), x[i]).item() == pytest.approx(float(run.losses[20, i]), rel=1e-5)
    outputs = run[1].plain_module()(x[1])
    assert torch.allclose(outputs, run.forward(x)[1], atol=1e-6)
    assert torch.allclose(run[1].plain_module().encode(x[1]), run.encode(x)[1], atol=1e-6)
    with pytest.raises(sp.ConfigError, match=r"^plain_module: this run has 2 instances; take one first, run\[i\].plain_module\(\)$"):
        run.plain_module()


def test_the_loader_gives_the_evaluation_batch_or_the_training_set():
    run = sp.train(sp.Config(**BASE, steps=50, eval_batch_size=3000), progress=False)
    module = run[0].plain_module()
    batches = list(run[0].loader(batch_size=1000))
    assert len(batches) == 3 and all(x.shape == (1000, 6) and torch.equal(x, y) for x, y in batches)
    mean = sum(module.loss(module(x), y).item() for x, y in batches) / 3
    assert mean == pytest.approx(run.metrics["instances"][0]["loss"], rel=1e-5)
    first = [x for x, _ in run[0].loader(batch_size=1000, seed=3)]
    assert all(torch.equal(a, b) for a, b in zip(first, [x for x, _ in run[0].loader(batch_size=1000, seed=3)]))
    assert not torch.equal(first[0], next(iter(run[0].loader(batch_size=1000, seed=4)))[0])
    finite = sp.train(sp.Config(**BASE, steps=20, dataset_size=40), progress=False)
    rows = torch.cat([x for x, _ in finite[1].loader(batch_size=16, shuffle=False)])
    assert torch.equal(rows, finite.dataset.to_dense()[1])
    computing = sp.train(sp.Config(model="mlp", data="signed", target="abs", features=4, hidden=4, sparsity=[0.5], steps=10, device="cpu"), progress=False)
    x, y = next(iter(computing.loader(batch_size=64)))
    assert (x < 0).any() and torch.equal(y, x.abs())


def test_sgd_with_momentum_is_torchs_and_runs_where_an_engine_has_it():
    config = sp.Config(**BASE, steps=30, optimizer="sgd", momentum=0.9, lr=0.05, weight_decay=0)
    assert engine_of(config, "cpu") == "reference" and engine_of(config, "cuda") == "reference"
    with pytest.raises(sp.ConfigError, match="fused engine trains with Adam"):
        engine_of(config.model_copy(update={"engine": "fused"}), "cpu")
    run = sp.train(config, progress=False)
    # the same steps by hand: torch.optim.SGD on the plain loss of the batches training drew
    params = {k: v.requires_grad_() for k, v in init_params(config, torch.Generator().manual_seed(0)).items()}
    optimizer = torch.optim.SGD(params.values(), lr=0.05, momentum=0.9)
    importance = torch.tensor(config.importance)[:, None, :]
    for x in sp.sample(config, steps=range(30)):
        optimizer.zero_grad()
        (importance * (x - forward(params, x, config)) ** 2).mean(dim=(1, 2)).sum().backward()
        optimizer.step()
    assert torch.allclose(params["W"], run.params["W"], atol=1e-5)
    with pytest.raises(sp.ConfigError, match="^momentum: SGD's"):
        sp.Config(**BASE, momentum=0.9)


def test_an_instance_taken_alone_keeps_its_own_stream():
    # a one-instance config draws instance 0's stream; run[i] remembers it was instance i
    run = sp.train(sp.Config(**{**BASE, "sparsity": [0.9, 0.9, 0.9]}, steps=40, checkpoints=[20], eval_batch_size=2000), progress=False)
    for i in range(3):
        module = run[i].plain_module()
        batches = list(run[i].loader(batch_size=1000))
        assert sum(module.loss(module(x), y).item() for x, y in batches) / 2 == pytest.approx(run.metrics["instances"][i]["loss"], rel=1e-5)
        assert run[i].checkpoint(20).metrics == run.checkpoint(20)[i].metrics
    assert not torch.equal(next(iter(run[1].loader(shuffle=False)))[0], next(iter(run[2].loader(shuffle=False)))[0])


def test_early_stop_before_the_first_checkpoint_keeps_none_and_says_so(tmp_path):
    config = sp.Config(features=5, hidden=2, sparsity=[0.9], steps=3000, early_stop=0.9, checkpoints=[2500, 3000], device="cpu")
    run = sp.train(config, progress=False)
    assert len(run.losses) < 2500 and run.checkpoint_steps == [] and run.checkpoints["W"].shape == (0, 1, 5, 2)
    with pytest.raises(sp.ConfigError, match=r"^checkpoint: early stop ended this run at step \d+, before its first checkpoint \(2500\)$"):
        run.checkpoint(2500)
    back = sp.load_run(run.save(tmp_path / "r", figures=False))
    assert back.checkpoint_steps == [] and back.checkpoints["W"].shape == (0, 1, 5, 2)


def test_a_run_of_weights_set_by_hand_is_measured_and_refuses_what_it_cannot_hold():
    config = sp.Config(features=3, hidden=2, sparsity=[0.5], device="cpu")
    run = sp.Run.of(config, {"W": [[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]], "b": [[0.0, 0.0, 0.0]]})
    assert run.metrics["instances"][0]["represented"] == 2 and run.losses.shape == (0, 1)
    for bad, key in ((dict(checkpoints=[0]), "checkpoints"), (dict(dataset_size=10), "dataset_size")):
        with pytest.raises(sp.ConfigError, match=f"^{key}: a Run of weights set by hand"):
            sp.Run.of(sp.Config(features=3, hidden=2, sparsity=[0.5], **bad), run.params)
    with pytest.raises(sp.ConfigError, match="^params: this config's model needs"):
        sp.Run.of(config, {"W": torch.zeros(1, 3, 3), "b": torch.zeros(1, 3)})
