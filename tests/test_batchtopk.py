"""BatchTopK and Matryoshka SAEs: the batch's k · batch largest activations, a threshold
calibrated for inference, a loss summed over nested prefixes, and the kind's own options."""

import pytest
import torch

import superposition as sp
from superposition.saes import SAE_KINDS
from superposition.saes.batchtopk import batch_top
from superposition.saes.config import resolve_sae


def test_batchtopk_keeps_exactly_k_times_batch_activations_the_largest_of_the_batch():
    pre = torch.rand(2, 64, 30) + 0.01  # every pre-activation positive
    k = torch.tensor([3, 5])
    a = batch_top(pre, k)
    for i in range(2):
        kept = a[i] > 0
        assert int(kept.sum()) == int(k[i]) * 64
        assert float(pre[i][kept].min()) >= float(pre[i][~kept].max())  # the largest of the whole batch
        assert torch.equal(a[i][kept], pre[i][kept])
    rows = (a[0] > 0).sum(-1)
    assert rows.min() < 3 < rows.max()  # per row it varies: it is not TopK per row
    assert int((batch_top(pre - 0.5, k)[0] > 0).sum()) <= 3 * 64  # negatives are never kept


def test_identical_rows_fire_alike_where_their_values_tie_at_the_cut():
    # a batch's empty rows all have the same pre-activations: every value tied at the cut
    # fires (topk would keep an arbitrary share of them), so they get one code
    pre = torch.rand(1, 40, 6) * 0.5
    pre[0, 10:] = torch.tensor([0.9, 0.2, 0.1, 0.0, -1.0, 0.3])  # 30 identical rows
    a = batch_top(pre, torch.tensor([0.5]))  # keeps 20: the cut falls among the 30 copies of 0.9
    assert torch.equal(a[0, 10:], a[0, 10:11].expand(30, 6))
    assert int((a > 0).sum()) == 30 + int((pre[0, :10] >= 0.9).sum())


@pytest.mark.parametrize(("shape", "k"), [((1, 1024, 512), [13.9]), ((3, 256, 64), [1.5, 2.0, 0.3]), ((2, 64, 16), [1.0, 0.02]), ((1, 8, 4), [2.0])])
def test_the_selection_among_candidates_is_the_whole_batchs_topk(shape, k):
    # batch_top looks for the largest among the values above a threshold guessed from a
    # sample (falling back to a topk of all where too few pass): the same activations, and
    # gradients, as a topk over the whole batch
    pre = torch.randn(*shape, generator=torch.Generator().manual_seed(len(k)), requires_grad=True)
    setting = torch.tensor(k)
    inst, rows, latents = shape
    keep = (setting * rows).round().long().clamp(1, rows * latents)
    values, index = pre.reshape(inst, -1).topk(int(keep.max()), dim=-1)
    rank = torch.arange(values.shape[-1])
    expected = torch.zeros(inst, rows * latents).scatter(-1, index, torch.where(rank < keep[:, None], torch.relu(values), 0.0)).view(shape)
    found = batch_top(pre, setting)
    assert torch.equal(found, expected)
    assert torch.equal(*(torch.autograd.grad((a * torch.arange(a.numel()).view(shape)).sum(), pre)[0] for a in (found, expected)))


def test_the_threshold_is_the_mean_smallest_kept_activation_and_inference_uses_it():
    kind = SAE_KINDS["batchtopk"]
    params = kind.init(1, 4, 6, torch.Generator().manual_seed(0))
    pres = [torch.rand(1, 16, 6) for _ in range(3)]
    kind.calibrate(params, pres, torch.tensor([2.0]))
    smallest = [float(torch.sort(p.flatten(), descending=True).values[31]) for p in pres]
    assert torch.allclose(params["threshold"], torch.full((1, 6), sum(smallest) / 3))
    pre = torch.tensor([[[0.1, 0.9, 0.5, 0.3, 0.0, 2.0]]])
    params["threshold"].fill_(0.4)
    assert torch.equal(kind.infer(params, pre, torch.tensor([2.0])), torch.tensor([[[0.0, 0.9, 0.5, 0.0, 0.0, 2.0]]]))


