"""Options for one side + its provider preset -> where and how to connect: the one resolver.

Both the command line (``migrate.sides.build_side``) and a CSV row (``migrate.csvbatch.reader``)
call ``resolve_connection``, so the same inputs always give the same settings.

The rule, in order:

* preset: the one named (``provider``), else the one whose domains hold the address, else none
  (a plain IMAP server: then ``host`` is required);
* host: the one given, else the preset's;
* security: the one given; else, with an explicit port, the conventional security of that port
  (993 -> ssl, 143 -> starttls, any other port -> the preset's, ssl without one); else the
  preset's (ssl without one);
* port: the one given; else the preset's when the security is the preset's; else the
  conventional port of the security (ssl -> 993, starttls and none -> 143);
* login: the username given; else the address's local part for a preset that logs in with it
  (``username = "localpart"``); else None (the address).
"""

from __future__ import annotations

from dataclasses import dataclass

from migrate.models import Security
from migrate.providers.base import ProviderPreset

SECURITIES: tuple[Security, ...] = ("ssl", "starttls", "none")
PORT_SECURITY: dict[int, Security] = {993: "ssl", 143: "starttls"}


class NoHost(ValueError):
    """Neither an explicit host nor a preset with one: the caller says which option to give."""


@dataclass(frozen=True)
class ConnectionSettings:
    preset: ProviderPreset | None  # None: a plain IMAP server no preset knows
    host: str
    port: int
    security: Security
    username: str | None  # the login, when it is not the address

    @property
    def provider(self) -> str | None:
        return self.preset.name if self.preset is not None else None

    @property
    def at_preset_host(self) -> bool:
        """The preset's own server (not a host the user pointed elsewhere)."""
        return self.preset is not None and self.host.lower() == (self.preset.imap_host or "").lower()


def choose_preset(email: str, provider: str | None) -> ProviderPreset | None:
    """The preset named (``UsageError`` if unknown), else the one detected from the address."""
    from migrate import providers

    return providers.get(provider) if provider else providers.detect(email)


def resolve_connection(email: str, *, provider: str | None = None, host: str | None = None,
                       port: int | None = None, security: str | None = None,
                       username: str | None = None,
                       preset: ProviderPreset | None = None) -> ConnectionSettings:
    """Options (validated by the caller: a port number, one of ``SECURITIES``) -> settings.

    ``preset``: already chosen by the caller (else ``choose_preset(email, provider)``).
    ``NoHost`` when no host is given and the preset has none."""
    if preset is None:
        preset = choose_preset(email, provider)
    host = host or (preset.imap_host if preset else None)
    if not host:
        raise NoHost(f"no IMAP server known for '{email.rpartition('@')[2]}'")
    preset_security: Security = preset.imap_security if preset else "ssl"
    sec: Security
    if security:
        sec = security.lower()  # type: ignore[assignment]
    elif port:
        sec = PORT_SECURITY.get(port, preset_security)
    else:
        sec = preset_security
    if not port:
        port = preset.imap_port if preset and sec == preset.imap_security else (993 if sec == "ssl" else 143)
    login = username or None
    if login is None and preset is not None and preset.username == "localpart":
        login = email.partition("@")[0]
    return ConnectionSettings(preset=preset, host=host, port=port, security=sec, username=login)
