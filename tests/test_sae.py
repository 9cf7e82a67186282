"""Sparse autoencoders on activations with known features (saes.py, sae_*.py)."""

import json

import pytest
import torch

import superposition as sp
from superposition.saes.config import resolve_sae
from superposition.saes.relu import DECODER_INIT
from superposition.saes.training import _resample, step_loss
from superposition.saes import BANDWIDTH, SAE_KINDS, forward
from superposition.saes.jumprelu import _JumpReLU, _Step


@pytest.fixture(scope="module")
def pentagon(tmp_path_factory):
    """5 features in 2 dimensions at density 0.1: a pentagon, saved as a run."""
    config = sp.Config(features=5, hidden=2, sparsity=[0.9], importance_decay=1.0, steps=3000, lr=3e-3, device="cpu")
    run = sp.train(config, progress=False)
    assert run.metrics["instances"][0]["represented"] == 5
    run.save(tmp_path_factory.mktemp("runs") / "pentagon", figures=False)
    return run


def test_a_small_pentagon_sae_recovers_all_five_directions(pentagon):
    sae = sp.train_sae(pentagon, device="cpu", progress=False)  # the defaults: 5,000 steps
    (row,) = sae.metrics["instances"]
    assert row["recovered"] == 5 and row["mmcs"] > 0.97
    assert row["variance_explained"] > 0.8 and row["dead_fraction"] < 0.5
    # SAELens's synthetic scores: a latent per feature at |cos| ~ 1, and the 10 latents take
    # all five features; a live latent shares its feature's firing with its duplicates (F1
    # ~0.7 here), a dead one scores 0; the L1 penalty shrinks the reconstructions
    assert row["mcc"] > 0.97 and row["uniqueness"] == 0.5
    f1 = row["f1_per_latent"]
    assert f1.count(0.0) == round(10 * row["dead_fraction"]) and all(f > 0.6 for f in f1 if f > 0)
    assert row["f1"] == pytest.approx(sum(f1) / 10, abs=1e-5) and 0.3 < row["shrinkage"] < 1
    assert sae.config.latents == 10 and sae.config.settings == [pytest.approx(0.3 * float((pentagon.params["W"].norm(dim=-1) ** 2).mean()) / 2)]


def test_relu_weighs_its_l1_term_by_free_decoder_norms_and_folds_them_into_unit_rows():
    kind = SAE_KINDS["relu"]
    params = kind.init(2, 5, 7, torch.Generator().manual_seed(0))
    # SAELens's start: rows at norm 0.1, the encoder their transpose
    assert torch.allclose(params["W_dec"].norm(dim=-1), torch.full((2, 7), DECODER_INIT))
    assert torch.equal(params["W_enc"], params["W_dec"].transpose(1, 2))
    g = torch.Generator().manual_seed(1)
    params = {k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in params.items()}  # rows of unequal norms
    h, setting, dead = torch.randn(2, 64, 5, generator=g), torch.tensor([0.2, 0.5]), torch.zeros(2, 7, dtype=torch.bool)
    pre, a, h_hat = forward(kind, params, h, setting)
    norms = params["W_dec"].norm(dim=-1)
    assert (a > 0).any() and not torch.allclose(norms, torch.ones(2, 7))
    by_hand = setting * torch.einsum("ibl,il->ib", a, norms).mean(-1)
    assert torch.allclose(kind.sparsity_loss(params, pre, a, setting), by_hand)
    loss = step_loss(kind, params, h, setting, dead)[0]
    before = {k: v.clone() for k, v in params.items()}
    kind.after_step(params)  # the rows stay free while training
    assert all(torch.equal(params[k], before[k]) for k in params)
    kind.fold(params)  # and are unit at the end: the same SAE, the same loss, a its rows' lengths
    assert torch.allclose(params["W_dec"].norm(dim=-1), torch.ones(2, 7))
    _, a_folded, h_folded = forward(kind, params, h, setting)
    assert torch.allclose(h_folded, h_hat, atol=1e-6) and torch.allclose(a_folded, a * norms[:, None, :], atol=1e-6)
    assert torch.allclose(step_loss(kind, params, h, setting, dead)[0], loss, atol=1e-6)


