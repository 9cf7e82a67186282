"""An SAE kind is one class: BatchTopK (Bussmann et al., 2024), registered from this file
alone, trains, scores, saves and loads; the fused engine declines it with its reason."""

import pytest
import torch

import superposition as sp
from superposition.saes import SAE_KINDS, SAEKind, TopK


class BatchTopK(SAEKind):
    """ReLU of the k x batch largest pre-activations of the whole batch, per instance: a row
    may use more latents than k, and another fewer."""

    name, setting, column, formula = "test-batchtopk", "k", "k", "ReLU(BatchTopK(pre))"

    def activate(self, params, pre, setting):
        inst, batch, latents = pre.shape
        flat = pre.reshape(inst, batch * latents)
        keep = (setting.long() * batch).clamp_max(batch * latents)
        values, index = flat.topk(int(keep.max()), dim=-1)
        rank = torch.arange(values.shape[-1], device=pre.device)
        values = torch.where(rank < keep.view(-1, 1), torch.relu(values), 0.0)
        return torch.zeros_like(flat).scatter(-1, index, values).reshape(pre.shape)


@pytest.fixture
def registered():
    sp.register_sae(BatchTopK)
    yield
    SAE_KINDS.pop("test-batchtopk")


def test_a_kind_registered_here_trains_on_the_reference_engine_and_round_trips(registered, tmp_path):
    keys = {"data": "dictionary", "features": 5, "dims": 2, "density": 0.1, "steps": 1500, "device": "cpu"}
    sae = sp.train_sae(kind="test-batchtopk", k=[1, 2], progress=False, **keys)
    assert sae.metrics["engine"] == "reference"  # auto: the fused kernel does not compute it
    h = torch.randn(2, 64, 2, generator=torch.Generator().manual_seed(0))
    a = sae.encode(h)
    assert ((a > 0).sum(dim=(1, 2)) <= torch.tensor([64, 128])).all()  # k x batch over the batch
    assert ((a > 0).sum(-1).max(-1).values > torch.tensor([1, 2])).any()  # not k per row
    assert [row["k"] for row in sae.metrics["instances"]] == [1, 2]
    assert min(row["recovered"] for row in sae.metrics["instances"]) >= 4
    back = sp.load_sae(sae.save(tmp_path / "s", figures=False))
    assert torch.equal(back.params["W_dec"], sae.params["W_dec"])
    with pytest.raises(sp.ConfigError, match="^engine: the fused engine does not run the test-batchtopk SAE"):
        sp.train_sae(kind="test-batchtopk", k=1, engine="fused", progress=False, **keys)


def test_register_sae_refuses_a_taken_name_a_non_kind_and_a_setting_reported_two_ways():
    class Shadow(TopK):
        name = "topk"

    class Renamed(SAEKind):
        name, setting, column = "test-renamed", "k", "kk"  # TopK reports k as "k"

    class Nameless(SAEKind):
        name, setting, column = "test-nameless", "not a key", "x"

    with pytest.raises(sp.ConfigError, match="'topk' is already registered"):
        sp.register_sae(Shadow)
    with pytest.raises(sp.ConfigError, match="expected a subclass of superposition.saes.kind.SAEKind"):
        sp.register_sae(TopK())
    with pytest.raises(sp.ConfigError, match="the setting 'k' is reported as 'k' by another kind, not 'kk'"):
        sp.register_sae(Renamed)
    with pytest.raises(sp.ConfigError, match="needs a `setting`"):
        sp.register_sae(Nameless)
    assert type(SAE_KINDS["topk"]) is TopK and not {"test-renamed", "test-nameless"} & set(SAE_KINDS)
    # the built-ins say so themselves; Matryoshka, a BatchTopK subclass, does not inherit it
    assert {name for name, kind in SAE_KINDS.items() if kind.fused} == {"relu", "topk", "jumprelu", "batchtopk"}
    assert isinstance(SAE_KINDS["matryoshka"], type(SAE_KINDS["batchtopk"])) and not SAE_KINDS["matryoshka"].fused


class HalfNorm(SAEKind):
    """A ReLU SAE with an L½ penalty, alpha Σ_j √a_j: a setting of its own, with no default."""

    name, setting, column, formula = "test-half", "alpha", "alpha_coefficient", "ReLU(pre), L½ penalty"
    figures = ("penalty",)

    def activate(self, params, pre, setting):
        return torch.relu(pre)

    def sparsity_loss(self, params, pre, a, setting):
        return setting * (a + 1e-8).sqrt().sum(-1).mean(-1)


@pytest.fixture
def half():
    sp.register_sae(HalfNorm)
    yield
    SAE_KINDS.pop("test-half")


def test_a_kind_with_a_setting_of_its_own_takes_it_as_a_key_a_flag_and_a_column(half, cli, tmp_path):
    keys = {"data": "dictionary", "features": 5, "dims": 2, "density": 0.1, "steps": 600, "device": "cpu", "kind": "test-half"}
    sae = sp.train_sae(alpha=[0.001, 0.3], progress=False, **keys)
    rows = sae.metrics["instances"]
    assert [row["alpha_coefficient"] for row in rows] == [0.001, 0.3] and sae.config.settings == [0.001, 0.3]
    assert rows[1]["l0"] < rows[0]["l0"]  # the penalty works: fewer latents fire
    with pytest.raises(sp.ConfigError, match=r"^alpha: the test-half SAE needs at least one value \(--alpha\)$"):
        sp.train_sae(progress=False, **keys)
    with pytest.raises(sp.ConfigError, match="^alpha: the relu SAE takes --l1, not --alpha$"):
        sp.train_sae(progress=False, **{**keys, "kind": "relu", "alpha": 0.1})
    flags = ["--data", "dictionary", "--features", "5", "--dims", "2", "--steps", "50", "--device", "cpu", "--quiet"]
    code, _, err = cli("sae", *flags, "--kind", "test-half", "--setting", "0.01,0.1", "--out", tmp_path / "s", "--no-figures")
    assert code == 0, err
    assert sp.load_sae(tmp_path / "s").config.settings == [0.01, 0.1]
    # its own figures only: the penalty curve, never the directions, though d_in = 2
    assert sae.plot("penalty") is not None
    with pytest.raises(sp.ConfigError, match="^figure: the test-half SAE draws penalty, not directions$"):
        sae.plot("directions")


def test_a_kind_registered_here_runs_on_the_compiled_engine_as_on_the_reference(registered):
    # first the built-in kinds, other shapes, through the same compiled step: the frames their
    # graph breaks resume in are shared code, and their guards once broke on a second shape
    for kind in ("relu", "topk", "jumprelu"):
        sp.train_sae(engine="compiled", progress=False, data="dictionary", features=7, dims=3, batch_size=128, steps=5, device="cpu", kind=kind)
    keys = {"data": "dictionary", "features": 5, "dims": 2, "density": 0.1, "steps": 200, "device": "cpu", "kind": "test-batchtopk", "k": [1, 2]}
    compiled = sp.train_sae(engine="compiled", progress=False, **keys)
    reference = sp.train_sae(engine="reference", progress=False, **keys)
    assert compiled.metrics["engine"] == "compiled"
    for name, tensor in reference.params.items():
        torch.testing.assert_close(compiled.params[name], tensor, rtol=1e-4, atol=2e-5, msg=name)