def test_a_matryoshka_prefix_loss_is_the_sum_over_prefixes_computed_by_hand():
    config = resolve_sae({"data": "dictionary", "features": 8, "dims": 5, "kind": "matryoshka", "latents": 6, "k": 2, "prefixes": [2, 4, 6]})
    kind = config.sae_kind
    params = kind.init(1, 5, 6, torch.Generator().manual_seed(1))
    params["b_dec"] = torch.randn(1, 5)
    h, a = torch.randn(1, 7, 5), torch.rand(1, 7, 6)
    by_hand = 0.0
    for m in (2, 4, 6):
        rebuilt = a[0, :, :m] @ params["W_dec"][0, :m] + params["b_dec"][0]
        by_hand += float(((h[0] - rebuilt) ** 2).mean())
    h_hat = kind.decode(params, a)
    assert float(kind.reconstruction_loss(params, h, a, h_hat)[0]) == pytest.approx(by_hand, rel=1e-5)
    plain = SAE_KINDS["batchtopk"].reconstruction_loss(params, h, a, h_hat)
    assert float(plain[0]) == pytest.approx(float(((h - h_hat) ** 2).mean()), rel=1e-6)


def test_matryoshka_options_are_checked_defaulted_and_belong_to_it():
    keys = {"data": "dictionary", "features": 8, "dims": 5, "kind": "matryoshka", "latents": 16, "k": 2}
    assert resolve_sae(keys).kind_options == {"prefixes": [4, 8, 16]}
    with pytest.raises(sp.ConfigError, match=r"^prefixes: the last size, 8, must be latents \(16\)$"):
        resolve_sae({**keys, "prefixes": [4, 8]})
    with pytest.raises(sp.ConfigError, match=r"^prefixes: \[8, 4, 16\] must increase from at least 1$"):
        resolve_sae({**keys, "prefixes": [8, 4, 16]})
    with pytest.raises(sp.ConfigError, match="^prefixes: an option of the matryoshka SAE, not of relu; drop it or set kind$"):
        resolve_sae({**keys, "kind": "relu", "l1": 0.1, "prefixes": [4, 16]})


@pytest.mark.parametrize("kind", ["batchtopk", "matryoshka"])
def test_it_trains_recovers_features_keeps_l0_near_k_at_inference_and_round_trips(kind, tmp_path):
    extra = {"prefixes": [4, 16]} if kind == "matryoshka" else {}
    sae = sp.train_sae(data="dictionary", features=16, dims=8, density=0.06, kind=kind, k=1, latents=16, steps=1500, seed=2, engine="reference", **extra)
    row = sae.metrics["instances"][0]
    assert row["mcc"] > 0.8 and row["variance_explained"] > 0.7
    assert 0.6 < row["l0"] < 1.4  # the calibrated threshold fires about k latents a row
    assert float(sae.params["threshold"].min()) > 0
    loaded = sp.load_sae(sae.save(tmp_path / kind, figures=False))
    assert loaded.config == sae.config and loaded.config.kind_options == ({"prefixes": [4, 16]} if extra else {})
    h = torch.randn(1, 5, 8)
    assert torch.equal(loaded.encode(h), sae.encode(h))
    pre = torch.baddbmm(sae.params["b_enc"][:, None], h - sae.params["b_dec"][:, None], sae.params["W_enc"])
    assert torch.equal(sae.encode(h) > 0, pre > sae.params["threshold"][:, None])  # inference: the threshold, not the batch


def test_the_kind_option_flag(cli, tmp_path):
    result = cli("sae", "--data", "dictionary", "--features", "8", "--dims", "4", "--kind", "matryoshka", "--k", "1", "--latents", "8",
                 "--kind-option", "prefixes=[2,8]", "--steps", "50", "--engine", "reference", "--out", str(tmp_path / "m"), "--no-figures")  # fmt: skip
    assert result[0] == 0, result
    assert sp.load_sae(tmp_path / "m").config.kind_options == {"prefixes": [2, 8]}
    bad = cli("sae", "--data", "dictionary", "--features", "8", "--dims", "4", "--kind", "matryoshka", "--k", "1", "--latents", "8",
              "--kind-option", "prefixes=[2,4]", "--out", str(tmp_path / "n"))  # fmt: skip
    assert bad[0] == 2 and "prefixes: the last size, 4, must be latents (8)" in bad[2] and not (tmp_path / "n").exists()


def test_a_fractional_k_on_the_command_line_is_batchtopks_and_not_topks(cli, tmp_path):
    common = ["--data", "dictionary", "--features", "8", "--dims", "4", "--latents", "8", "--steps", "20", "--engine", "reference", "--no-figures"]
    code, out, err = cli("sae", *common, "--kind", "batchtopk", "--k", "1.5", "--out", tmp_path / "b")
    assert code == 0, err
    assert sp.load_sae(tmp_path / "b").config.settings == [1.5]
    code, out, err = cli("sae", *common, "--kind", "topk", "--k", "1.5", "--out", tmp_path / "t")
    assert code == 2 and "k: expected whole numbers, got 1.5" in err and not (tmp_path / "t").exists()
