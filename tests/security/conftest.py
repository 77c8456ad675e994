"""Fixtures of the attack suite.

Hypothesis keeps no example database and its caches go to a temporary folder, so these tests
write nothing into the checkout.
"""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

set_hypothesis_home_dir(tempfile.mkdtemp(prefix="kubelab-hypothesis-"))
settings.register_profile("kubelab", database=None)
settings.load_profile("kubelab")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print what the attack suite tried, how much was refused and what it created (docs/security.md)."""
    from tests.security.attacks import TALLY

    if TALLY.tried:
        terminalreporter.write_sep("=", "kubelab attack suite")
        terminalreporter.write_line(TALLY.summary())
