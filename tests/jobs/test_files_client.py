"""What the notebook side ships and sets: the script's folder on RWO-only homes (never the whole
home, never the inputs), the refusal that names the route, and the local backend's output folder."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from kubelab.jobs.backends.hub import HubBackend
from kubelab.jobs.backends.local import LocalBackend
from kubelab.jobs.spec import JobSpec, JobSpecError


def backend(home: Path) -> HubBackend:
    b = HubBackend(api_url="http://127.0.0.1:9/hub/api", token="t", home=home, retries=0)
    b._options = {"files": "configmap"}  # what GET options answers on an RWO-only platform
    return b


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "train.py").write_text("print(1)")
    (tmp_path / "util.py").write_text("x = 1")
    (tmp_path / "analysis.ipynb").write_text("{}")
    (tmp_path / "proj" / "data").mkdir(parents=True)
    (tmp_path / "proj" / "train.py").write_text("print(2)")
    (tmp_path / "proj" / "model.py").write_text("m = 2")
    (tmp_path / "proj" / "data" / "big.bin").write_bytes(b"x" * (2 * 1024 * 1024))
    return tmp_path


def test_a_script_at_the_top_of_the_home_ships_the_python_files_beside_it(home: Path) -> None:
    files = backend(home)._files_for(JobSpec(name="j", script="train.py"))
    assert sorted(files) == ["train.py", "util.py"]
    assert base64.b64decode(files["train.py"]) == b"print(1)"


def test_a_folder_with_a_dataset_is_refused_naming_inputs(home: Path) -> None:
    with pytest.raises(JobSpecError, match=r"more than 1 MiB.*list it in inputs=\[\.\.\.\]") as err:
        backend(home)._files_for(JobSpec(name="j", script="proj/train.py"))
    assert err.value.field == "files"


def test_inputs_are_not_shipped_they_are_fetched(home: Path) -> None:
    files = backend(home)._files_for(JobSpec(name="j", script="proj/train.py", inputs=["proj/data"]))
    assert sorted(files) == ["proj/model.py", "proj/train.py"]


def test_the_local_backend_gives_ranks_an_output_folder(tmp_path: Path) -> None:
    local = LocalBackend(root=tmp_path / "jobs", workdir=tmp_path)
    env = local.rank_env(JobSpec(name="ddp", script="t.py"), 0, [1234])
    assert env["KUBELAB_OUTPUT_DIR"] == str(tmp_path / "kubelab-runs" / "ddp")
    env = local.rank_env(JobSpec(name="ddp", script="t.py", output_dir="out/x"), 0, [1234])
    assert env["KUBELAB_OUTPUT_DIR"] == str(tmp_path / "out" / "x")
