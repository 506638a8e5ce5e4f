"""Shared fixtures. Tests never download weights or data."""

from __future__ import annotations

import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# Feature caches and image-check records go to a folder of this test session, not the user's ~/.cache.
_SESSION_CACHE = None if "WORKBENCH_CACHE_DIR" in os.environ else tempfile.mkdtemp(prefix="workbench-test-cache-")
if _SESSION_CACHE is not None:
    os.environ["WORKBENCH_CACHE_DIR"] = _SESSION_CACHE

import pytest


def pytest_sessionfinish(session, exitstatus):
    if _SESSION_CACHE is not None:
        shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def _module_temp_folders(request, tmp_path_factory):
    """Remove what a test module's fixtures wrote under the session's temp folder once the module is done.

    pytest removes a passed test's ``tmp_path`` at once (``tmp_path_retention_policy = "failed"``) but keeps
    ``tmp_path_factory`` folders (the module fixtures' trained runs) to the end of the session: the suite's
    peak disk use was then the sum of every module's runs. Kept, like pytest's own, when a test failed.
    Trap: a session-scoped fixture must not write under ``tmp_path_factory`` (its folder would go here).
    """
    base = tmp_path_factory.getbasetemp()
    before, failed = set(base.iterdir()), request.session.testsfailed
    yield
    if request.session.testsfailed == failed:
        for path in set(base.iterdir()) - before:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)
    yield
