"""Plan a job's folders and create the ones the target lacks.

Two steps, kept apart so that the decisions can be tested without a server:

* ``plan_job_folders`` (pure): both sides' folder listings, the job's include/exclude/map options
  and the targets earlier runs recorded -> a ``FolderPlan`` (``migrate.folders.plan_folders``).
* ``FolderCreator`` (writes through the target endpoint, nothing else): creates every planned
  folder the target lacks, under safer names when the target refuses one, moves a folder off a
  name the provider keeps for itself, and hands each final target to ``record`` as soon as it is
  known (the job writes it to its journal, so that every later run reuses it). A write gate that
  is closed (a dry run, ``migrate.gate``) makes the creation a recorded no-op: the plan is the
  same as a real run's.

``count_refused`` turns a folder the target refused under every name into failed messages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..endpoint import Endpoint
from ..errors import FolderRefused
from ..folders import FolderMapping, FolderPlan, fallback_name, name_candidates, plan_folders
from ..models import FolderInfo, Namespace
from ..report import Failure, FolderReport

if TYPE_CHECKING:
    from ..providers import ProviderHooks

#: (source folder, target folder, reason): one folder's target, for the journal's folder map.
MapRow = tuple[str, str, str]


@dataclass(frozen=True)
class Listing:
    """Both sides' folders, as planning read them."""

    src_ns: Namespace
    src_folders: list[FolderInfo]
    dst_ns: Namespace
    dst_folders: list[FolderInfo]

    @classmethod
    def read(cls, src: Endpoint, dst: Endpoint) -> Listing:
        return cls(src.namespace(), src.list_folders(), dst.namespace(), dst.list_folders())


def plan_job_folders(listing: Listing, *, include: Sequence[str] = (), exclude: Sequence[str] = (),
                     map_folder: Mapping[str, str] | None = None, target_special: Mapping[str, str] | None = None,
                     recorded: Mapping[str, str] | None = None, source_hooks: ProviderHooks | None = None,
                     target_hooks: ProviderHooks | None = None) -> FolderPlan:
    """Where each source folder goes. A folder's target is decided once: what earlier runs
    recorded (``recorded``) wins. The hooks: the sides' provider behaviour (labels, ...)."""
    return plan_folders(listing.src_ns, listing.src_folders, listing.dst_ns, listing.dst_folders,
                        include=include, exclude=exclude, map_folder=dict(map_folder or {}),
                        target_special=dict(target_special) if target_special else None,
                        recorded=dict(recorded or {}), source_hooks=source_hooks, target_hooks=target_hooks)


@dataclass
class Created:
    """What creating the folders decided."""

    plan: FolderPlan  # every mapping with its final target (None: no name worked)
    renamed: list[dict[str, str]] = field(default_factory=list)  # for the report's renamed_folders
    refused: dict[str, str] = field(default_factory=dict)  # source folder -> the server's answer


