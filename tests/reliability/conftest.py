"""Reliability suite fixtures: the ``--long`` mode and the per-test ``tally``.

``--long`` (or the environment variable ``MM_LONG=1``) runs more iterations: more random cut
points, more seeds, more fuzz examples. The option only exists when this conftest is loaded
before pytest parses the command line (``pytest tests/reliability --long``); from the repo root
use ``MM_LONG=1 pytest ...``.
"""

from __future__ import annotations

import contextlib
import os

import pytest

from tests.reliability import kit
from tests.reliability.kit import Tally

SUMMARY = "tests.reliability.summary"


def pytest_addoption(parser):
    with contextlib.suppress(ValueError):  # registered already (by an earlier copy of this hook)
        parser.addoption("--long", action="store_true", default=False,
                         help="reliability suite: more iterations (also MM_LONG=1)")


def pytest_configure(config):
    kit.LONG = is_long(config)
    if not config.pluginmanager.has_plugin(SUMMARY):
        config.pluginmanager.import_plugin(SUMMARY)


def is_long(config) -> bool:
    return os.environ.get("MM_LONG") == "1" or bool(config.getoption("long", default=False))


@pytest.fixture(scope="session")
def long_mode(pytestconfig) -> bool:
    return is_long(pytestconfig)


@pytest.fixture
def tally(request):
    """A Tally whose figures go into the session summary (via the test report)."""
    t = Tally()
    yield t
    request.node.user_properties.append(("reliability", t.as_dict()))


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private $MAILMIGRATE_HOME for the CLI runs of one test."""
    h = tmp_path / "mmhome"
    monkeypatch.setenv("MAILMIGRATE_HOME", str(h))
    return h
