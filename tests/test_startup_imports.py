"""Start-up cost: a no-op re-run is mostly imports, so what is imported, and when, is kept in check.

``import migrate.api`` (the service, the batch runner) must not pull in the engine, the sides or
the mail code; the CLI's no-op re-run (real Dovecot) must not import rich or the mail code.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.mailbox import ROOT, cli_args, msg

HEAVY_FOR_API = ("migrate.engine.job", "migrate.engine.api", "migrate.sides", "migrate.notify.deliver",
                 "migrate.journal", "tenacity", "rich", "imapclient")


def modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"import sys; {code}; print('\\n'.join(sys.modules))"],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_importing_migrate_api_leaves_the_engine_unloaded():
    loaded = modules_after("import migrate.api")
    assert "migrate.api" in loaded
    assert sorted(m for m in HEAVY_FOR_API if m in loaded) == []


def test_importing_the_engine_leaves_tenacity_and_rich_unloaded():
    """tenacity is imported by the first retry policy call, rich by the first thing shown."""
    loaded = modules_after("import migrate.engine.api")
    assert "migrate.engine.pool" in loaded
    assert "tenacity" not in loaded and "rich" not in loaded


def test_api_functions_import_what_they_need():
    """The deferred imports resolve: spec_for builds a JobSpec without anything imported first."""
    loaded = modules_after(
        "from pathlib import Path; from migrate.api import ImportRequest, spec_for, _sides;"
        "from migrate.sides import SideOptions;"
        "req = ImportRequest(SideOptions('source', maildir=str(Path('samples/demo').resolve())),"
        " SideOptions('target', maildir='/nonexistent-mm-target'), journal=Path('/nonexistent-mm/j.sqlite'),"
        " dry_run=True);"
        "src, dst = _sides(req, None); spec = spec_for(req, src, dst);"
        "assert type(spec).__name__ == 'JobSpec' and spec.dry_run, spec")
    assert "migrate.engine.job" in loaded


@pytest.mark.dovecot
def test_noop_rerun_imports_no_rich(dovecot, new_user, tmp_path):
    """The re-run that finds everything copied prints through plain writes (stdout is a pipe)."""
    srv = dovecot("slash")
    src, dst = new_user(srv), new_user(srv)
    src.save("INBOX", msg(1))
    src.save("Sent", msg(2))
    cmd = [sys.executable, "-X", "importtime", str(ROOT / "cli.py"), "import", *cli_args("source", src),
           *cli_args("target", dst), "--journal", str(tmp_path / "j.sqlite"), "-q", "--no-notify"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert first.returncode == 0, first.stderr[-2000:]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "status: done (exit 0)" in again.stdout
    imported = {line.rsplit("|", 1)[1].strip() for line in again.stderr.splitlines()
                if line.startswith("import time:")}
    assert {"migrate.engine.job", "tenacity", "imapclient"} <= imported  # the job did run
    assert not {m for m in imported if m == "rich" or m.startswith("rich.")}
    assert "migrate.notify.deliver" not in imported and "smtplib" not in imported
    with dst.client() as c:
        assert c.select_folder("INBOX", readonly=True)[b"EXISTS"] == 1
