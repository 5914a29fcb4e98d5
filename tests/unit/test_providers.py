"""Provider presets: every file loads, domains are unambiguous, quirks behave as the data says."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrate import providers
from migrate.errors import UsageError
from migrate.models import SPECIAL_USES
from migrate.providers import PresetError, ProviderHooks, ProviderPreset, Quirks, hooks_for, load_preset_file
from migrate.providers.describe import COLUMNS, format_bytes, provider_rows

EXPECTED = {
    "gmail", "outlook", "microsoft365", "yahoo", "aol", "gmx", "gmx-com", "webde",
    "bluewin", "swisscom", "icloud", "zoho", "infomaniak", "imap",
}  # fmt: skip

MS_THROTTLE = "NO Request is throttled. Suggested Backoff Time: 299961 milliseconds"


def test_every_expected_preset_loads_and_validates() -> None:
    assert set(providers.names()) == EXPECTED
    assert providers.names() == sorted(providers.names())
    for preset in providers.all_presets():
        assert isinstance(preset, ProviderPreset)
        assert preset.title and preset.hint
        assert set(preset.special_folders) <= set(SPECIAL_USES)
        assert preset.quirks.max_connections >= 1
        if preset.name != "imap":
            assert preset.imap_host, preset.name


def test_domains_are_claimed_once() -> None:
    seen: dict[str, str] = {}
    for preset in providers.all_presets():
        for domain in preset.domains:
            assert domain not in seen, f"{domain} in {seen.get(domain)} and {preset.name}"
            assert domain == domain.lower()
            seen[domain] = preset.name


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("alice@gmail.com", "gmail"),
        ("Alice@GoogleMail.COM", "gmail"),
        ("bob@hotmail.co.uk", "outlook"),
        ("carol@yahoo.de", "yahoo"),
        ("dave@ymail.com", "yahoo"),
        ("erin@gmx.ch", "gmx"),
        ("erin@gmx.com", "gmx-com"),
        ("frank@web.de", "webde"),
        ("grace@bluewin.ch", "bluewin"),
        ("heidi@me.com", "icloud"),
        ("ivan@ik.me", "infomaniak"),
        ("  judy@zoho.com ", "zoho"),
        ("ken@example.org", None),
        ("ken@mail.gmail.com", None),  # subdomains never match
        ("ken@yahoo.co.jp", None),  # Yahoo! JAPAN is a different service
        ("ken@contoso.onmicrosoft.com", None),  # Microsoft 365 is selected explicitly
        ("not-an-address", None),
        ("@gmail.com", None),
    ],
)
def test_detect(email: str, expected: str | None) -> None:
    preset = providers.detect(email)
    assert (preset.name if preset else None) == expected


def test_get_is_case_insensitive_and_unknown_names_fail_with_a_hint() -> None:
    assert providers.get("Gmail").name == "gmail"
    with pytest.raises(UsageError) as info:
        providers.get("nope")
    assert "unknown provider 'nope'" in info.value.message
    assert info.value.hint is not None
    for name in providers.names():
        assert name in info.value.hint


def test_key_facts() -> None:
    gmail = providers.get("gmail")
    assert (gmail.imap_host, gmail.imap_port, gmail.imap_security) == ("imap.gmail.com", 993, "ssl")
    assert gmail.oauth == "google"
    assert gmail.quirks.append_limit == 35_651_584
    assert gmail.quirks.max_connections == 10
    assert gmail.special_folders["\\All"] == "[Gmail]/All Mail"
    ms = providers.get("microsoft365")
    assert ms.domains == [] and ms.oauth == "microsoft" and ms.auth == ["xoauth2"]
    assert ms.quirks.max_connections == 8 and ms.quirks.reserved_folders == ["Files"]
    yahoo = providers.get("yahoo")
    assert yahoo.quirks.export_host == "export.imap.mail.yahoo.com"
    assert yahoo.quirks.folder_count_cap == 10_000 and yahoo.quirks.ensure_trailing_crlf
    assert providers.get("webde").username == "localpart"
    assert providers.get("icloud").username == "localpart"
    bluewin = providers.get("bluewin")
    assert (bluewin.imap_host, bluewin.smtp_port) == ("imaps.bluewin.ch", 465)
    assert bluewin.smtp_host == "smtpauths.bluewin.ch"
    generic = providers.get("imap")
    assert generic.imap_host is None and generic.imap_port == 993 and generic.smtp_host is None


# --- hooks ----------------------------------------------------------------------------


def test_microsoft_throttle_gives_the_suggested_delay() -> None:
    for name in ("microsoft365", "outlook"):
        hooks = hooks_for(providers.get(name))
        assert hooks.classify(MS_THROTTLE) == pytest.approx(299.961)
        assert hooks.classify("NO Request is throttled.") == hooks.quirks.throttle_delay


def test_gmail_throttle_gives_the_default_delay() -> None:
    hooks = hooks_for(providers.get("gmail"))
    delay = hooks.classify("NO [THROTTLED] Please slow down")
    assert delay == hooks.quirks.throttle_delay and delay > 0
    assert hooks.classify("NO [ALERT] Too many simultaneous connections. (Failure)") == delay
    assert hooks.classify("NO [ALERT] Account exceeded command or bandwidth limits. (Failure)") == delay


def test_yahoo_throttle_text() -> None:
    hooks = hooks_for(providers.get("yahoo"))
    assert hooks.classify("NO [UNAVAILABLE] UID FETCH Server error - Please try again later") is not None


@pytest.mark.parametrize("name", ["gmail", "microsoft365", "yahoo", "imap"])
def test_normal_answers_are_not_throttles(name: str) -> None:
    hooks = hooks_for(providers.get(name))
    assert hooks.classify("NO [TRYCREATE] Folder does not exist") is None
    assert hooks.classify("BAD Command Argument Error. 11") is None


def test_seconds_group_is_honoured() -> None:
    quirks = Quirks(throttle_patterns=[r"wait (?P<s>\d+(\.\d+)?)s"])
    preset = ProviderPreset(name="x", title="X", imap_host="h", auth=["password"], quirks=quirks)
    assert ProviderHooks(preset).classify("NO please wait 2.5s") == 2.5


def test_yahoo_prepare_append_adds_crlf_only_when_missing() -> None:
    yahoo = hooks_for(providers.get("yahoo"))
    assert yahoo.prepare_append(b"Subject: x\r\n\r\nbody") == b"Subject: x\r\n\r\nbody\r\n"
    assert yahoo.prepare_append(b"Subject: x\r\n\r\nbody\r\n") == b"Subject: x\r\n\r\nbody\r\n"
    # Other targets get the exact bytes.
    assert hooks_for(providers.get("gmail")).prepare_append(b"body") == b"body"


def test_drop_flags() -> None:
    ms = hooks_for(providers.get("microsoft365"))
    assert ms.filter_flags(["\\Seen", "$MDNSent", "$mdnsent", "$Label1"]) == ("\\Seen", "$Label1")
    assert hooks_for(providers.get("gmail")).filter_flags(["\\Seen", "$MDNSent"]) == ("\\Seen", "$MDNSent")


def test_register_overrides_hooks_for_one_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(providers, "_hooks", {})

    @providers.register("zoho")
    class ZohoHooks(ProviderHooks):
        def prepare_append(self, body: bytes) -> bytes:
            return body.upper()

    assert isinstance(hooks_for(providers.get("zoho")), ZohoHooks)
    assert type(hooks_for(providers.get("gmx"))) is ProviderHooks
    with pytest.raises(ValueError, match="already registered"):
        providers.register("zoho")(type("Other", (ProviderHooks,), {}))


# --- broken preset files fail loudly ----------------------------------------------------

GOOD = """
name = "broken"
title = "t"
imap_host = "h"
auth = ["password"]
"""


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (GOOD + "bogus = 1\n", "bogus"),  # extra keys forbidden
        (GOOD + "[quirks]\nmax_conections = 2\n", "max_conections"),
        (GOOD + "[quirks]\nthrottle_patterns = ['(']\n", "bad throttle pattern"),
        (GOOD + "oauth = 'google'\n[special_folders]\n'\\\\Outbox' = 'x'\n", "unknown special-use"),
        (GOOD.replace('["password"]', '["xoauth2"]'), "needs an 'oauth' flow"),
        (GOOD + "smtp_host = 's'\n", "go together"),
        (GOOD.replace('"broken"', '"other"'), "does not match the file name"),
        ("name = ", "broken.toml"),  # invalid TOML
        (GOOD + "imap_port = '993'\n", "imap_port"),  # wrong type
        (GOOD + "imap_port = 70000\n", "<= 65535"),
        (GOOD + "imap_security = 'tls'\n", "'ssl', 'starttls', 'none'"),
        (GOOD.replace('["password"]', '[]'), "at least 1"),
        (GOOD.replace('["password"]', '["pasword"]'), "auth[0]"),
        (GOOD + "[quirks]\nmax_connections = 0\n", ">= 1"),
        (GOOD + "[quirks]\nthrottle_delay = -1\n", "> 0"),
        (GOOD + "[quirks]\nensure_trailing_crlf = 'yes'\n", "ensure_trailing_crlf"),
        (GOOD + "[quirks]\ndrop_flags = [1]\n", "drop_flags[0]"),
        (GOOD.replace('title = "t"\n', ""), "missing key(s) title"),
        (GOOD + "quirks = 3\n", "quirks"),
    ],
)
def test_broken_preset_names_its_file(tmp_path: Path, text: str, needle: str) -> None:
    file = tmp_path / "broken.toml"
    file.write_text(text, encoding="utf-8")
    with pytest.raises(PresetError) as info:
        load_preset_file(file)
    assert "broken.toml" in str(info.value)
    assert needle in str(info.value)


def test_a_domain_claimed_twice_fails() -> None:
    a = ProviderPreset(name="a", title="A", imap_host="h", auth=["password"], domains=["x.org"])
    b = ProviderPreset(name="b", title="B", imap_host="h", auth=["password"], domains=["X.org"])
    with pytest.raises(PresetError, match="already claimed by a.toml"):
        providers._index([a, b])


# --- describe ---------------------------------------------------------------------------


def test_provider_rows() -> None:
    rows = provider_rows()
    assert [r["name"] for r in rows] == providers.names()
    for row in rows:
        assert tuple(row) == COLUMNS
        assert all(isinstance(v, str) and v for v in row.values())
    gmail = next(r for r in rows if r["name"] == "gmail")
    assert gmail["imap"] == "imap.gmail.com:993 ssl"
    assert gmail["smtp"] == "smtp.gmail.com:465 ssl"
    assert gmail["size_limit"] == "34 MiB" and gmail["max_connections"] == "10"


def test_format_bytes() -> None:
    assert format_bytes(None) == "-"
    assert format_bytes(512) == "512 B"
    assert format_bytes(36_700_160) == "35 MiB"
    assert format_bytes(1_500_000) == "1.4 MiB"
