"""Every preset of `superposition reproduce` in --quick mode: its files, and its claims."""

import json
import re

import pytest
import torch

from superposition.experiments import Options, reproduce


def _run(name, tmp_path):
    summary = reproduce(name, tmp_path / name, Options(quick=True))
    on_disk = json.loads((tmp_path / name / "claims.json").read_text())
    assert on_disk == summary["claims"]
    assert list((tmp_path / name).glob("*.png")), "every preset draws at least one figure"
    return {c["claim"]: c for c in summary["claims"]}


def _assert_all_hold(claims):
    failed = {k: v["ours"] for k, v in claims.items() if not v["holds"]}
    assert not failed, failed


@pytest.mark.parametrize("name", ["intro", "importance-sparsity", "phase", "correlated", "privileged-basis", "computation", "adversarial"])
def test_quick_claims_hold(tmp_path, name):
    _assert_all_hold(_run(name, tmp_path))


def test_seed_quick_runs_and_reports_its_claims(tmp_path):
    # 3,000 steps cannot show the seed's sparse claims; the dense one must hold
    claims = _run("seed", tmp_path)
    dense = next(v for k, v in claims.items() if k.startswith("dense"))
    assert dense["holds"], dense["ours"]
    assert len(claims) == 6
    # every claim counts its seeds per procedure, and holds where most warm-started seeds do
    counts = {}
    for claim in claims.values():
        found = re.match(r"warm start (\d)/5, fresh (\d)/5 seeds", claim["ours"])
        assert found, claim["ours"]
        counts[claim["claim"]] = tuple(map(int, found.groups()))
        assert claim["holds"] == (counts[claim["claim"]][0] >= 3)
    # the counts agree with the table's diagonal counts of every seed
    table = json.loads((tmp_path / "seed" / "reproduction.json").read_text())["table"]
    for procedure, k in (("warm start", 0), ("fresh", 1)):
        row = next(r for r in table if r["procedure"] == procedure and r["net"] == "one_weight (tied)" and r["sparsity"] == 0.999)
        near_18 = sum(abs(int(d) - 18) <= 2 for d in row["diagonal count, seeds 0-4"].split())
        assert counts["tied net at S=0.999 learns almost 18 of 20"][k] == near_18


def test_unknown_preset(tmp_path):
    from superposition.config import ConfigError

    with pytest.raises(ConfigError, match="unknown preset"):
        reproduce("everything", tmp_path / "x", Options(quick=True))


def test_nonuniform_quick_finds_both_configurations(tmp_path):
    claims = _run("nonuniform", tmp_path)
    pentagon = next(v for k, v in claims.items() if k.startswith("all five"))
    assert pentagon["holds"], pentagon["ours"]
    table = json.loads((tmp_path / "nonuniform" / "reproduction.json").read_text())["table"]
    # the sparsest fifth feature is dropped: the other four pair up
    assert table[-1]["best geometry"] == "two antipodal pairs" and table[-1]["represented"] == "[0, 1, 2, 3]"


def test_geometry_quick_runs_its_machinery(tmp_path):
    # the quick model (40 features, 12 densities, 4,000 steps) is too coarse to show
    # the plateau or the clusters; where D* is near 1/2 its features must be digons
    claims = _run("geometry", tmp_path)
    digons = next(v for k, v in claims.items() if "digons" in k)
    assert digons["holds"], digons["ours"]
    summary = json.loads((tmp_path / "geometry" / "reproduction.json").read_text())
    assert len(summary["table"]) == 12 and {"D*", "digon", "not learned"} <= set(summary["table"][0])
    clusters = next(v for k, v in claims.items() if "cluster" in k)
    assert all(f"{name} " in clusters["ours"] for name in ("3/4", "2/3", "1/2", "2/5", "3/8"))


