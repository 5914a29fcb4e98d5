"""Session summary of the reliability suite: what it tried, with losses and duplicates.

Each reliability test records a ``Tally`` (kit.py) in its report's ``user_properties``; this
plugin sums them where the reports arrive (the xdist controller, or the single process) and
prints the figures at the end of the session, also under ``-q``.

It is registered by tests/reliability/conftest.py. A run of the whole suite from the repo root
(``pytest -n 2``) loads that conftest on the workers only (pytest loads a conftest below the
test paths at collection, after the controller has set up its hooks); for the summary and
``--long`` to work there too, ``tests/conftest.py`` must register this module:
``pytest_plugins = ["tests.reliability.summary"]``.
"""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest

PROPERTY = "reliability"

LINES = (
    ("kills", "kill points survived (SIGKILL, then resumed exactly)"),
    ("cuts", "connections dropped (random byte offsets, mid-command, BYE)"),
    ("faults", "server faults injected"),
    ("hostile", "hostile messages checked exactly"),
    ("secrets", "secrets searched for (value/encoding x place)"),
    ("digests", "source account digests compared (untouched)"),
    ("fuzz", "fuzz inputs tried (CSV, folder trees, mUTF-7, keys)"),
    ("runs", "import runs"),
    ("verified", "messages compared exactly (bytes, flags, INTERNALDATE)"),
)


class _Summary:
    def __init__(self) -> None:
        self.totals: Counter = Counter()
        self.faults: Counter = Counter()
        self.tests = 0
        self.xfailed: dict[str, list[str]] = {}  # reason -> node ids
        self.xfail_nodes: set[str] = set()
        self.known: Counter = Counter()  # losses/duplicates/altered found by xfail (known-bug) tests

    def add(self, data: dict, *, known_bug: bool) -> None:
        if known_bug:  # a test that fails as expected proves nothing but what it found
            for k in ("losses", "duplicates", "altered"):
                self.known[k] += int(data.get(k, 0))
            return
        self.tests += 1
        for k, v in data.items():
            if k == "faults":
                self.faults.update(v)
            else:
                self.totals[k] += int(v)


_state = _Summary()


def pytest_addoption(parser):
    # Also here, so that `--long` exists for a run from the repo root once tests/conftest.py
    # registers this plugin (the reliability conftest is not loaded before parsing then).
    with contextlib.suppress(ValueError):
        parser.addoption("--long", action="store_true", default=False,
                         help="reliability suite: more iterations (also MM_LONG=1)")


def _in_suite(nodeid: str) -> bool:
    return "reliability/" in nodeid.replace("\\", "/")


@pytest.hookimpl
def pytest_runtest_logreport(report) -> None:
    if not _in_suite(report.nodeid):
        return
    if getattr(report, "wasxfail", None) and report.skipped:  # an expected failure (known bug)
        _state.xfail_nodes.add(report.nodeid)
        _state.xfailed.setdefault(report.wasxfail, []).append(report.nodeid.rpartition("::")[2])
    if report.when == "teardown":
        for item in report.user_properties:
            name, value = item[0], item[1]
            if name == PROPERTY:
                _state.add(value, known_bug=report.nodeid in _state.xfail_nodes)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter) -> None:
    s = _state
    if not s.tests and not s.xfailed:
        return
    tr = terminalreporter
    t = s.totals
    tr.write_sep("=", "reliability summary")
    for key, label in LINES:
        value = sum(s.faults.values()) if key == "faults" else t[key]
        line = f"{label:.<62} {value}"
        if key == "faults" and s.faults:
            line += "  (" + ", ".join(f"{k} {v}" for k, v in sorted(s.faults.items())) + ")"
        tr.write_line(line)
    bad = t["losses"] + t["duplicates"] + t["altered"]
    tr.write_line(f"{'LOSSES / DUPLICATES / ALTERED (must be 0)':.<62} "
                  f"{t['losses']} / {t['duplicates']} / {t['altered']}", red=bool(bad), green=not bad, bold=True)
    tr.write_line(f"({s.tests} reliability tests reported figures)")
    if s.xfailed:
        k = s.known
        tr.write_line(f"known engine weaknesses (strict xfail, not counted above; their tests found "
                      f"{k['losses']} lost / {k['duplicates']} duplicated / {k['altered']} altered):", yellow=True)
        for reason, nodes in s.xfailed.items():
            tr.write_line(f"  - [{', '.join(nodes)}] {reason}", yellow=True)
