"""report.html: built for a run, a sweep and a reproduction, then opened in a real browser."""

import html
import json
import re
import shutil
import subprocess

import pytest

from superposition.config import ConfigError
from superposition.report import write

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def _open(page, profile, screenshot=None):
    """What the page recorded about itself once loaded in headless Chromium (and a screenshot)."""
    base = [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000"]
    dom = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60).stdout
    found = re.search(r'data-check="([^"]*)"', dom)
    assert found, "the page never finished loading"
    if screenshot:
        subprocess.run([*base, f"--screenshot={screenshot}", "--window-size=1400,2400", page.as_uri()], capture_output=True, timeout=60)
    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    from superposition.experiments import Options, reproduce
    from superposition.sweeps.sweep import sweep

    root = tmp_path_factory.mktemp("reports")
    from superposition.cli import main

    with pytest.raises(SystemExit):
        main(["train", "--out", str(root / "run"), "--features", "6", "--hidden", "2", "--sparsity", "0,0.9", "--steps", "100", "--quiet"])
    spec = root / "spec.toml"
    spec.write_text(
        "[base]\nfeatures = 2\nhidden = 1\nsteps = 300\nbatch_size = 256\n"
        "[axes]\ndensity = { log = [1, 0.01, 4] }\nimportance_last = { log = [0.1, 10, 4] }\nseed = [0, 1]\n"
    )
    sweep(spec, root / "sweep")
    reproduce("intro", root / "intro", Options(quick=True))
    return root


def test_report_contents(outputs):
    run = write(outputs / "run").read_text()
    assert run.count("<img") == 4 and "Metrics" in run  # gram, norms, weights and, as hidden = 2, polygon and "&quot;features&quot;: 6" in run
    swept = write(outputs / "sweep").read_text()
    assert "Phase diagram over density × importance_last" in swept and swept.count("<img") == 2
    assert "32 grid points, 32 ok" in swept
    intro = write(outputs / "intro").read_text()
    assert "Claims" in intro and "pentagon" in intro and intro.count("<img") == 1


def test_bad_report_requests(outputs, tmp_path):
    with pytest.raises(ConfigError, match="not a run, an SAE, a sweep or a reproduce output"):
        write(tmp_path)
    with pytest.raises(ConfigError, match="not an axis"):
        write(outputs / "sweep", x="colour")


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is missing: `make test` installs Debian's chromium where apt-get is available"
)
def test_reports_render_in_a_browser(outputs):
    for name in ("run", "sweep", "intro"):
        page = write(outputs / name)
        shot = outputs / f"{name}-screenshot.png"
        check = _open(page, outputs / f"profile-{name}", shot)
        assert check["errors"] == [], (name, check["errors"])
        assert check["images"] and all(width > 0 for width in check["images"]), (name, check["images"])
        assert shot.stat().st_size > 10_000
