"""One resolver (``migrate.providers.resolve_connection``): the command line and a CSV row turn the
same options into the same connection settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate.csvbatch.reader import COLUMNS, read_batch
from migrate.csvbatch.runner import side_options
from migrate.providers import resolve_connection
from migrate.sides import SideOptions, build_side

# email, provider, host, port, security, username -> (host, port, security, login)
CASES = [
    (("a@gmx.net", None, None, 143, None, None), ("imap.gmx.net", 143, "starttls", None)),
    (("a@gmx.net", None, None, 993, None, None), ("imap.gmx.net", 993, "ssl", None)),
    (("a@gmx.net", None, None, None, None, None), ("imap.gmx.net", 993, "ssl", None)),
    (("a@gmx.net", None, None, None, "starttls", None), ("imap.gmx.net", 143, "starttls", None)),
    (("a@gmx.net", None, None, 1143, None, None), ("imap.gmx.net", 1143, "ssl", None)),
    (("a@gmx.net", None, None, None, "none", None), ("imap.gmx.net", 143, "none", None)),
    (("a@example.org", None, "mail.example.org", 143, None, None), ("mail.example.org", 143, "starttls", None)),
    (("a@example.org", None, "mail.example.org", None, None, None), ("mail.example.org", 993, "ssl", None)),
    (("a@example.org", "imap", "mail.example.org", 2143, "none", "al"), ("mail.example.org", 2143, "none", "al")),
    (("a@icloud.com", None, None, None, None, None), ("imap.mail.me.com", 993, "ssl", "a")),
    (("a@gmail.com", None, "127.0.0.1", 143, None, None), ("127.0.0.1", 143, "starttls", None)),
]


def _cli(email, provider, host, port, security, username):
    opts = SideOptions("source", email=email, provider=provider, host=host, port=port, security=security,
                       username=username, password="literal-pw", interactive=False)
    conn = build_side(opts).connection
    assert conn is not None
    return conn


def _csv(tmp_path: Path, email, provider, host, port, security, username):
    cells = {c: "" for c in COLUMNS}
    cells.update(source_email=email, source_password="pw", source_provider=provider or "",
                 source_host=host or "", source_port=str(port or ""), source_security=security or "",
                 source_username=username or "", target_email="t@example.org", target_password="pw",
                 target_host="127.0.0.1")
    f = tmp_path / "batch.csv"
    f.write_text(",".join(COLUMNS) + "\n" + ",".join(cells[c] for c in COLUMNS) + "\n", encoding="utf-8")
    (row,) = read_batch(f)
    conn = build_side(side_options(row.source, "source")).connection
    assert conn is not None
    return row.source, conn


@pytest.mark.parametrize(("given", "want"), CASES)
def test_cli_and_csv_row_resolve_alike(tmp_path, given, want):
    direct = resolve_connection(given[0], provider=given[1], host=given[2], port=given[3], security=given[4],
                                username=given[5])
    cli = _cli(*given)
    spec, csv = _csv(tmp_path, *given)
    assert (direct.host, direct.port, direct.security, direct.username) == want
    def seen(c):
        return c.host, c.port, c.security, c.username, c.at_preset_host

    assert seen(cli) == seen(csv) == seen(direct)
    assert (spec.host, spec.port, spec.security) == want[:3]


def test_gmx_port_143_without_security_is_starttls_on_both_paths(tmp_path):
    given = ("a@gmx.net", None, None, 143, None, None)
    assert _cli(*given).security == _csv(tmp_path, *given)[1].security == "starttls"


def test_at_preset_host_only_at_the_presets_own_server():
    assert resolve_connection("a@gmail.com").at_preset_host
    assert resolve_connection("a@gmail.com", host="IMAP.gmail.com").at_preset_host
    assert not resolve_connection("a@gmail.com", host="127.0.0.1").at_preset_host
    assert not resolve_connection("a@example.org", host="mail.example.org").at_preset_host


def test_a_password_given_as_a_value_is_never_read_as_a_reference():
    """The service holds users' passwords itself: one that begins with env: or file: is a password."""
    from migrate.accounts import Secret, resolve_secret

    given = Secret("env:HOME")
    assert resolve_secret(given, what="--source-password") is given
    assert resolve_secret("env:HOME", what="--source-password").get() != "env:HOME"