def test_a_trained_relu_sae_has_unit_decoder_rows_on_every_engine():
    keys = {"data": "dictionary", "features": 8, "dims": 4, "latents": 16, "steps": 30, "batch_size": 64, "resample_every": 10, "device": "cpu"}
    for engine in ("reference", "fused"):
        params = sp.train_sae(progress=False, engine=engine, **keys).params
        assert torch.allclose(params["W_dec"].norm(dim=-1), torch.ones(1, 16), atol=1e-6), engine


def test_topk_keeps_exactly_k_latents_per_instance():
    kind = SAE_KINDS["topk"]
    params = kind.init(2, 4, 16, torch.Generator().manual_seed(0))
    params["b_enc"] += 10.0  # every pre-activation positive: TopK alone decides
    h = torch.rand(2, 50, 4)
    _, a, _ = forward(kind, params, h, torch.tensor([1.0, 3.0]))
    assert ((a > 0).sum(-1) == torch.tensor([1, 3])[:, None]).all()
    pre = kind.pre(params, h)
    assert torch.equal(a[1].topk(3, -1).indices.sort(-1).values, pre[1].topk(3, -1).indices.sort(-1).values)


def test_auxk_is_the_normalised_mse_of_the_residual():
    # Gao et al.: AuxK's squared error over the residual's variance about its batch mean, so
    # residuals 10x larger (and what rebuilds them) give the same term; plain MSE would give 100x
    kind = SAE_KINDS["topk"]
    params = kind.init(1, 4, 8, torch.Generator().manual_seed(0))
    residual = torch.randn(1, 64, 4, generator=torch.Generator().manual_seed(1))
    pre = torch.randn(1, 64, 8, generator=torch.Generator().manual_seed(2))
    dead = torch.tensor([[True] * 3 + [False] * 5])
    small = kind.aux_loss(params, residual, pre, dead)
    large = kind.aux_loss(params, 10 * residual, 10 * pre, dead)
    assert float(small) > 0 and torch.allclose(large, small, rtol=1e-5)
    # by hand: the two largest dead pre-activations (k_aux = d_in / 2) rebuild the residual
    a = torch.where(pre[..., :3] >= pre[..., :3].topk(2, -1).values[..., -1:], pre[..., :3].relu(), 0.0)
    error = ((residual - a @ params["W_dec"][0, :3]) ** 2).mean()
    assert float(small) == pytest.approx(float(error / residual.var(1, unbiased=False).mean()) / 32, rel=1e-5)
    assert float(kind.aux_loss(params, residual, pre, dead & False)) == 0.0


@pytest.mark.parametrize("settings", [[1, 3], [1, 2, 3, 4]])  # each instance's rows in parallel chunks, and whole
def test_auxk_agrees_across_engines(settings, monkeypatch):
    # latents count as dead after 3 steps, so AuxK (and its pass for the residual's variance)
    # runs from the fourth step on; without resampling nothing revives them
    from superposition.saes import training

    monkeypatch.setattr(training, "DEAD_STEPS", 3)
    reference = _trained("reference", "topk", settings, steps=30, resample=False)
    fused = _trained("fused", "topk", settings, steps=30, resample=False)
    _agree(fused, reference, "topk", settings, 1024, 1e-4)
    monkeypatch.setattr(training, "DEAD_STEPS", 10**6)
    unaided = _trained("reference", "topk", settings, steps=30, resample=False)
    assert not torch.allclose(unaided.params["W_dec"], reference.params["W_dec"], atol=1e-3)


@pytest.mark.parametrize(("instances", "settings"), [(1, [0.3]), (2, [0.3, 2.0])])  # one instance's rows in parallel parts, and whole instances
def test_batchtopk_agrees_across_engines_its_cut_over_the_whole_batch_and_auxk_on(instances, settings, monkeypatch):
    from superposition.saes import training

    monkeypatch.setattr(training, "DEAD_STEPS", 3)
    keys = {"instances": instances, "steps": 40, "resample": False, "batch_size": 256}
    reference = _trained("reference", "batchtopk", settings, **keys)
    fused = _trained("fused", "batchtopk", settings, **keys)
    _agree(fused, reference, "batchtopk", settings, 256, 1e-4)
    monkeypatch.setattr(training, "DEAD_STEPS", 10**6)
    unaided = _trained("fused", "batchtopk", settings, **keys)
    assert not torch.allclose(unaided.params["W_dec"], fused.params["W_dec"], atol=1e-3)  # AuxK ran


