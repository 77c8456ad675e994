"""The catalogue's job storage settings: per-rank scratch and the RWO route's budget (storage.scratch,
storage.transfer), parsed strictly, with errors that name the path."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from kubelab.core import catalogue as cat

EXAMPLE = yaml.safe_load(cat.EXAMPLE_PATH.read_text())


def with_storage(**storage: Any) -> dict[str, Any]:
    doc = copy.deepcopy(EXAMPLE)
    doc["storage"].update(storage)
    return doc


def test_defaults_and_the_example() -> None:
    defaults = cat.parse_catalogue({"profiles": EXAMPLE["profiles"], "images": EXAMPLE["images"],
                                    "gpuClasses": EXAMPLE["gpuClasses"]})
    assert defaults.scratch.size_bytes == 10 * 2**30
    assert (defaults.transfer.max_output_bytes, defaults.transfer.max_files) == (2 * 2**30, 10_000)
    example = cat.load_catalogue(cat.EXAMPLE_PATH)
    assert example.scratch.size_bytes == 10 * 2**30 and example.transfer.max_input_bytes == 2 * 2**30


def test_sizes_are_read_as_quantities() -> None:
    c = cat.parse_catalogue(with_storage(scratch={"size": "512Mi"},
                                         transfer={"maxOutputSize": "1G", "maxInputSize": "4096", "maxFiles": 7}))
    assert c.scratch.size_bytes == 512 * 2**20
    assert (c.transfer.max_output_bytes, c.transfer.max_input_bytes, c.transfer.max_files) == (10**9, 4096, 7)


def test_homes_can_be_rwx_with_a_shared_volume_under_them() -> None:
    c = cat.parse_catalogue(with_storage(home={"accessMode": "ReadWriteMany", "mountPath": "/home/jovyan"},
                                         shared={"claimName": "lab", "mountPath": "/home/jovyan/shared"}))
    assert c.home.access_mode == "ReadWriteMany" and c.shared == cat.SharedStorage("lab", "/home/jovyan/shared")


@pytest.mark.parametrize(
    ("storage", "path", "match"),
    [
        ({"scratch": {"size": "0"}}, "storage.scratch.size", "a size > 0"),
        ({"scratch": {"size": "2Pi"}}, "storage.scratch.size", "at most 1Pi"),
        ({"scratch": {"size": ".inf"}}, "storage.scratch.size", "Kubernetes quantity"),
        ({"scratch": {"size": "10Gi\n"}}, "storage.scratch.size", "Kubernetes quantity"),
        ({"transfer": {"maxOutputSize": "-1Gi"}}, "storage.transfer.maxOutputSize", "no sign"),
        ({"transfer": {"maxInputSize": "1e999"}}, "storage.transfer.maxInputSize", "exponent"),
        ({"transfer": {"maxFiles": 0}}, "storage.transfer.maxFiles", "minimum"),
        ({"transfer": {"maxFiles": True}}, "storage.transfer.maxFiles", "wrong type"),
        ({"scratch": {"sizeLimit": "1Gi"}}, "storage.scratch.sizeLimit", "allowed keys: size"),
    ],
    ids=["zero", "huge", "inf", "trailing-newline", "negative", "exponent", "no-files", "bool", "unknown-key"],
)
def test_bad_sizes_name_the_path(storage: dict[str, Any], path: str, match: str) -> None:
    with pytest.raises(cat.CatalogueError, match=match) as err:
        cat.parse_catalogue(with_storage(**storage), "lab.yaml")
    assert err.value.path == path and err.value.source == "lab.yaml"
