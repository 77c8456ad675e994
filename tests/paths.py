"""Where the tests find the repository and the upstream test data inside it.

The upstream CRDs, the Trainer v2 runtimes and the z2jh values schema are copied into
``tests/data`` (provenance and sha256 in ``tests/data/README.md``), so a clone of the repository
alone has everything its tests read; no test reads anything beside the checkout.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
CRDS = DATA / "crds"
RUNTIMES = CRDS / "kubeflow-trainer-v2" / "runtimes"
Z2JH_SCHEMA = DATA / "schemas" / "z2jh-values.schema.yaml"
PROVENANCE = DATA / "README.md"
