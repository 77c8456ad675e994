"""Fixtures of the attack suite.

Hypothesis keeps no example database and its caches go to a temporary folder, so these tests
write nothing into the checkout.
"""

from __future__ import annotations

import tempfile

from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

set_hypothesis_home_dir(tempfile.mkdtemp(prefix="kubelab-hypothesis-"))
settings.register_profile("kubelab", database=None)
settings.load_profile("kubelab")
