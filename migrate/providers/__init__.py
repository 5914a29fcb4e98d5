"""Registry of provider presets (``presets/*.toml``) and their hooks.

Presets are package data. Each file is validated when first read; ``names``/``detect``/
``all_presets`` read them all and check them against each other (two presets claiming one
domain). A broken or conflicting file raises ``PresetError`` naming the file; the test suite
loads them all, so a bad preset can never ship silently. ``get`` reads only the file it needs.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from migrate.errors import UsageError
from migrate.providers.base import _NAME_RE, PresetError, ProviderHooks, ProviderPreset, Quirks, from_mapping
from migrate.providers.connection import ConnectionSettings, choose_preset, resolve_connection

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "PresetError",
    "ProviderHooks",
    "ProviderPreset",
    "Quirks",
    "ConnectionSettings",
    "all_presets",
    "choose_preset",
    "detect",
    "generic_hooks",
    "get",
    "hooks_for",
    "load_preset_file",
    "names",
    "register",
    "resolve_connection",
]

_hooks: dict[str, type[ProviderHooks]] = {}


def load_preset_file(file: Traversable) -> ProviderPreset:
    """Parse and validate one preset file; its stem must equal its ``name``."""
    label = getattr(file, "name", str(file))
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
        preset = from_mapping(ProviderPreset, data)
    except (tomllib.TOMLDecodeError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise PresetError(f"provider preset {label}: {exc}") from exc
    stem = label.removesuffix(".toml")
    if preset.name != stem:
        raise PresetError(f"provider preset {label}: name {preset.name!r} does not match the file name")
    return preset


def _index(presets: Iterable[ProviderPreset]) -> tuple[dict[str, ProviderPreset], dict[str, str]]:
    by_name: dict[str, ProviderPreset] = {}
    by_domain: dict[str, str] = {}
    for preset in presets:
        for domain in preset.domains:
            if domain in by_domain:
                raise PresetError(
                    f"provider preset {preset.name}.toml: domain {domain!r} already claimed by "
                    f"{by_domain[domain]}.toml"
                )
            by_domain[domain] = preset.name
        by_name[preset.name] = preset
    return by_name, by_domain


def _folder() -> Traversable:
    here = Path(__file__).with_name("presets")
    if here.is_dir():  # installed normally (importlib.resources would cost 5 ms more per start)
        return here
    from importlib import resources  # e.g. from a zip

    return resources.files(__name__).joinpath("presets")


@cache
def _one(name: str) -> ProviderPreset | None:
    """One preset, reading only its own file: an import run needs just its two sides' presets."""
    file = _folder().joinpath(f"{name}.toml")
    return load_preset_file(file) if _NAME_RE.match(name) and file.is_file() else None


@cache
def _registry() -> tuple[dict[str, ProviderPreset], dict[str, str]]:
    folder = _folder()
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".toml")), key=lambda f: f.name)
    if not files:
        raise PresetError(f"no provider presets found in {folder} (package data missing?)")
    return _index(_one(f.name.removesuffix(".toml")) or load_preset_file(f) for f in files)


def names() -> list[str]:
    """All preset names, sorted."""
    return sorted(_registry()[0])


def all_presets() -> list[ProviderPreset]:
    """All presets, sorted by name."""
    by_name = _registry()[0]
    return [by_name[n] for n in sorted(by_name)]


def get(name: str) -> ProviderPreset:
    """The preset called ``name`` (case-insensitive); UsageError if there is none."""
    preset = _one(name.strip().lower())
    if preset is None:
        raise UsageError(
            f"unknown provider {name!r}",
            hint=f"valid providers: {', '.join(names())}",
            reference="unknown-provider",
        )
    return preset


def detect(email: str) -> ProviderPreset | None:
    """The preset whose domains include this address's domain, exactly; None if unknown."""
    local, at, domain = email.strip().rpartition("@")
    if not at or not local:
        return None
    by_name, by_domain = _registry()
    preset_name = by_domain.get(domain.lower().rstrip("."))
    return by_name[preset_name] if preset_name else None


def register(name: str) -> Callable[[type[ProviderHooks]], type[ProviderHooks]]:
    """Class decorator: use this ``ProviderHooks`` subclass for the preset ``name``."""

    def decorator(cls: type[ProviderHooks]) -> type[ProviderHooks]:
        if not issubclass(cls, ProviderHooks):
            raise TypeError(f"{cls.__name__} must subclass ProviderHooks")
        if name in _hooks and _hooks[name] is not cls:
            raise ValueError(f"hooks for provider {name!r} already registered: {_hooks[name].__name__}")
        _hooks[name] = cls
        return cls

    return decorator


def hooks_for(preset: ProviderPreset) -> ProviderHooks:
    """The hooks object for ``preset``: its registered subclass, else the data-only base."""
    from migrate.providers import hooks  # noqa: F401 - registers the subclasses

    return _hooks.get(preset.name, ProviderHooks)(preset)


@cache
def generic_hooks() -> ProviderHooks:
    """The hooks of a plain IMAP server no preset knows (the ``imap`` preset's: RFC behaviour)."""
    return hooks_for(get("imap"))