def test_report_lists_every_claim_and_copies_figures(tmp_path):
    from superposition.experiments import write_report

    out = tmp_path / "out"
    (out / "intro").mkdir(parents=True)
    (out / "intro" / "intro.png").write_bytes(b"\x89PNG fake")
    summaries = [
        {
            "preset": "intro",
            "quick": False,
            "wall_seconds": 12.0,
            "package_version": "0.1.0",
            "claims": [
                {"claim": "dense: pair", "paper": "pair", "ours": "pair", "holds": True},
                {"claim": "sparse: pentagon", "paper": "pentagon", "ours": "other | odd", "holds": False},
            ],
        }
    ]
    report = tmp_path / "docs" / "replication.md"
    report.parent.mkdir()
    write_report(report, out, summaries)
    text = report.read_text()
    assert "1 of 2 claims hold" in text
    assert "| dense: pair | pair | pair | yes |" in text
    assert "| sparse: pentagon | pentagon | other / odd | **no** |" in text
    assert "![intro: intro](replication_figures/intro/intro.png)" in text
    assert (tmp_path / "docs" / "replication_figures" / "intro" / "intro.png").read_bytes() == b"\x89PNG fake"

    # a section run apart, below the marker, survives the next rewrite; the rest is rewritten
    from superposition.experiments import KEPT

    apart = f"{KEPT}\n\n## double-descent (paper size)\n\nmeasured apart\n"
    report.write_text(text.replace("1 of 2", "9 of 9") + apart)
    summaries[0]["claims"] = summaries[0]["claims"][:1]
    write_report(report, out, summaries)
    again = report.read_text()
    assert again.endswith(apart) and "1 of 1 claims hold" in again and "9 of 9" not in again
    assert again.count("## intro") == 1


def test_reproduce_all_writes_every_preset_and_the_report(tmp_path, monkeypatch, cli):
    from superposition import experiments

    monkeypatch.setattr(experiments, "IN_ALL", ("intro", "adversarial"))
    code, out, err = cli("reproduce", "all", "--quick", "--out", tmp_path / "all", "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [
        "adversarial", "intro", "replication.md", "replication_figures", "reproduction.json", "superposition.json",
    ]  # fmt: skip
    report = (tmp_path / "all" / "replication.md").read_text()
    assert "## intro" in report and "## adversarial" in report and "claims hold" in report
    assert (tmp_path / "all" / "replication_figures" / "intro" / "intro.png").is_file()
    assert "intro: claims" in out and "adversarial: claims" in out


def test_sae_quick_trains_scores_and_saves_every_sae(tmp_path):
    import superposition as sp

    # on the CPU: the claims asserted below were measured there, and a GPU trains another trajectory
    summary = reproduce("sae", tmp_path / "sae", Options(quick=True, overrides={"device": "cpu"}))
    claims = {c["claim"]: c for c in summary["claims"]}
    assert len(claims) == 6 and list((tmp_path / "sae").glob("*.png"))

    def claim(start):
        return next(c for text, c in claims.items() if text.startswith(start))

    assert claim("random dictionary")["holds"], claim("random dictionary")["ours"]  # MMCS peaks inside the L1 grid
    # Chanin et al.'s mixing: on correlated pairs at k = 1, not on independent features
    assert claim("TopK with k below")["holds"], claim("TopK with k below")["ours"]
    # since ReLU trains its decoder rows free (saes/relu.py) no latent dies here at 3x the
    # default L1 and resampling changes nothing: the claim is reported, not held
    assert "without: " in claim("resampling lets")["ours"] and "dead per check" in claim("resampling lets")["ours"]
    assert "8 models whole" in claim("5 → 2 pentagon-like")["ours"] and "recipe:" in claim("the same 8 models")["ours"]
    saved = sorted(p.name for p in (tmp_path / "sae").iterdir() if p.is_dir() and p.name != "pentagon")
    assert saved == sorted(
        ["pentagon-relu", "pentagon-topk", "pentagon-jumprelu", "pentagon-jumprelu-recipe", "resampling-on", "resampling-off",
         "dictionary-16", "dictionary-32", "dictionary-64", "topk-independent", "topk-correlated"]
    )  # fmt: skip
    recipe = sp.load_sae(tmp_path / "sae" / "pentagon-jumprelu-recipe")
    assert (recipe.config.beta1, recipe.config.sparsity_warmup, recipe.config.log_threshold) == (0.0, 0.1, True)
    assert len(recipe) == 8
    # the run is named from beside the SAE: the output was built elsewhere and moved into place
    assert (tmp_path / "sae" / "pentagon-jumprelu-recipe" / recipe.config.run).resolve() == (tmp_path / "sae" / "pentagon").resolve()
    correlated = sp.load_sae(tmp_path / "sae" / "topk-correlated")
    assert correlated.config.data_options["strength"] == 0.5 and correlated.metrics["engine"] != "fused"


