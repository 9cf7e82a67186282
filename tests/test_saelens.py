"""SAELens's synthetic models: one SAELens wrote (tests/fixtures/saelens-synthetic, made by
benchmarks/saelens_fixture.py) read as an SAE source, drawn as SAELens draws it; a toy run
written as one and read back. (That SAELens loads ours: benchmarks/saelens_interop_check.py,
in the benchmark venv.)"""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import superposition as sp
from superposition.saes import saelens
from superposition.saes.training import source_of

FIXTURE = Path(__file__).parent / "fixtures" / "saelens-synthetic"
ROWS = 200_000


def test_a_model_saelens_wrote_is_drawn_as_saelens_draws_it():
    model = saelens.read(FIXTURE)
    reference = load_file(FIXTURE / "saelens_reference.safetensors")
    weights = load_file(FIXTURE / "synthetic_model.safetensors")
    assert torch.equal(model.features, weights["feature_vectors"]) and torch.equal(model.bias, weights["bias"])
    assert model.parts.parents == [-1, -1, 0, 0, 0, 1, 1, 1] and model.parts.exclusive == [0, 1]
    # its magnitudes as SAELens regenerates them on load: linear means, folded-normal spreads under its seed
    assert torch.equal(model.parts.mean, reference["mean_firing_magnitudes"]) and torch.equal(model.parts.std, reference["std_firing_magnitudes"])
    # the trees, where no magnitude is 0 (a firing feature's ReLU(μ + σN) can be, in SAELens too)
    exact = saelens.SAELensSource(replace(model, parts=replace(model.parts, std=torch.zeros(24))), "cpu")
    on = exact.inputs(5, 50_000, 0)[0] != 0
    for child, parent in enumerate(model.parts.parents):
        if parent >= 0:
            assert not (on[:, child] & ~on[:, parent]).any() and on[:, child].any()
    assert on[:, 2:5].sum(1).max() == 1 and on[:, 5:8].sum(1).max() == 1
    source = saelens.SAELensSource(model, "cpu")
    x = torch.cat([source.inputs(5, ROWS // 4, step) for step in range(4)], 1)[0]
    on = x != 0
    # every feature's rate and the activations' moments against SAELens's own 200,000 samples
    rate, theirs = on.double().mean(0), reference["firing_rate"].double()
    se = (2 * theirs * (1 - theirs) / ROWS).sqrt()
    assert ((rate - theirs).abs() < 4 * se + 1e-4).all(), (rate - theirs) / se
    h = source.activations(x[None])[0].double()
    se_mean = (2 * h.var(0) / ROWS).sqrt()
    assert ((h.mean(0) - reference["hidden_mean"]).abs() < 4 * se_mean).all()
    se_square = (2 * (h**2).var(0) / ROWS).sqrt()
    assert ((((h**2).mean(0)) - reference["hidden_square"]).abs() < 4 * se_square).all()


def test_an_sae_trains_on_it_and_refuses_a_changed_model(tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(FIXTURE, copy)
    sae = sp.train_sae(data=str(copy), kind="batchtopk", k=3.0, steps=100, engine="reference")
    assert (sae.config.source, sae.config.features, sae.config.dims, sae.config.source_instances) == ("saelens", 24, 8, 1)
    row = sae.metrics["instances"][0]
    assert "absorption" in row and len(row["absorption_per_child"]) == 6
    assert torch.equal(sae.features[0], load_file(copy / "synthetic_model.safetensors")["feature_vectors"])
    loaded = sp.load_sae(sae.save(tmp_path / "sae", figures=False))
    assert loaded.config == sae.config
    weights = load_file(copy / "synthetic_model.safetensors")
    weights["bias"] = weights["bias"] + 1
    save_file(weights, copy / "synthetic_model.safetensors")
    with pytest.raises(sp.ConfigError, match="is not the SAELens model these SAEs were trained on"):
        source_of(sae.config)
    with pytest.raises(sp.ConfigError, match="^density: belongs to --data dictionary, not to a saelens source$"):
        sp.train_sae(data=str(copy), density=0.1)


def _untangled(directory: Path) -> Path:
    """The fixture without its trees and correlation, at constant magnitudes (linear 2 to 1
    across its features): a model the numba kernels draw."""
    shutil.copytree(FIXTURE, directory)
    (directory / "hierarchy.json").unlink()
    config = json.loads((directory / "synthetic_model_config.json").read_text())
    config |= {"hierarchy": None, "correlation": None, "std_firing_magnitudes": {"value": 0.0, "generator_name": "constant"}}
    (directory / "synthetic_model_config.json").write_text(json.dumps(config))
    weights = load_file(directory / "synthetic_model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("correlation")}, directory / "synthetic_model.safetensors")
    return directory


@pytest.mark.parametrize(("kind", "setting"), [("batchtopk", {"k": 2.5}), ("relu", {})])
def test_a_model_the_kernels_draw_trains_on_the_fused_engine_as_on_the_reference(tmp_path, kind, setting):
    from superposition.data.generator import CONSTANT

    model = _untangled(tmp_path / "model")
    source = source_of(sp.train_sae(data=str(model), steps=1, device="cpu", engine="reference", progress=False).config)
    draw = source.kernel_draw()
    assert draw.code == CONSTANT and draw.magnitudes[0] == 2.0 and draw.magnitudes[-1] == 1.0 and float(source.bias.abs().min()) > 0
    keys = {"data": str(model), "kind": kind, "steps": 80, "device": "cpu", "resample": False, "progress": False, **setting}
    fused, reference = sp.train_sae(engine="fused", **keys), sp.train_sae(engine="reference", **keys)
    assert (fused.metrics["engine"], reference.metrics["engine"]) == ("fused", "reference")
    for name, value in reference.params.items():
        assert torch.allclose(fused.params[name], value, atol=1e-4), name
    # a model with trees, a copula or drawn magnitudes is drawn by torch only
    with pytest.raises(sp.ConfigError, match="fused engine's kernels have no draw of synthetic data"):
        sp.train_sae(data=str(FIXTURE), engine="fused", steps=1, device="cpu", progress=False)


def test_a_toy_run_written_as_a_saelens_model_reads_back(tmp_path, cli):
    keys = dict(features=12, hidden=4, data="synthetic", sparsity=[0.8], roots=2, branching=2, exclusive=True, compensate=True,
                magnitude="normal", magnitude_mean=2.0, magnitude_mean_end=1.0, steps=50)  # fmt: skip
    run = sp.train(sp.Config(**keys))
    run.save(tmp_path / "run")
    code, out, err = cli("export", "saelens", tmp_path / "run", "--out", tmp_path / "model")
    assert code == 0, err
    model = saelens.read(tmp_path / "model")
    assert torch.equal(model.features, run.params["W"][0])
    assert model.parts.parents == [-1, -1, 0, 0, 1, 1] and model.parts.exclusive == [0, 1]
    own = model.data.feature_probability[0]
    assert own[:2] == pytest.approx([0.2, 0.2]) and own[2] == pytest.approx(min(1.0, 2 * (1 + 1)))  # compensated, clamped at 1
    assert torch.equal(model.parts.mean, torch.linspace(2.0, 1.0, 12)) and model.parts.factor is None
    config = json.loads((tmp_path / "model" / "synthetic_model_config.json").read_text())
    assert config["mean_firing_magnitudes"] == {"start": 2.0, "end": 1.0, "generator_name": "linear"}
    # the paper's data: U[0, 1] has no SAELens form, and the command says what it wrote instead
    sp.train(sp.Config(features=6, hidden=2, sparsity=[0.9], steps=10)).save(tmp_path / "paper")
    code, out, err = cli("export", "saelens", tmp_path / "paper", "--out", tmp_path / "paper-model")
    assert code == 0 and "note: magnitudes: SAELens has no U[0, 1]" in out
    # a copula over features of unequal probabilities: SAELens would draw it at its config's
    sp.train(sp.Config(**{**keys, "correlation_rank": 2, "steps": 5})).save(tmp_path / "copula")
    code, out, err = cli("export", "saelens", tmp_path / "copula", "--out", tmp_path / "bad")
    assert code == 2 and "correlation_rank: SAELens draws correlated firing at the probabilities its config regenerates" in err
    code, out, err = cli("export", "saelens", tmp_path / "paper", "--out", tmp_path / "bad", "--instance", "3")
    assert code == 2 and "instance: 3 is not one of the run's instances (0 to 0)" in err and not (tmp_path / "bad").exists()
