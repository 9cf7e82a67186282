"""`superposition export saelens SAE_DIR` and `export spd RUN`: the files other tools load,
read back here as their loaders read them (SAELens's own load is checked in the benchmark
venv: benchmarks/saelens_interop_check.py)."""

import json

import pytest
import torch
from safetensors.torch import load

import superposition as sp


def saelens_encode(directory, h):
    """SAELens's inference encoders (sae_lens/saes/{standard,topk,jumprelu}_sae.py) on a saved
    directory: pre = (h - b_dec) W_enc + b_enc, then the architecture's activation."""
    config = json.loads((directory / "cfg.json").read_text())
    w = load((directory / "sae_weights.safetensors").read_bytes())
    assert config["metadata"]["sae_lens_version"] >= "6" and config["dtype"] == "float32"
    assert {k: tuple(v.shape) for k, v in w.items() if k != "threshold"} == {
        "W_enc": (config["d_in"], config["d_sae"]), "b_enc": (config["d_sae"],), "W_dec": (config["d_sae"], config["d_in"]), "b_dec": (config["d_in"],)
    }  # fmt: skip
    pre = (h - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    if config["architecture"] == "standard":
        return torch.relu(pre)
    if config["architecture"] == "jumprelu":
        return torch.relu(pre) * (pre > w["threshold"])
    assert config["architecture"] == "topk" and not config["rescale_acts_by_decoder_norm"]
    values, index = pre.topk(config["k"], dim=-1)
    return torch.zeros_like(pre).scatter(-1, index, torch.relu(values))


@pytest.mark.parametrize(("kind", "setting", "architecture"), [("relu", {"l1": [0.01, 0.05]}, "standard"), ("topk", {"k": [1, 2]}, "topk"), ("jumprelu", {"l0": [0.01, 0.02]}, "jumprelu"), ("batchtopk", {"k": [1.5, 2]}, "jumprelu")])
def test_an_sae_exported_for_saelens_encodes_as_ours(cli, tmp_path, kind, setting, architecture):
    sae = sp.train_sae(data="dictionary", features=12, dims=6, density=0.1, kind=kind, steps=200, device="cpu", **setting)
    sae.save(tmp_path / "sae", figures=False)
    code, out, err = cli("export", "saelens", tmp_path / "sae", "--instance", "1", "--out", tmp_path / "lens")
    assert code == 0, err
    assert f"({architecture})" in out
    config = json.loads((tmp_path / "lens" / "cfg.json").read_text())
    assert config["architecture"] == architecture and config["d_in"] == 6 and config["d_sae"] == sae.config.latents
    assert len(sae) == 2
    h = torch.rand(2, 64, 6) * (torch.rand(2, 64, 6) < 0.3)
    ours, theirs = sae.encode(h)[1], saelens_encode(tmp_path / "lens", h[1])
    assert ours.count_nonzero() > 0 and torch.allclose(ours, theirs, atol=1e-6)
    decoded = theirs @ load((tmp_path / "lens" / "sae_weights.safetensors").read_bytes())["W_dec"]
    assert torch.allclose(decoded + sae.params["b_dec"][1], sae.forward(h)[1], atol=1e-5)


def test_what_saelens_cannot_load_is_refused_and_nothing_is_written(cli, tmp_path):
    sae = sp.train_sae(data="dictionary", features=8, dims=4, kind="relu", steps=20, device="cpu")
    sae.save(tmp_path / "sae", figures=False)
    code, _, err = cli("export", "saelens", tmp_path / "sae", "--instance", "5", "--out", tmp_path / "x")
    assert code == 2 and "instance: 5 is not one of the SAEs" in err and not (tmp_path / "x").exists()
    (tmp_path / "empty").mkdir()
    code, _, err = cli("export", "saelens", tmp_path / "empty", "--out", tmp_path / "x")
    assert code == 2 and err.count("\n") == 1 and "not a run or an SAE directory of ours" in err and not (tmp_path / "x").exists()


def tms_forward(directory, x):
    """SPD's TMSModel (spd/experiments/tms/models.py) from its checkpoint: linear2 is tied to
    linear1 on load, then ReLU(linear2(hidden_layers(linear1(x))))."""
    state = torch.load(directory / "tms.pth", weights_only=True, map_location="cpu")
    config = json.loads((directory / "tms_train_config.yaml").read_text())  # JSON is YAML
    model = config["tms_model_config"]
    hidden = x @ state["linear1.weight"].T
    for i in range(model["n_hidden_layers"]):
        hidden = hidden @ state[f"hidden_layers.{i}.weight"].T
    assert set(state) == {"linear1.weight", "linear2.weight", "linear2.bias"} | {f"hidden_layers.{i}.weight" for i in range(model["n_hidden_layers"])}
    return torch.relu(hidden @ state["linear1.weight"] + state["linear2.bias"])


@pytest.mark.parametrize("identity", [False, True])
def test_a_tied_run_exported_for_spd_computes_the_same_outputs(cli, tmp_path, identity):
    code, _, err = cli("train", "--out", tmp_path / "r", "--features", "5", "--hidden", "2", "--sparsity", "0.95,0.9", "--importance-decay", "1", "--steps", "200", "--device", "cpu", "--quiet")
    assert code == 0, err
    code, out, err = cli("export", "spd", tmp_path / "r", "--instance", "1", "--out", tmp_path / "spd", *(["--hidden-identity"] if identity else []))
    assert code == 0, err
    run = sp.load_run(tmp_path / "r")
    x = torch.rand(2, 100, 5) * (torch.rand(2, 100, 5) < 0.1)
    assert torch.allclose(tms_forward(tmp_path / "spd", x[1]), run.forward(x)[1], atol=1e-6)
    config = json.loads((tmp_path / "spd" / "tms_train_config.yaml").read_text())
    assert config["feature_probability"] == pytest.approx(0.1) and config["tms_model_config"]["n_hidden_layers"] == int(identity)
    assert config["fixed_identity_hidden_layers"] is identity and config["steps"] == 200


def test_what_spd_cannot_represent_is_refused_and_nothing_is_written(cli, tmp_path):
    code, _, err = cli("train", "--out", tmp_path / "u", "--model", "untied", "--features", "5", "--hidden", "2", "--sparsity", "0.9", "--steps", "10", "--device", "cpu", "--quiet")
    assert code == 0, err
    code, _, err = cli("export", "spd", tmp_path / "u", "--out", tmp_path / "x")
    assert code == 2 and err.count("\n") == 1 and "SPD's TMS target is tied" in err and not (tmp_path / "x").exists()
    code, _, err = cli("train", "--out", tmp_path / "t", "--features", "5", "--hidden", "2", "--sparsity", "0.9", "--steps", "10", "--device", "cpu", "--quiet")
    code, _, err = cli("export", "spd", tmp_path / "t", "--instance", "1", "--out", tmp_path / "x")
    assert code == 2 and "instance: 1 is not one of the run's instances" in err and not (tmp_path / "x").exists()


def test_an_sae_kind_saelens_lacks_is_refused(tmp_path):
    from superposition.saes import SAE_KINDS
    from superposition.saes.relu import ReLU
    from superposition.tools.saelens_sae import export

    class Squared(ReLU):  # a kind of a user's: ReLU(pre)², which no SAELens architecture computes
        name = "test-squared"

        def activate(self, params, pre, setting):
            return torch.relu(pre) ** 2

    sp.register_sae(Squared)
    try:
        sae = sp.train_sae(data="dictionary", features=8, dims=4, kind="test-squared", l1=0.01, steps=20, device="cpu", progress=False)
        with pytest.raises(sp.ConfigError, match="^kind: SAELens has no architecture for the test-squared SAE"):
            export(sae, 0, tmp_path / "x")
        assert not (tmp_path / "x").exists()
    finally:
        SAE_KINDS.pop("test-squared")