def test_jumprelu_estimators_match_the_derivatives_of_their_expectations():
    # pre ~ U[0, 1]: d/dθ E[H(pre − θ)] = −1 and d/dθ E[pre H(pre − θ)] = −θ; the
    # straight-through estimators are unbiased for them, up to the kernel's width
    pre = torch.rand(1, 400_000, 3, generator=torch.Generator().manual_seed(0))
    theta = torch.tensor([[0.2, 0.5, 0.8]], requires_grad=True)
    _Step.apply(pre, theta).mean(1).sum().backward()
    assert theta.grad == pytest.approx(torch.full((1, 3), -1.0), abs=0.1)
    theta.grad = None
    _JumpReLU.apply(pre, theta).mean(1).sum().backward()
    assert theta.grad == pytest.approx(-theta.detach(), abs=0.08)
    # and the gradient to pre passes exactly where the latent fires
    pre = pre[:, :10].clone().requires_grad_()
    _JumpReLU.apply(pre, theta.detach()).sum().backward()
    assert torch.equal(pre.grad, (pre.detach() > theta.detach()[:, None, :]).float())
    assert BANDWIDTH < 0.05


def test_the_jumprelu_threshold_moves_the_way_the_l0_penalty_asks(pentagon):
    # the penalty's gradient raises every threshold with pre-activations near it, in
    # proportion to the coefficient, and leaves the others alone
    kind = SAE_KINDS["jumprelu"]
    params = kind.init(1, 2, 4, torch.Generator().manual_seed(0))
    params["threshold"] = torch.tensor([[0.2, 0.4, 0.6, 5.0]], requires_grad=True)
    pre = torch.rand(1, 200_000, 4, generator=torch.Generator().manual_seed(1))
    kind.sparsity_loss(params, pre, None, torch.tensor([0.5])).sum().backward()
    assert params["threshold"].grad == pytest.approx(torch.tensor([[-0.5, -0.5, -0.5, 0.0]]), abs=0.05)
    # trained from the same start on the same data, a strong penalty fires fewer latents
    sae = sp.train_sae(pentagon, kind="jumprelu", l0=[0.0, 0.5], steps=300, device="cpu", progress=False)
    rows = sae.metrics["instances"]
    assert rows[1]["l0"] < 0.8 * rows[0]["l0"] and rows[1]["l0_coefficient"] == 0.5


