"""Where the tests find the repository and the upstream data beside it.

The upstream CRDs and the z2jh values schema live in ``shared/`` beside the checkout (CI clones
main with ``shared/`` next to it); ``KUBELAB_SHARED`` points elsewhere when it is not there.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("KUBELAB_SHARED") or REPO.parent / "shared")
CRDS = SHARED / "crds"
Z2JH_SCHEMA = SHARED / "schemas" / "z2jh-values.schema.yaml"
