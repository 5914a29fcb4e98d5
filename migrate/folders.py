"""Map a source folder tree onto a target account (pure logic, no network).

Naming rules, in order of precedence (``plan_folders``):

* ``map_folder`` overrides win. Keys are a source name as listed (``INBOX.Work``) or its
  parts joined with ``/`` (``Work``); values are FULL target names in the target's own naming
  (prefix and target delimiter included) and are used as-is. Children of an overridden
  folder follow it unless they have their own override.
* INBOX (any case) maps to ``INBOX``.
* ``recorded`` names (what an earlier run of the same job decided, from the journal) are kept:
  a folder never moves between runs.
* Special folders (\\Sent \\Drafts \\Trash \\Junk \\Archive) map onto the target's own folder
  of that role (``special``); if the target has none, onto the source's last name part at the
  target top level (directly under INBOX if the source was) and ``FolderPlan.new_special``
  tells the caller to create it with that role (``special-new``).
* Everything else is translated part by part: the source personal prefix is removed, the
  name is split on the source delimiter, and the parts are joined with the target delimiter
  under the target prefix. A part containing the TARGET delimiter has that character
  replaced by ``_`` (``a.b`` -> ``a_b`` on a ``.`` server) so it never becomes two levels.
  Leading repeated INBOX levels collapse, so ``INBOX.INBOX.x`` is never produced. A child
  follows its parent's final name (``Sent Items/2019`` -> ``Sent/2019``).

Two source folders never share a target name: fixed names (overrides, INBOX, specials) claim
first in source order, then the others in source order (parents before their children); a
later claimant gets `` (2)``, `` (3)``... and is listed in ``FolderPlan.renamed``.

A name the target refuses to CREATE is retried under the names ``name_candidates`` gives (ever
safer, down to plain ASCII); the caller records the one accepted.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from .errors import UsageError
from .imap import utf7 as imap_utf7
from .models import SPECIAL_USES, FolderInfo, Namespace

if TYPE_CHECKING:
    from .providers import ProviderHooks

ROLE_NAMES: dict[str, tuple[str, ...]] = {
    # Order is the priority among name matches (first wins).
    "\\Sent": ("Sent", "Sent Items", "Sent Messages", "Sent Mail", "Gesendet", "Gesendete Objekte",
               "Gesendete Elemente", "Éléments envoyés", "Messages envoyés", "Envoyés", "Posta inviata",
               "Inviati", "Elementos enviados", "Enviados"),
    "\\Drafts": ("Drafts", "Entwürfe", "Brouillons", "Bozze", "Borradores"),
    "\\Trash": ("Trash", "Deleted Items", "Deleted Messages", "Papierkorb", "Gelöschte Objekte",
                "Gelöschte Elemente", "Corbeille", "Éléments supprimés", "Cestino", "Elementi eliminati",
                "Papelera", "Bin"),
    "\\Junk": ("Junk", "Junk E-mail", "Junk Email", "Spam", "Bulk Mail", "Spamverdacht",
               "Courrier indésirable", "Indésirables", "Posta indesiderata"),
    "\\Archive": ("Archive", "Archives", "Archiv", "Archivio", "Archivo"),
}
MAPPED_ROLES = tuple(ROLE_NAMES)
CANONICAL_NAMES = {"\\Sent": "Sent", "\\Drafts": "Drafts", "\\Trash": "Trash", "\\Junk": "Junk",
                   "\\Archive": "Archive"}
_ATTRS = {u.lower(): u for u in SPECIAL_USES}
_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _norm(s: str) -> str:
    return unicodedata.normalize("NFC", s).casefold()


_ROLE_KEYS = {role: [_norm(n) for n in names] for role, names in ROLE_NAMES.items()}


@dataclass(frozen=True)
class FolderMapping:
    """One source folder and where it goes. ``target`` None = skipped; ``reason`` says why.

    ``special_use`` is the role this folder holds on the source (only for the folder chosen for
    a role, and for skipped Gmail views); ``selectable`` False = create it, copy nothing.
    """

    source: str
    target: str | None
    reason: str
    special_use: str | None
    selectable: bool
    after_labels: bool = False  # a label source's \\All folder: copied last, only what no label holds


@dataclass(frozen=True)
class Renamed:
    source: str
    wanted: str
    target: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "wanted": self.wanted, "target": self.target, "reason": self.reason}


@dataclass
class FolderPlan:
    mappings: list[FolderMapping]
    renamed: list[Renamed] = field(default_factory=list)
    gmail: bool = False
    #: role -> target name the caller must CREATE (the target had no folder for that role)
    new_special: dict[str, str] = field(default_factory=dict)
    #: ``include`` patterns and ``map_folder`` sources that name no source folder (``check_patterns``)
    unmatched_include: list[str] = field(default_factory=list)
    unmatched_map: dict[str, str] = field(default_factory=dict)

    def target_for(self, source: str) -> str | None:
        return next((m.target for m in self.mappings if m.source == source), None)


# --- modified UTF-7 (the rest of the code never imports imapclient for this) ------------


def encode_mutf7(name: str) -> bytes:
    return imap_utf7.encode(name)


def decode_mutf7(data: bytes) -> str:
    """Decode a listed name. 8-bit bytes cannot be mUTF-7: they are UTF-8 (UTF8=ACCEPT)."""
    if any(b >= 0x80 for b in data):
        return data.decode("utf-8", "replace")
    try:
        return imap_utf7.decode(data)
    except (UnicodeDecodeError, ValueError):  # malformed shift sequence: show it, don't crash
        return data.decode("ascii", "replace")


# --- names --------------------------------------------------------------------------------


class _Root:
    """Anchor: the top level of the target personal namespace."""


ROOT = _Root()


def _prefix(ns: Namespace, delim: str | None) -> str:
    p = ns.prefix
    if p and delim and not p.endswith(delim):
        p += delim
    return p


def _has_prefix(name: str, prefix: str) -> bool:
    if prefix.upper().startswith("INBOX"):  # INBOX is case-insensitive
        return name[: len(prefix)].upper() == prefix.upper()
    return name.startswith(prefix)


def split_name(name: str, delimiter: str | None, ns: Namespace) -> tuple[tuple[str, ...], bool]:
    """Parts relative to the personal namespace, and whether ``name`` is INBOX itself.

    A leading ``INBOX`` part means 'under INBOX' (``INBOX/foo`` on a prefix-less server).
    """
    if name.upper() == "INBOX":
        return ("INBOX",), True
    delim = delimiter or ns.delimiter
    prefix = _prefix(ns, delim)
    rest = name[len(prefix):] if prefix and _has_prefix(name, prefix) else name
    parts = rest.split(delim) if delim else [rest]
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    while len(parts) >= 2 and parts[0] == "INBOX" and parts[1].upper() == "INBOX":
        del parts[1]  # INBOX.INBOX.x (an earlier bad migration) is INBOX.x
    return tuple(parts), False


def _clean_part(part: str) -> str:
    part = _CTRL.sub("_", part.strip())
    if part[:1] in ("~", "."):
        part = "_" + part[1:]
    return part or "_"


def sanitize_for_target(name: str, target_ns: Namespace) -> str:
    """Per part: strip blanks, control chars and a leading ``~``/``.`` -> ``_``, empty -> ``_``."""
    if name.upper() == "INBOX":
        return "INBOX"
    delim = target_ns.delimiter
    prefix = _prefix(target_ns, delim)
    head = name[: len(prefix)] if prefix and _has_prefix(name, prefix) else ""
    parts = name[len(head):].split(delim) if delim else [name[len(head):]]
    start = 1 if head == "" and len(parts) > 1 and parts[0].upper() == "INBOX" else 0
    cleaned = parts[:start] + [_clean_part(p) for p in parts[start:]]
    return head + (delim or "").join(cleaned)


def fallback_name(name: str, target_ns: Namespace, taken: set[str]) -> str:
    """A name to try after the target refused to CREATE ``name``: sanitized, never ``name``
    itself, and not in ``taken`` (`` (2)``, `` (3)``... appended). Deterministic."""
    base = sanitize_for_target(name, target_ns)
    candidate, n = base, 2
    while candidate == name or candidate in taken:
        candidate, n = f"{base} ({n})", n + 1
    return candidate


_STRICT = re.compile(r'["\\%*\x00-\x1f\x7f-\x9f]')
_INVISIBLE = re.compile("[\u200b-\u200d\u2060\ufe0e\ufe0f]")  # what emoji leave behind
_NOT_PLAIN = re.compile(r"[^A-Za-z0-9 _.,+=@#!'()\[\]-]+")


def _strict_part(part: str) -> str:
    """What a strict server accepts (Cyrus refuses ``"``; others anything outside the BMP):
    ``"``, ``\\``, ``%``, ``*`` and control characters -> ``_``; emoji and every other character
    outside the Basic Multilingual Plane removed."""
    part = "".join(ch for ch in part if ord(ch) <= 0xFFFF and not 0xD800 <= ord(ch) <= 0xDFFF)
    part = _STRICT.sub("_", _INVISIBLE.sub("", part))
    return _clean_part(re.sub(r"\s{2,}", " ", part))


def _ascii_part(part: str) -> str:
    """Plain ASCII: accents dropped (NFKD: ``ü`` -> ``u``), any other run of characters outside
    letters, digits, blank and ``_.,+=@#!'()[]-`` (``&`` included) -> one ``_``."""
    part = unicodedata.normalize("NFKD", _strict_part(part))
    part = "".join(ch for ch in part if not unicodedata.combining(ch))
    return _clean_part(_NOT_PLAIN.sub("_", part))


def _rewrite(name: str, target_ns: Namespace, fix: Callable[[str], str], keep: str) -> str:
    """``fix`` applied to each part of ``name`` below the namespace prefix and below ``keep``
    (a parent that exists already: its name is not ours to change any more)."""
    if name.upper() == "INBOX":
        return "INBOX"
    delim = target_ns.delimiter
    prefix = _prefix(target_ns, delim)
    head = name[: len(prefix)] if prefix and _has_prefix(name, prefix) else ""
    if delim and keep and len(keep) >= len(head) and name.startswith(keep + delim):
        head = keep + delim
    parts = name[len(head):].split(delim) if delim else [name[len(head):]]
    start = 1 if head == "" and len(parts) > 1 and parts[0].upper() == "INBOX" else 0
    return head + (delim or "").join(parts[:start] + [fix(p) for p in parts[start:]])


def name_candidates(name: str, target_ns: Namespace, taken: set[str] | frozenset[str] = frozenset(),
                    *, keep: str = "") -> list[str]:
    """Names to try, in order, to create the folder planned as ``name``, until the target accepts
    one: ``name`` itself, then ever safer rewrites of each part (below ``keep``):

    1. sanitized (``sanitize_for_target``: blanks, control characters, leading ``~``/``.``);
    2. strict: ``"``, ``\\``, ``%``, ``*`` -> ``_``, nothing outside the BMP (emoji);
    3. plain ASCII (``Müller`` -> ``Muller``, ``&`` and other characters -> ``_``).

    A rewrite equal to an earlier one is left out; one that is in ``taken`` gets `` (2)``,
    `` (3)``.... If no rewrite changes anything, ``name (2)`` is the one fallback. Deterministic."""
    out, bases = [name], [name]
    for fix in (_clean_part, _strict_part, _ascii_part):
        base = _rewrite(name, target_ns, fix, keep)
        if base in bases:
            continue
        bases.append(base)
        candidate, n = base, 2
        while candidate in taken or candidate in out:
            candidate, n = f"{base} ({n})", n + 1
        out.append(candidate)
    if len(out) == 1 and name.upper() != "INBOX":
        n = 2
        while f"{name} ({n})" in taken:
            n += 1
        out.append(f"{name} ({n})")
    return out


def _collision_key(name: str, delim: str | None) -> str:
    up = name.upper()
    if up == "INBOX" or (delim and up.startswith("INBOX" + delim)):
        return "INBOX" + name[5:]
    return name


# --- planning -----------------------------------------------------------------------------


@dataclass
class _Entry:
    index: int
    info: FolderInfo
    parts: tuple[str, ...]
    inbox: bool
    attr: str | None


def _entries(ns: Namespace, folders: Sequence[FolderInfo]) -> list[_Entry]:
    out = []
    for i, f in enumerate(folders):
        parts, inbox = split_name(f.name, f.delimiter, ns)
        attrs = [f.special_use] if f.special_use else []
        attrs += sorted(f.flags)  # some listings only carry the attribute among the flags
        attr = next((_ATTRS[a.lower()] for a in attrs if a.lower() in _ATTRS), None)
        out.append(_Entry(i, f, parts, inbox, attr))
    return out


def _roles(entries: list[_Entry], containers: Iterable[str]) -> dict[str, _Entry]:
    """Role -> the one folder holding it: attribute first, else the best well-known name at top
    level (or directly under INBOX / a Gmail container)."""
    parents = {"INBOX", *containers}
    holders: dict[str, _Entry] = {}
    for e in entries:
        if e.attr in MAPPED_ROLES and e.attr not in holders and not e.inbox:
            holders[e.attr] = e
    candidates = [e for e in entries if not (e.attr or e.inbox) and e.info.selectable
                  and (len(e.parts) == 1 or (len(e.parts) == 2 and e.parts[0] in parents))]
    for role, keys in _ROLE_KEYS.items():
        ranked = [((keys.index(k), len(e.parts), e.index), e) for e in candidates
                  if (k := _norm(e.parts[-1])) in keys]
        if role not in holders and ranked:
            holders[role] = min(ranked, key=lambda r: r[0])[1]
    return holders


def _escape(s: str) -> str:
    return re.sub(r"([*?[])", r"[\1]", s)


def plan_folders(
    source_ns: Namespace,
    source_folders: Sequence[FolderInfo],
    target_ns: Namespace,
    target_folders: Sequence[FolderInfo],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    map_folder: Mapping[str, str] | None = None,
    target_special: Mapping[str, str] | None = None,
    gmail: bool | None = None,
    sanitize: bool = False,
    recorded: Mapping[str, str] | None = None,
    source_hooks: ProviderHooks | None = None,
    target_hooks: ProviderHooks | None = None,
) -> FolderPlan:
    """Plan every source folder (see the module docstring for the naming rules).

    ``include``/``exclude``: fnmatch patterns (case-sensitive; ``*`` also crosses levels) tried
    on the listed name and on the parts joined with ``/``; a pattern starting with a role
    (``\\Trash``, ``\\Trash/*``) stands for the source folder holding that role. Exclude wins;
    empty include = all. A pattern only skips what it matches: children of an excluded parent
    stay unless matched too (``Trash*`` takes the subtree). Exclusion beats ``map_folder``.
    ``target_special``: role -> target name known in advance (provider preset); it beats a
    guess by localized name, never the target's own SPECIAL-USE attribute.
    ``gmail``: force label handling (``ProviderHooks.label_tree``) on/off (default: the source
    hooks decide; a ``\\All`` folder means labels).
    ``source_hooks``/``target_hooks``: the sides' provider hooks (default: a plain IMAP server's).
    ``sanitize``: clean translated name parts proactively (default: keep names exactly).
    ``recorded``: source name -> the target name an earlier run of this job gave it (journal).
    It beats every rule but an override and INBOX, and claims first, so that a folder never
    moves between runs (a target without SPECIAL-USE, a name the target refused...); a child
    without a record of its own follows its parent's recorded name.
    """
    overrides = dict(map_folder or {})
    decided = dict(recorded or {})
    tdelim = target_ns.delimiter
    tprefix = _prefix(target_ns, tdelim)
    src = _entries(source_ns, source_folders)
    if source_hooks is None or target_hooks is None:
        from .providers import generic_hooks
        source_hooks, target_hooks = source_hooks or generic_hooks(), target_hooks or generic_hooks()
    all_entry = next((e for e in src if e.attr == "\\All" and not e.inbox), None)
    labels = source_hooks.label_tree(all_entry is not None if gmail is None else gmail)
    is_gmail = labels is not None
    views = labels.views if labels is not None else ()
    fx_all = labels.all_reason if labels is not None else None  # the \\All folder's reason
    all_entry = all_entry if is_gmail else None
    containers: set[str] = set(labels.containers) if labels is not None else set()
    # The \Noselect level above All Mail & co. disappears (a selectable one holds mail: it stays)
    if all_entry and len(all_entry.parts) == 2 and all_entry.parts[0] != "INBOX" and not any(
            e.parts == all_entry.parts[:1] and e.info.selectable for e in src):
        containers.add(all_entry.parts[0])
    roles = _roles(src, containers)
    if all_entry:
        roles["\\Archive"] = all_entry  # All Mail is the archive; any other Archive keeps its name
    role_of = {e.index: r for r, e in roles.items()}
    detected = _roles(_entries(target_ns, target_folders), target_hooks.container_names())
    tgt_roles = {r: e.info.name for r, e in detected.items()}
    # The target's own SPECIAL-USE attribute wins; a preset's name beats only a guess by name.
    for role, name in (target_special or {}).items():
        if role not in detected or not detected[role].attr:
            tgt_roles[role] = name

    by_parts: dict[tuple[str, ...], _Entry] = {}
    for e in sorted(src, key=lambda e: not e.inbox):  # the real INBOX wins the ("INBOX",) slot
        by_parts.setdefault(e.parts, e)

    def is_container(e: _Entry) -> bool:
        return is_gmail and not e.info.selectable and len(e.parts) == 1 and e.parts[0] in containers

    def forms(e: _Entry) -> tuple[str, str]:
        return e.info.name, "/".join(e.parts)

    def matches(pattern: str, e: _Entry) -> bool:
        role = next((r for r in SPECIAL_USES if pattern.lower().startswith(r.lower())), None)
        if role is None:
            return any(fnmatchcase(f, pattern) for f in forms(e))
        rest = pattern[len(role):]  # "\Trash/*": the role holder's name stands for the token
        holders = [roles[role]] if role in roles else [h for h in src if h.attr == role]
        return any(h is e if not rest else any(fnmatchcase(f, _escape(hf) + rest)
                                               for f in forms(e) for hf in forms(h)) for h in holders)

    def override_for(e: _Entry) -> str | None:
        if e.info.name in overrides:
            return overrides[e.info.name]
        if by_parts[e.parts] is e:  # the '/' form names one folder only (INBOX vs INBOX.INBOX)
            return overrides.get("/".join(e.parts))
        return None

    def skip_reason(e: _Entry) -> str | None:
        if any(matches(p, e) for p in exclude):
            return "excluded"
        if include and not any(matches(p, e) for p in include):
            return "not-included"
        if override_for(e) is not None:
            return None
        if labels is not None and is_container(e):
            return labels.container_reason
        if labels is not None and e.attr in views:
            return labels.view_reason
        return None

    def join(anchor: str | _Root, part: str) -> str:
        if tdelim:
            part = part.replace(tdelim, "_")
        if sanitize:
            part = _clean_part(part)
        if isinstance(anchor, _Root):
            return "INBOX" if part.upper() == "INBOX" else tprefix + part
        return anchor + (tdelim or "/") + part  # flat target: keep the levels visible with '/'

    taken: dict[str, _Entry] = {}
    renamed: list[Renamed] = []
    new_special: dict[str, str] = {}
    names: dict[int, str | _Root] = {}
    reasons: dict[int, str] = {}
    skipped = {e.index: r for e in src if (r := skip_reason(e))}
    # A pattern or override that names no folder is most likely a typo: kept for check_patterns.
    unmatched_include = [p for p in include if not any(matches(p, e) for e in src)]
    used_maps = {k for e in src for k in forms(e) if k in overrides and (k == e.info.name or by_parts[e.parts] is e)}
    unmatched_map = {k: v for k, v in overrides.items() if k not in used_maps}
    if inbox := next((e for e in src if e.inbox), None):
        taken["INBOX"] = inbox  # even overridden or excluded, nothing else becomes the INBOX

    def claim(name: str, e: _Entry) -> str:
        key = _collision_key(name, tdelim)
        if taken.get(key, e) is e:
            taken[key] = e
            return name
        n = 2
        while True:
            cand = join(ROOT, f"INBOX ({n})") if name.upper() == "INBOX" else f"{name} ({n})"
            if _collision_key(cand, tdelim) not in taken:
                break
            n += 1
        renamed.append(Renamed(e.info.name, name, cand, f"collides with {taken[key].info.name}"))
        taken[_collision_key(cand, tdelim)] = e
        return cand

    def fixed(e: _Entry) -> tuple[str, str] | None:
        """(name, reason) for folders whose target does not depend on their parents."""
        if (o := override_for(e)) is not None:
            return o, "override"
        if e.inbox:
            return "INBOX", "inbox"
        role = role_of.get(e.index)
        earlier = decided.get(e.info.name)
        if role is None:
            return None if earlier is None else (earlier, "folder")
        reason = labels.all_reason if labels is not None and e is all_entry else "special"
        if role in tgt_roles:
            return earlier or tgt_roles[role], reason
        last = CANONICAL_NAMES[role] if e is all_entry or e.parts[-1].upper() == "INBOX" else e.parts[-1]
        anchor: str | _Root = "INBOX" if len(e.parts) == 2 and e.parts[0] == "INBOX" else ROOT
        return earlier or join(anchor, last), reason if e is all_entry else "special-new"

    def resolve(e: _Entry) -> str | _Root:
        if e.index in names:
            return names[e.index]
        fx = fixed(e)
        if fx:
            name: str | _Root = fx[0]
            reasons[e.index] = fx[1]
        elif labels is not None and is_container(e):
            name, reasons[e.index] = ROOT, labels.container_reason
        else:
            anchor: str | _Root = ROOT
            rest = e.parts
            for k in range(len(e.parts) - 1, 0, -1):
                parent = by_parts.get(e.parts[:k])
                if parent is not None:
                    anchor, rest = resolve(parent), e.parts[k:]
                    break
            else:
                if len(e.parts) > 1 and e.parts[0] == "INBOX":
                    anchor, rest = "INBOX", e.parts[1:]
            name = anchor
            for part in rest:
                name = join(name, part)
            reasons[e.index] = "folder"
        if e.index not in skipped and isinstance(name, str):
            name = claim(name, e)
            role = role_of.get(e.index)
            if reasons[e.index] in ("special-new", fx_all) and role and role not in tgt_roles:
                new_special[role] = name
        names[e.index] = name
        return name

    for e in sorted(src, key=lambda e: not e.inbox):  # INBOX, then other fixed names claim first
        if fixed(e) is not None:
            resolve(e)
    for e in src:
        resolve(e)

    def path(e: _Entry) -> tuple[str, ...]:
        name = names[e.index]
        return () if isinstance(name, _Root) else tuple(name.split(tdelim or "/"))

    # All Mail goes last (labels first, so its copies dedupe against them) with its subtree
    all_path = path(all_entry) if all_entry else None

    def order(e: _Entry) -> tuple[int, tuple[str, ...], int]:
        p = path(e)
        last = e is all_entry or (all_path and e.index not in skipped and p[: len(all_path)] == all_path)
        return (0 if e.inbox else 2 if last else 1, p, e.index)

    mappings = []
    listed = {r.source for r in renamed}
    for e in sorted(src, key=order):
        skip = skipped.get(e.index)
        name = names[e.index]
        role = "\\All" if e is all_entry else role_of.get(e.index) or (e.attr if e.attr in views else None)
        target = None if skip or isinstance(name, _Root) else name
        reason = skip or reasons[e.index]
        last = target.split(tdelim or "/")[-1] if target else None
        if (reason == "folder" and target and e.parts and e.info.name not in listed and tdelim
                and tdelim in e.parts[-1] and last != e.parts[-1]):
            # The report names every folder the user will not find as it was ('v1.2' -> 'v1_2').
            renamed.append(Renamed(e.info.name, target[: len(target) - len(last or "")] + e.parts[-1], target,
                                   f"'{tdelim}' separates folder levels on the target"))
        mappings.append(FolderMapping(e.info.name, target, reason, role, e.info.selectable,
                                      after_labels=e is all_entry and reason == fx_all))
    return FolderPlan(mappings, renamed, is_gmail, new_special, unmatched_include, unmatched_map)


_SHOW_FOLDERS = 40  # folder names an error lists before "... and N more"


def check_patterns(plan: FolderPlan) -> FolderPlan:
    """Refuse (``UsageError``, exit 2) an ``--include`` pattern or a ``--map-folder`` source that
    matches no source folder: a typo would otherwise copy nothing, or ignore the mapping, and
    report success. The error lists the folders the source has. Returns ``plan``."""
    wrong = [f"--include '{p}'" for p in plan.unmatched_include]
    wrong += [f"--map-folder '{k}={v}'" for k, v in plan.unmatched_map.items()]
    if not wrong:
        return plan
    names = [m.source for m in plan.mappings]
    shown = ", ".join(names[:_SHOW_FOLDERS])
    if len(names) > _SHOW_FOLDERS:
        shown += f" and {len(names) - _SHOW_FOLDERS} more (--dry-run lists them all)"
    what = " and ".join(wrong) if len(wrong) < 3 else ", ".join(wrong[:-1]) + " and " + wrong[-1]
    raise UsageError(f"{what} {'matches' if len(wrong) == 1 else 'match'} no source folder",
                     hint=f"the source has: {shown or 'no folders'}; names are case-sensitive (fnmatch "
                          "patterns like 'Sent*', or a role like \\Sent)")