def test_resampling_revives_dead_latents_on_a_constructed_case():
    from types import SimpleNamespace

    kind = SAE_KINDS["relu"]
    params = {k: v.requires_grad_() for k, v in kind.init(1, 3, 6, torch.Generator().manual_seed(0)).items()}
    optimizer = torch.optim.Adam(list(params.values()), lr=1e-3)
    # a pool of 64 rows in 4 batches of 16; only rows 40-47 have an input, each a different
    # direction near e0: latents that do not point along them never fire
    pool = torch.zeros(1, 64, 3)
    pool[0, 40:48, 0] = 1.0
    pool[0, 40:48, 1] = torch.arange(8) / 20
    source = SimpleNamespace(batch=lambda seed, rows, chunk: pool[:, 16 * chunk : 16 * chunk + rows])
    config = resolve_sae({"data": "dictionary", "features": 6, "dims": 3, "latents": 6, "l1": 0.0, "eval_batch_size": 16, "resample_pool": 64})
    with torch.no_grad():
        params["b_enc"][0, 3:] = -100.0  # latents 3-5 dead
    loss = forward(kind, params, pool, torch.zeros(1))[2].sum()
    loss.backward()
    optimizer.step()  # Adam's moments now exist
    dead = torch.zeros(1, 6, dtype=torch.bool)
    dead[0, 3:] = True
    moments = {k: (optimizer.state[p]["exp_avg"], optimizer.state[p]["exp_avg_sq"]) for k, p in params.items()}
    stepper = SimpleNamespace(params=params, moments=lambda: moments, setting=torch.zeros(1))
    with torch.no_grad():
        live = params["W_dec"][0, :3].norm(dim=-1).mean()  # ReLU's rows are free: ~0.1 here
        count = _resample(config, source, stepper, kind, dead, 1)
        assert count.tolist() == [3]
        # each dead latent now points along a different input with error (seen from b_dec),
        # at the live rows' mean norm, drawn without replacement, fires on it, and starts Adam afresh
        along = torch.nn.functional.normalize(pool[0, 40:48] - params["b_dec"][0], dim=-1)
        assert torch.allclose(params["W_dec"][0, 3:].norm(dim=-1), live.expand(3)) and not torch.allclose(live, torch.tensor(1.0))
        matches = (params["W_dec"][0, 3:] @ along.T / live).isclose(torch.tensor(1.0), atol=1e-6)
        assert matches.sum(1).tolist() == [1, 1, 1] and matches.any(0).sum() == 3
        assert (params["b_enc"][0, 3:] == 0).all()
        a = forward(kind, params, pool, torch.zeros(1))[1]
        assert (a[0, 40:48, 3:] > 0).any(0).all()
        for p in (params["W_dec"], params["b_enc"]):
            assert (optimizer.state[p]["exp_avg"][0, 3:] == 0).all() and (optimizer.state[p]["exp_avg_sq"][0, 3:] == 0).all()
        assert (optimizer.state[params["W_enc"]]["exp_avg"][0, :, 3:] == 0).all()
        # with fewer rows that have an error than dead latents, only that many are resampled
        pool[0, 42:48] = 0.0
        params["b_dec"][0] = 0.0  # an empty row now reconstructs exactly
        params["b_enc"][0] = torch.tensor([0.0] * 3 + [-100.0] * 3)
        assert _resample(config, source, stepper, kind, dead, 2).tolist() == [2]
        assert (optimizer.state[params["W_dec"]]["exp_avg"][0, :3] != 0).any()  # live latents keep theirs


def test_settings_are_batched_setting_major_on_the_same_data(pentagon):
    sae = sp.train_sae(pentagon, l1=[0.02, 0.02, 0.3], steps=200, device="cpu", progress=False)
    W = sae.params["W_dec"]
    assert len(sae) == 3 and torch.equal(W[0], W[1]) and not torch.equal(W[0], W[2])
    assert [r["l1_coefficient"] for r in sae.metrics["instances"]] == [0.02, 0.02, 0.3]
    again = sp.train_sae(pentagon, l1=[0.02, 0.02, 0.3], steps=200, device="cpu", progress=False)
    assert all(torch.equal(sae.params[k], again.params[k]) for k in sae.params)  # same seed, same weights


def test_a_dictionary_source_has_independent_instances_and_is_saved_whole(tmp_path):
    sae = sp.train_sae(data="dictionary", features=12, dims=6, density=0.05, instances=2, kind="topk", steps=300, device="cpu", progress=False)
    assert sae.features.shape == (2, 12, 6) and not torch.allclose(sae.features[0], sae.features[1])
    assert sae.config.settings == [1] and sae.config.latents == 24  # round(0.05 * 12) = 1
    sae.save(tmp_path / "dict")
    loaded = sp.load_sae(tmp_path / "dict")
    assert all(torch.equal(loaded.params[k], sae.params[k]) for k in sae.params)
    assert torch.equal(loaded.features, sae.features) and loaded.metrics == json.loads(json.dumps(sae.metrics))
    assert loaded.encode(torch.rand(2, 7, 6)).shape == (2, 7, 24)


