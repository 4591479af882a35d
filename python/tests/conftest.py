"""pytest set-up: skip everything without torch or a CUDA device, make the package importable from
the source tree (python/), and give each test a seeded generator whose seed is printed on failure."""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path

import pytest

# The package lives in python/ next to this folder; each test module skips itself (importorskip)
# when torch or a CUDA device is missing, so collection never needs either.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@pytest.fixture
def seed(request) -> int:
    """A per-test seed (NVFP4MOE_TEST_SEED overrides); printed in the failure report."""
    import torch

    value = int(os.environ.get("NVFP4MOE_TEST_SEED", "0")) or zlib.crc32(request.node.nodeid.encode())
    request.node.user_properties.append(("seed", value))
    torch.manual_seed(value)
    return value


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        seeds = [v for k, v in item.user_properties if k == "seed"]
        if seeds:
            report.sections.append(("seed", f"seed = {seeds[0]} (rerun with NVFP4MOE_TEST_SEED={seeds[0]})"))