class FolderCreator:
    """Creates the planned folders the target lacks (see the module docstring)."""

    def __init__(self, dst: Endpoint, listing: Listing, *, reserved: Sequence[str] = (),
                 recorded: Mapping[str, str] | None = None,
                 record: Callable[[list[MapRow]], None] | None = None,
                 on_refused: Callable[[str, str], None] | None = None) -> None:
        self.dst = dst
        self.listing = listing
        self.reserved = list(reserved)
        self.recorded = dict(recorded or {})
        self.record = record
        self.on_refused = on_refused

    def create(self, plan: FolderPlan) -> Created:
        """Create every planned folder the target lacks (a special one with its SPECIAL-USE where
        the target can). A refused name is retried under ever safer names (``name_candidates``);
        a folder that no name works for fails alone: its mapping loses its target and
        ``Created.refused`` keeps the server's answer."""
        done = Created(plan=plan, renamed=[r.as_dict() for r in plan.renamed])  # name collisions
        recorded = self.recorded
        existing = {f.name for f in self.listing.dst_folders}
        existing_ci = {n.casefold() for n in existing if n.upper() == "INBOX"}
        claimed = {m.target for m in plan.mappings if m.target}  # by the source folders of this plan
        taken = set(existing) | claimed
        ns = self.listing.dst_ns
        reserved = {r.casefold() for r in self.reserved}
        special_of = {name: role for role, name in plan.new_special.items()}
        create_special = getattr(self.dst, "create_special_folder", None)
        out: list[FolderMapping] = []
        renamed_parent: dict[str, str] = {}
        pending: list[MapRow] = []

        def record(m: FolderMapping, target: str) -> None:
            if recorded.get(m.source) != target:
                recorded[m.source] = target
                pending.append((m.source, target, m.reason))

        def flush() -> None:
            if pending and self.record is not None:
                self.record(list(pending))
            pending.clear()

        try:
            for m in plan.mappings:
                if m.target is None:
                    out.append(m)
                    continue
                target = m.target
                for old, new in renamed_parent.items():  # children follow a renamed parent
                    if ns.delimiter and target.startswith(old + ns.delimiter):
                        target = new + target[len(old):]
                if target.casefold() in reserved:
                    new = fallback_name(target, ns, taken | set(self.reserved))
                    taken.add(new)
                    renamed_parent[target] = new
                    done.renamed.append(
                        {"source": m.source, "wanted": target, "target": new, "reason": "reserved by the provider"})
                    target = new
                if target in existing or target.casefold() in existing_ci or target.upper() == "INBOX":
                    out.append(dataclasses.replace(m, target=target))
                    record(m, target)
                    continue
                role = special_of.get(m.target)
                # Only the levels below the deepest folder that exists are ours to rename.
                parent = max((p for p in existing if ns.delimiter and target.startswith(p + ns.delimiter)),
                             key=len, default="")
                refusals: list[FolderRefused] = []
                chosen = None
                # Suffixes only against names other source folders claim: a fallback that exists
                # already is used as it is, like any planned name that exists (a run that lost its
                # journal finds '_backup' again instead of making '_backup (2)').
                for name in name_candidates(target, ns, claimed - {target}, keep=parent):
                    if name in existing:
                        chosen = name
                        break
                    try:
                        if role and create_special is not None:
                            create_special(name, role)
                        else:
                            self.dst.create_folder(name)
                    except FolderRefused as exc:
                        refusals.append(exc)
                        continue
                    chosen = name
                    break
                if chosen is None:
                    why = refusals[0].message + (f" ({len(refusals)} names tried)" if len(refusals) > 1 else "")
                    done.refused[m.source] = why
                    if self.on_refused is not None:
                        self.on_refused(m.source, why)
                    out.append(dataclasses.replace(m, target=None, reason=f"not created: {why}"))
                    continue
                if chosen != target:
                    taken.add(chosen)
                    claimed.add(chosen)
                    renamed_parent[target] = chosen
                    done.renamed.append(
                        {"source": m.source, "wanted": target, "target": chosen, "reason": refusals[0].message})
                existing.add(chosen)
                out.append(dataclasses.replace(m, target=chosen))
                record(m, chosen)
                flush()  # created: from now on this is where the folder lives, even after a crash
        finally:
            flush()
        plan.mappings = out
        return done


def count_refused(reports: Sequence[FolderReport], refused: Mapping[str, str], counts: Mapping[str, int]) -> None:
    """A folder the target refused under every name: its messages (``counts``: source folder ->
    messages) count as failed (the job ends "partial"), with the server's answer as the reason."""
    for fr in reports:
        why = refused.get(fr.source)
        if why is None or fr.failures:
            continue
        fr.source_messages = fr.source_messages or counts.get(fr.source, 0)
        fr.failed = counts.get(fr.source, 0)
        fr.note = f"not created: {why}"
        fr.failures.append(Failure(folder=fr.source, reason=f"folder not created: {why}"))