def test_the_command_writes_an_sae_directory_that_names_its_source(cli, pentagon, tmp_path):
    code, out, err = cli("sae", pentagon.path, "--out", tmp_path / "s", "--kind", "topk", "--k", "1,2", "--steps", "200", "--device", "cpu", "--quiet")
    assert code == 0, err
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    marker = json.loads((pentagon.path / "superposition.json").read_text())
    assert config["run"] == str(pentagon.path.resolve()) and config["run_config_sha256"] == marker["sha256"]["config.json"]
    assert config["settings"] == [1, 2] and config["kind"] == "topk" and "package_version" in config
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert names == sorted(
        ["config.json", "sae.safetensors", "metrics.json", "history.safetensors", "superposition.json",
         "sae-topk-10-on-5x2-directions.png", "sae-topk-10-on-5x2-penalty.png"]
    )  # fmt: skip
    sae = sp.load_sae(tmp_path / "s")
    assert sae.params["W_enc"].shape == (2, 2, 10) and sae.params["W_dec"].shape == (2, 10, 2)
    assert sae.losses.shape == (200, 2)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--latents", "0"], "latents:"),
        (["--kind", "topk", "--k", "11"], "k: 11 must be from 1 to latents (10)"),
        (["--l1", "-0.1"], "l1: -0.1 is negative"),
        (["--kind", "gated"], "kind: unknown SAE kind 'gated'"),
        (["--kind", "topk", "--l1", "0.1"], "l1: the topk SAE takes --k, not --l1"),
        (["--features", "5"], "features: belongs to --data dictionary"),
        (["--latents", "100000000"], "latents: these SAEs need about"),  # refused before allocating
        (["--kind", "topk", "--sparsity-warmup", "0.1"], "sparsity_warmup: the topk SAE's k is not a penalty to warm up"),
        (["--log-threshold"], "log_threshold: the relu SAE has no trained threshold"),
        (["--beta1", "1"], "beta1:"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(cli, pentagon, tmp_path, args, message):
    code, out, err = cli("sae", pentagon.path, "--out", tmp_path / "s", "--steps", "10", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists() and list(tmp_path.iterdir()) == []


def test_training_that_diverges_writes_nothing(cli, pentagon, tmp_path):
    code, _, err = cli("sae", pentagon.path, "--out", tmp_path / "s", "--lr", "1e38", "--steps", "20", "--device", "cpu", "--quiet")
    assert code == 1 and err.startswith("error: training diverged: non-finite") and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_a_directory_that_is_not_a_run_is_refused(cli, tmp_path):
    (tmp_path / "notarun").mkdir()
    code, _, err = cli("sae", tmp_path / "notarun", "--out", tmp_path / "s")
    assert code == 2 and "is not a run directory" in err and not (tmp_path / "s").exists()
    code, _, err = cli("sae", "--data", "dictionary", "--dims", "4", "--out", tmp_path / "s")
    assert code == 2 and "--data dictionary needs --features N and --dims D" in err


def _trained(engine, kind, setting, **keys):
    from superposition.saes.training import train

    config = resolve_sae({"data": "dictionary", "features": 12, "dims": 4, "density": 0.1, "instances": 2,
                          "kind": kind, SAE_KINDS[kind].setting: setting, "device": "cpu", "engine": engine, **keys})  # fmt: skip
    return train(config)


@pytest.mark.parametrize(
    ("kind", "setting", "steps", "recipe"),
    [
        ("relu", [0.01, 0.05], 200, {"sparsity_warmup": 0.3, "beta1": 0.5}),
        ("jumprelu", [0.005, 0.02], 200, {"lr": 1e-3, "beta1": 0.0, "sparsity_warmup": 0.1, "log_threshold": True}),  # the paper's recipe
        ("jumprelu", [0.005, 0.02], 200, {"lr": 1e-3}),  # θ itself (at its default 3e-3 a threshold flip moves weights ~1e-4 in 200 steps)
        ("topk", [1, 3], 30, {}),
        ("batchtopk", [0.5, 2.0], 30, {}),
    ],
    ids=["relu-warmup", "jumprelu-recipe", "jumprelu-plain", "topk", "batchtopk"],
)
@pytest.mark.parametrize("batch_size", [1024, 16])  # the factored encoder (2 x 12 < 1024) and the dense one
def test_the_compiled_engine_agrees_with_autograd(kind, setting, steps, recipe, batch_size, monkeypatch):
    # TopK's selection amplifies rounding once a near-tie flips, so it is compared earlier;
    # its latents die early here, so the resampling both engines share runs too
    from superposition.kernels import sae_fused

    monkeypatch.setattr(sae_fused, "COLUMNS_WIDTH", 0)  # row by row: the batch-major path is tested below
    reference = _trained("reference", kind, setting, steps=steps, batch_size=batch_size, **recipe)
    fused = _trained("fused", kind, setting, steps=steps, batch_size=batch_size, **recipe)
    tolerance = 1e-4
    _agree(fused, reference, kind, setting, batch_size, tolerance)
    assert kind != "topk" or int(reference.resampled.sum()) > 0


@pytest.mark.parametrize(("kind", "setting", "recipe"), [("relu", [0.01, 0.05], {"sparsity_warmup": 0.3}), ("jumprelu", [0.005, 0.02], {"lr": 1e-3, "log_threshold": True, "beta1": 0.0})])
@pytest.mark.parametrize("batch_size", [1024, 16])
def test_the_batch_major_path_agrees_with_autograd(kind, setting, recipe, batch_size):
    from superposition.kernels.sae_fused import batch_major

    assert batch_major(kind, 4, 12) and not batch_major(kind, 32, 64) and not batch_major("topk", 4, 12)
    reference = _trained("reference", kind, setting, steps=200, batch_size=batch_size, latents=12, **recipe)
    fused = _trained("fused", kind, setting, steps=200, batch_size=batch_size, latents=12, **recipe)
    _agree(fused, reference, kind, setting, batch_size, 1e-4)


def _agree(fused, reference, kind, setting, batch_size, tolerance):
    for name, value in reference.params.items():
        assert torch.allclose(fused.params[name], value, atol=tolerance), name
    # JumpReLU's loss steps by l0 / batch where one row's latent sits on its threshold
    # within rounding and fires in one engine only
    jump = max(setting) / batch_size if kind == "jumprelu" else 0.0
    assert torch.allclose(fused.history, reference.history, atol=1e-5 + jump)
    assert torch.equal(fused.resampled, reference.resampled)


def test_a_single_instance_splits_its_rows_and_agrees(pentagon):
    # fewer instances than sae_fused.ROW_UNITS: each one's rows run in parallel parts
    reference = sp.train_sae(pentagon, steps=200, device="cpu", engine="reference", progress=False)
    fused = sp.train_sae(pentagon, steps=200, device="cpu", engine="fused", progress=False)
    for name, value in reference.params.items():
        assert torch.allclose(fused.params[name], value, atol=1e-4), name
    assert reference.metrics["engine"] == "reference" and fused.metrics["engine"] == "fused"


@pytest.mark.parametrize("columns_width", [0, 1024])  # row by row, and batch-major
def test_the_compiled_engine_gives_the_same_weights_whatever_the_threads(columns_width, monkeypatch):
    import numba

    from superposition.kernels import sae_fused

    monkeypatch.setattr(sae_fused, "COLUMNS_WIDTH", columns_width)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _trained("fused", "relu", [0.01, 0.05], steps=50)
        numba.set_num_threads(before)
        many = _trained("fused", "relu", [0.01, 0.05], steps=50)
    finally:
        numba.set_num_threads(before)
    assert all(torch.equal(one.params[k], many.params[k]) for k in one.params)


def test_a_toml_file_takes_the_same_keys_and_flags_override_it(cli, pentagon, tmp_path):
    spec = tmp_path / "sae.toml"
    spec.write_text('kind = "topk"\nk = [1, 2]\nsteps = 50\nbatch-size = 256\ndevice = "cpu"\n')
    code, _, err = cli("sae", pentagon.path, "--config", spec, "--k", "2", "--out", tmp_path / "s", "--quiet", "--no-figures")
    assert code == 0, err
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert (config["kind"], config["settings"], config["steps"], config["batch_size"]) == ("topk", [2], 50, 256)
    spec.write_text('kind = "topk"\nl2 = 3\n')
    code, _, err = cli("sae", pentagon.path, "--config", spec, "--out", tmp_path / "t")
    assert code == 2 and "l2: unknown key" in err and not (tmp_path / "t").exists()


def test_a_hidden_relu_model_is_read_before_its_relu(tmp_path):
    # in x W every feature is one direction; after ReLU(x W) it is not
    from superposition.saes.sources import RunSource

    run = sp.train(sp.Config(features=6, hidden=3, sparsity=[0.9], hidden_activation="relu", steps=300, device="cpu"), progress=False)
    source = RunSource(run.config, run.params["W"], "cpu")
    h = source.batch(0, 4096, 0)
    assert (h < 0).any() and torch.equal(source.features, run.params["W"])
    sae = sp.train_sae(run, steps=50, device="cpu", progress=False)
    assert sae.features.shape == (1, 6, 3)


def test_a_report_shows_the_scores_and_figures(cli, pentagon, tmp_path):
    sae = sp.train_sae(pentagon, l1=[0.05, 0.2], steps=100, device="cpu", progress=False)
    sae.save(tmp_path / "s")
    code, out, err = cli("report", tmp_path / "s")
    assert code == 0, err
    page = (tmp_path / "s" / "report.html").read_text()
    assert page.count("<img") == 2 and "mmcs" in page and "l1_coefficient" in page  # directions and penalty


def test_the_resampling_schedule_is_the_config_s_and_every_check_is_counted(cli, tmp_path):
    # TopK with k = 1 and 4 latents per feature: many never win a row, and die
    keys = {"data": "dictionary", "features": 12, "dims": 4, "density": 0.1, "latents": 48, "kind": "topk", "k": 1,
            "steps": 100, "resample_every": 20, "device": "cpu"}  # fmt: skip
    early = sp.train_sae(**keys, resample_until=0.2, progress=False)
    late = sp.train_sae(**keys, resample_until=1.0, progress=False)
    assert early.metrics["checks"] == late.metrics["checks"] == [20, 40, 60, 80, 100]
    (e,), (l,) = early.metrics["instances"], late.metrics["instances"]
    # the same start: the first check is the same, then only `late` goes on resampling
    assert e["dead_at_checks"][0] == l["dead_at_checks"][0] > 0 and len(l["dead_at_checks"]) == 5
    assert e["resampled"] == l["dead_at_checks"][0] and l["resampled"] == sum(l["dead_at_checks"]) > e["resampled"]
    off = sp.train_sae(**keys, resample=False, progress=False)
    assert off.metrics["instances"][0]["resampled"] == 0 and len(off.metrics["instances"][0]["dead_at_checks"]) == 5
    code, _, err = cli("sae", "--data", "dictionary", "--features", "12", "--dims", "4", "--resample-every", "7",
                       "--resample-until", "0.3", "--resample-pool", "5000", "--steps", "20", "--out", tmp_path / "s", "--quiet", "--no-figures")  # fmt: skip
    assert code == 0, err
    config = json.loads((tmp_path / "s" / "config.json").read_text())
    assert (config["resample_every"], config["resample_until"], config["resample_pool"]) == (7, 0.3, 5000)
    code, _, err = cli("sae", "--data", "dictionary", "--features", "12", "--dims", "4", "--resample-until", "0", "--out", tmp_path / "t")
    assert code == 2 and "resample_until" in err and not (tmp_path / "t").exists()


@pytest.mark.parametrize("engine", ["reference", "fused"])
def test_log_threshold_moves_theta_by_a_factor_and_the_warmup_ramps_the_penalty(engine):
    import math

    from superposition.saes import THRESHOLD_INIT
    from superposition.saes.training import warmed

    # Adam's first step with β1 = 0 is lr x sign(g) on log θ: θ grows or shrinks by e^±lr
    sae = _trained(engine, "jumprelu", [0.02], steps=1, lr=0.1, beta1=0.0, log_threshold=True, resample=False)
    ratio = sae.params["threshold"] / THRESHOLD_INIT
    moved = ~torch.isclose(ratio, torch.tensor(1.0))
    assert moved.any()
    factors = torch.tensor([math.exp(-0.1), math.exp(0.1)])
    assert torch.isclose(ratio[moved][:, None], factors, rtol=1e-5).any(-1).all()
    config = resolve_sae({"data": "dictionary", "features": 4, "dims": 2, "l1": 0.1, "steps": 100, "sparsity_warmup": 0.2})
    assert [warmed(config, s) for s in (0, 9, 19, 20, 99)] == [0.05, 0.5, 1.0, 1.0, 1.0]
