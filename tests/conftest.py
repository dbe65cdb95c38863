"""Shared pytest fixtures: Go toolchains and where recorded test data lives."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import TESTDATA, go_toolchains


@pytest.fixture(scope="session")
def testdata() -> Path:
    return TESTDATA


@pytest.fixture(scope="session")
def toolchains() -> dict[str, Path]:
    found = go_toolchains()
    if not found:
        pytest.fail("no Go toolchain: run scripts/bootstrap.sh")
    return found


# --- demo service (deploy/demo-service; see tests/demo_support.py) ---
# demo_binaries (session), demo_service (factory), leaky_demo (session).
from demo_support import demo_binaries, demo_service, leaky_demo  # noqa: E402, F401

# --- end of demo service section ---
