"""Plain rows describing every preset, for ``mailmigrate providers`` to render.

Every value is a ready-to-print string so the CLI can pass a row straight to a table.
"""

from __future__ import annotations

from migrate.providers import all_presets
from migrate.providers.base import ProviderPreset

COLUMNS = (
    "name",
    "title",
    "domains",
    "imap",
    "smtp",
    "auth",
    "username",
    "max_connections",
    "size_limit",
    "hint",
)


def format_bytes(size: int | None) -> str:
    """Binary units, because APPENDLIMIT values are usually powers of two (35651584 = 34 MiB)."""
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" or value == int(value) else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def preset_row(preset: ProviderPreset) -> dict[str, str]:
    return {
        "name": preset.name,
        "title": preset.title,
        "domains": ", ".join(preset.domains) or "-",
        "imap": preset.imap_endpoint,
        "smtp": preset.smtp_endpoint or "-",
        "auth": ", ".join(preset.auth),
        "username": preset.username,
        "max_connections": str(preset.quirks.max_connections),
        "size_limit": format_bytes(preset.quirks.append_limit),
        "hint": preset.hint,
    }


def provider_rows() -> list[dict[str, str]]:
    """One row per preset (sorted by name), keys in ``COLUMNS`` order."""
    return [preset_row(p) for p in all_presets()]
