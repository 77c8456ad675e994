"""The README's three steps for a z2jh site: each names a test that exists, and step 2 (your z2jh
values, your profileList kept, kubelab's hub settings added) validates against z2jh 4.4.0's schema."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "helm"))
from test_helm_z2jh_values import _errors  # noqa: E402 - z2jh's schema, checked as an override file

README = REPO / "README.md"
MIGRATING = REPO / "docs" / "migrating-from-z2jh.md"


def section() -> str:
    text = README.read_text()
    start = text.index("## Adding kubelab to a Zero-to-JupyterHub site")
    return text[start:text.index("\n## ", start + 3)]


def test_three_steps_each_with_a_test_that_exists():
    steps = re.findall(r"^\d\. \*\*(.+?)\*\*(.*?)(?=^\d\. |\Z)", section(), flags=re.M | re.S)
    assert [title for title, _ in steps] == ["Install kubelab's chart", "Point z2jh's hub at kubelab", "Upgrade z2jh"]
    for title, body in steps:
        tests = re.findall(r"`(tests/[\w/]+\.py)(?:::(\w+))?`", body)
        assert tests, f"step {title!r} names no test"
        last_file = None
        for path, name in tests:
            last_file = path or last_file
            source = (REPO / last_file).read_text()
            assert not name or re.search(rf"^(async )?def {name}\(", source, flags=re.M), f"{last_file}::{name} missing"
    # ``::name`` alone continues the file named before it
    for name in re.findall(r"`::(\w+)`", section()):
        assert re.search(rf"^(async )?def {name}\(", (REPO / "tests/spawner/test_differential.py").read_text(), flags=re.M)


def test_site_values_with_profile_list_validate():
    """Step 2: a z2jh site's values with its profileList kept and kubelab's hub settings added."""
    kubelab = yaml.safe_load((REPO / "helm" / "z2jh-values.yaml").read_text())
    blocks = re.findall(r"```yaml\n(.*?)```", MIGRATING.read_text(), flags=re.S)
    site = yaml.safe_load(blocks[0])  # the z2jh documentation's own values, profileList included
    for key in ("image", "extraEnv", "extraVolumes", "extraVolumeMounts"):
        site.setdefault("hub", {})[key] = kubelab["hub"][key]
    site["hub"]["extraConfig"] = {
        "01-enable-fancy-profiles": "from jupyterhub_fancy_profiles import setup_ui\nsetup_ui(c)\n",
        "10-kubelab": kubelab["hub"]["extraConfig"]["10-kubelab"],
    }
    assert _errors(site) == []
    assert [p["display_name"] for p in site["singleuser"]["profileList"]][:2] == ["Minimal environment", "Datascience environment"]
    site["singleuser"]["profileLists"] = site["singleuser"].pop("profileList")  # and the check can fail
    assert any("'profileLists' was unexpected" in e for e in _errors(site)), _errors(site)