def test_absorption_quick_trains_every_kind_on_the_toy_and_scores_absorption(tmp_path):
    import superposition as sp

    summary = reproduce("absorption", tmp_path / "a", Options(quick=True, overrides={"device": "cpu"}))
    assert len(summary["claims"]) == 2 and (tmp_path / "a" / "absorption.png").is_file()
    assert "relu" in summary["claims"][0]["ours"] and "matryoshka" in summary["claims"][1]["ours"]
    for kind in ("relu", "topk", "batchtopk", "matryoshka"):
        sae = sp.load_sae(tmp_path / "a" / kind)
        assert sae.config.kind == kind and sae.config.orthogonal and sae.config.data_options["exclusive"]
        rows = sae.metrics["instances"]
        assert len(rows) == 1 and all(len(r["absorption_per_child"]) == 9 and 0 <= r["absorption"] <= 1 for r in rows)
    assert sp.load_sae(tmp_path / "a" / "matryoshka").config.kind_options == {"prefixes": [3, 12, 20]}
    # the toy's features: orthonormal, as in Nabeshima's
    F = sp.load_sae(tmp_path / "a" / "relu").features
    assert torch.allclose(F @ F.transpose(1, 2), torch.eye(20).expand(1, 20, 20), atol=1e-5)


def test_absorption_refuses_overrides_it_cannot_take(tmp_path, cli):
    code, out, err = cli("reproduce", "absorption", "--quick", "--out", tmp_path / "a", "--steps", "10")
    assert code == 2 and "steps: the absorption preset trains SAEs on data of its own" in err and not (tmp_path / "a").exists()


def test_hedging_quick_trains_its_three_cases(tmp_path):
    import superposition as sp

    summary = reproduce("hedging", tmp_path / "h", Options(quick=True, overrides={"device": "cpu"}))
    assert len(summary["claims"]) == 2 and (tmp_path / "h" / "hedging.png").is_file()
    narrow, independent, full = (sp.load_sae(tmp_path / "h" / name) for name in ("narrow", "independent", "full"))
    assert (narrow.config.latents, independent.config.latents, full.config.latents) == (1, 1, 2)
    assert narrow.config.data_options["parents"] == [-1, 0] and independent.config.data_options["parents"] is None
    assert "absorption" in full.metrics["instances"][0] and "absorption" not in independent.metrics["instances"][0]


def test_synthsaebench_quick_trains_both_kinds_on_its_data(tmp_path):
    import superposition as sp

    summary = reproduce("synthsaebench", tmp_path / "s", Options(quick=True, overrides={"device": "cpu"}))
    assert len(summary["claims"]) == 2 and "theirs 0.793" in summary["claims"][0]["ours"]
    batch, nested = sp.load_sae(tmp_path / "s" / "batchtopk"), sp.load_sae(tmp_path / "s" / "matryoshka")
    assert batch.config.settings == nested.config.settings and batch.config.latents == 32 and not batch.config.resample
    assert nested.config.kind_options == {"prefixes": [4, 8, 16, 32]}
    assert batch.config.firing["firing"] == "zipf" and batch.config.data_options["correlation_rank"] == 25
    assert batch.config.data_options["roots"] == 1 and "absorption" in batch.metrics["instances"][0]


def test_llc_quick_finds_the_papers_critical_points_and_estimates_along_training(tmp_path, cli):
    import superposition as sp

    summary = reproduce("llc", tmp_path / "l", Options(quick=True, overrides={"device": "cpu"}))
    assert len(summary["claims"]) == 4 and summary["claims"][0]["holds"]  # l*, b* and losses: exact, not sampled
    rows = {row["point"]: row for row in summary["table"]}
    assert rows["5"]["l*"] == pytest.approx(1.17046, abs=1e-4) and rows["6"]["b*"] == pytest.approx(-0.61814, abs=1e-4)
    trained = sp.load_run(tmp_path / "l" / "training")
    assert trained.config.optimizer == "sgd" and trained.config.loss_reduction == "sum" and len(trained.checkpoint_steps) == 5
    record = json.loads((tmp_path / "l" / "training" / "llc.json").read_text())
    assert len(record["estimates"]) == 3 * 5 and all((tmp_path / "l" / f"llc-{n}.png").is_file() for n in ("training", "critical-points"))
    code, _, err = cli("reproduce", "llc", "--quick", "--out", tmp_path / "x", "--data", "signed")
    assert code == 2 and "data: the llc preset trains Chen et al.'s setup" in err and not (tmp_path / "x").exists()
