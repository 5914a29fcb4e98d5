"""Daily budgets: what a provider lets one account move per day, counted as bytes move.

Gmail lets one account download 2,500 MB a day over IMAP and upload 500 MB; a tool that pulls
more gets the account locked for up to a day. The budgets are preset data
(``ProviderPreset.budget``); a job keeps to them like this:

* every message body read from the source counts against the source account's download budget,
  every message APPENDed to the target against the target account's upload budget, in bytes
  actually moved, recorded per (account, direction, UTC day) in a store of its own
  (``budget_store``: ``_budgets.sqlite`` beside the journals, or the namespace ``_budgets`` of a
  PostgreSQL journal's database), so that two runs, two processes, two batch rows and two workers
  on two hosts of one account add up;
* before a batch is fetched, the messages that still fit today's budgets are reserved (in this
  process: parallel workers and batch rows share one ``BudgetGuard`` per account); when the next
  message would go over, the job stops cleanly with ``BudgetReached``: report status "waiting"
  and ``resume_at``, the next reset (00:00 UTC). A message bigger than a whole day's budget goes
  alone at the start of a day (it could never go otherwise);
* ``run_with_waits`` runs a job again at ``resume_at`` (the CLI; ``--no-wait`` exits 4 instead).

A test makes a budget small enough to trip with ``MAILMIGRATE_BUDGET_OVERRIDE`` (e.g.
``imap:download_mb_per_day=0.05``, several separated by commas) and moves the clock with
``utc_now`` (module attribute, read at every use).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from ..errors import ExitCode, FatalError, UsageError
from ..store.location import BUDGET_FILE as BUDGET_FILE  # re-exported: its name since budgets began
from ..store.location import JournalLocation, read_budget_used
from ..store.location import resolve as resolve_location
from .eta import Window, duration, human_bytes

if TYPE_CHECKING:
    from ..providers import ProviderPreset
    from ..report import JobReport
    from ..sides import Side

Direction = Literal["download", "upload"]
OVERRIDE_ENV = "MAILMIGRATE_BUDGET_OVERRIDE"
_FIELDS: dict[str, Direction] = {"download_mb_per_day": "download", "upload_mb_per_day": "upload"}
MB = 1_000_000


def utc_now() -> datetime:
    """The budgets' clock (tests replace it)."""
    return datetime.now(UTC)


def day_of(moment: datetime) -> str:
    """The budget day of ``moment``: its UTC date."""
    return moment.astimezone(UTC).date().isoformat()


def next_reset(moment: datetime) -> datetime:
    """When the budget day of ``moment`` ends: the next 00:00 UTC."""
    day = moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=1)


def megabytes(n: float) -> str:
    """``2,500 MB``; small test budgets keep their decimals: ``0.05 MB``."""
    mb = n / MB
    return f"{mb:,.0f} MB" if mb >= 10 else f"{mb:,.2f}".rstrip("0").rstrip(".") + " MB"


class BudgetReached(FatalError):
    """A daily budget is used up: the job stops (status "waiting") until ``resume_at``."""

    reference = "budget-reached"
    exit_code = ExitCode.CONNECTION

    def __init__(self, message: str, *, resume_at: datetime, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.resume_at = resume_at


# --- what a preset allows ------------------------------------------------------------------------


@dataclass(frozen=True)
class DailyLimit:
    """One account's budget in one direction."""

    account: str  # the account's label (login@host:port): whatever moves it, counts
    direction: Direction
    per_day: int  # bytes per UTC day
    provider: str  # "Gmail"
    preset: str  # "gmail"
    source: str = ""  # where the number comes from

    def says(self) -> str:
        """"Gmail allows 2,500 MB a day from one account"."""
        way = "from" if self.direction == "download" else "into"
        return f"{self.provider} allows {megabytes(self.per_day)} a day {way} one account"


def parse_override(text: str) -> dict[tuple[str, Direction], float]:
    """``gmail:download_mb_per_day=100,imap:upload_mb_per_day=0.05`` -> {(preset, direction): MB}."""
    out: dict[tuple[str, Direction], float] = {}
    hint = f"e.g. {OVERRIDE_ENV}=gmail:download_mb_per_day=100 (fields: {', '.join(_FIELDS)})"
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        preset, colon, rest = entry.partition(":")
        name, eq, value = rest.partition("=")
        if not (colon and eq and preset.strip()) or name.strip() not in _FIELDS:
            raise UsageError(f"{OVERRIDE_ENV}: '{entry}' is not PRESET:FIELD=MB", hint=hint)
        try:
            mb = float(value)
        except ValueError:
            mb = -1.0
        if not mb > 0 or mb == float("inf"):
            raise UsageError(f"{OVERRIDE_ENV}: '{entry}': the budget must be a number of MB above 0", hint=hint)
        out[(preset.strip().lower(), _FIELDS[name.strip()])] = mb
    if out:
        from ..providers import names
        unknown = sorted({preset for preset, _ in out} - set(names()))
        if unknown:
            raise UsageError(f"{OVERRIDE_ENV}: no provider preset {', '.join(map(repr, unknown))}",
                             hint=f"presets: {', '.join(names())}")
    return out


def preset_limit(preset: ProviderPreset, direction: Direction, account: str) -> DailyLimit | None:
    """The daily budget ``preset`` sets for ``account`` in ``direction`` (``OVERRIDE_ENV`` wins)."""
    b = preset.budget
    mb = b.download_mb_per_day if direction == "download" else b.upload_mb_per_day
    source = f"preset {preset.name}" + (f": {b.source}" if b.source else "")
    override = parse_override(os.environ.get(OVERRIDE_ENV, "")).get((preset.name, direction))
    if override is not None:
        mb, source = override, f"{OVERRIDE_ENV}"
    if not mb:
        return None
    return DailyLimit(account=account.lower(), direction=direction, per_day=max(1, int(mb * MB)),
                      provider=preset.short_title, preset=preset.name, source=source)


def daily_limits(src: Side, dst: Side) -> tuple[DailyLimit, ...]:
    """The budgets of a job between these sides: the source account's download budget and the
    target account's upload budget, for IMAP accounts whose preset (or the override) sets one."""
    out = []
    for side, direction in ((src, "download"), (dst, "upload")):
        if side.connection is None:  # a local Maildir or mbox: no provider counts
            continue
        limit = preset_limit(side.hooks.preset, direction, side.label)  # type: ignore[arg-type]
        if limit is not None:
            out.append(limit)
    return tuple(out)


# --- counting --------------------------------------------------------------------------------------


class BudgetGuard:
    """One account's budget in one direction, in this process: what is recorded in the store
    plus what the workers hold for batches in flight (``held``)."""

    def __init__(self, limit: DailyLimit, store: JournalLocation) -> None:
        self.limit = limit
        self.store = store
        self.held = 0  # reserved for batches being fetched or appended (under _LOCK)
        self._last: tuple[str, int] | None = None  # (day, bytes) as last read or recorded here

    def used(self, day: str, *, read_only: bool) -> int:
        """Bytes recorded for ``day`` (by every run and process)."""
        if read_only:  # a dry run: nothing is created, not even the file
            n = read_budget_used(self.store, self.limit.account, self.limit.direction, day)
        else:
            from ..store import open_store
            s = open_store(self.store)
            try:
                n = s.budget_used(self.limit.account, self.limit.direction, day)
            finally:
                s.close()
        self._last = (day, n)
        return n

    def seen(self, day: str, *, read_only: bool) -> int:
        """``used`` as this process last knew it (the progress line asks often: no file opened
        for it), read afresh on a new day."""
        last = self._last
        return last[1] if last is not None and last[0] == day else self.used(day, read_only=read_only)

    def record(self, nbytes: int) -> None:
        """``nbytes`` moved just now."""
        if nbytes <= 0:
            return
        from ..store import open_store
        day = day_of(utc_now())
        s = open_store(self.store)
        try:
            s.add_budget_usage(self.limit.account, self.limit.direction, day, nbytes)
            self._last = (day, s.budget_used(self.limit.account, self.limit.direction, day))
        finally:
            s.close()


_LOCK = threading.Lock()  # every reservation of every guard: a batch takes its room on all at once
_GUARDS: dict[tuple[JournalLocation, str, str], BudgetGuard] = {}


def guard_for(limit: DailyLimit, store: JournalLocation) -> BudgetGuard:
    """This process's guard of ``limit``'s account and direction (shared by the jobs that use it)."""
    key = (resolve_location(store), limit.account, limit.direction)
    with _LOCK:
        g = _GUARDS.get(key)
        if g is None:
            g = _GUARDS[key] = BudgetGuard(limit, key[0])
        else:
            g.limit = limit  # the latest preset or override counts
        return g


@dataclass
class Ticket:
    """The room a batch took: ``count`` leading messages, and the bytes held per direction."""

    count: int
    held: dict[Direction, int] = field(default_factory=dict)
    stop: BudgetReached | None = None  # the batch was cut: the message after it would go over


class DailyBudgets:
    """The daily budgets one job keeps to (see the module docstring)."""

    def __init__(self, limits: Sequence[DailyLimit], store: JournalLocation, *, dry_run: bool = False) -> None:
        self.guards = [guard_for(limit, store) for limit in limits]
        self.dry_run = dry_run

    def __bool__(self) -> bool:
        return bool(self.guards)

    def take(self, sizes: Sequence[int]) -> Ticket:
        """Room for the leading messages of ``sizes`` that fit every budget today; raises
        ``BudgetReached`` when not even the first one does."""
        if not sizes:
            return Ticket(0)
        with _LOCK:
            now = utc_now()
            day = day_of(now)
            used = {id(g): g.used(day, read_only=self.dry_run) + g.held for g in self.guards}
            room = {id(g): g.limit.per_day - used[id(g)] for g in self.guards}
            count = total = 0
            for size in sizes:
                if all(total + size <= room[id(g)] for g in self.guards):
                    count, total = count + 1, total + size
                    continue
                if count == 0 and not any(used.values()):
                    count, total = 1, size  # bigger than a whole day's budget: alone, on a fresh day
                break
            stop = None
            if count < len(sizes):
                blocking = next((g for g in self.guards if total + sizes[count] > room[id(g)]), self.guards[0])
                stop = self._reached(blocking, used[id(blocking)] + total, now)
                if count == 0:
                    raise stop
            for g in self.guards:
                g.held += total
        return Ticket(count, {g.limit.direction: total for g in self.guards}, stop)

    def moved(self, ticket: Ticket, direction: Direction, nbytes: int) -> None:
        """``nbytes`` were read (download) or written (upload) for the ticket's batch: recorded,
        and the ticket's hold in that direction is released."""
        with _LOCK:  # recorded and released together: a reservation never sees these bytes twice
            for g in self.guards:
                if g.limit.direction == direction:
                    g.record(nbytes)
            self._release(ticket, (direction,))

    def release(self, ticket: Ticket) -> None:
        """Give back whatever the ticket still holds (the batch failed or is over)."""
        with _LOCK:
            self._release(ticket, ("download", "upload"))

    def _release(self, ticket: Ticket, directions: Sequence[Direction]) -> None:
        for g in self.guards:  # under _LOCK
            d = g.limit.direction
            if d in directions and ticket.held.get(d):
                g.held -= ticket.held.pop(d)

    def usage(self) -> list[tuple[DailyLimit, int]]:
        """Each budget and what was moved under it today."""
        day = day_of(utc_now())
        return [(g.limit, g.used(day, read_only=self.dry_run)) for g in self.guards]

    def windows(self) -> list[Window]:
        """The budgets as the ETA sees them (``migrate.engine.eta``)."""
        now = utc_now()
        day, reset_in = day_of(now), (next_reset(now) - now).total_seconds()
        out = []
        for g in self.guards:
            left = g.limit.per_day - g.seen(day, read_only=self.dry_run) - g.held
            out.append(Window(left_now=max(0, left), per_day=g.limit.per_day, reset_in_s=reset_in,
                              says=f"{g.limit.provider} allows {human_bytes(g.limit.per_day)} a day"))
        return out

    @staticmethod
    def _reached(g: BudgetGuard, used: int, now: datetime) -> BudgetReached:
        resume = next_reset(now)
        verb = "read" if g.limit.direction == "download" else "written"
        return BudgetReached(
            f"{g.limit.says()}; {megabytes(used)} were {verb} today; going on at "
            f"{resume:%H:%M} UTC (in {duration((resume - now).total_seconds())})", resume_at=resume,
            hint="the job goes on from where it stopped: run the same command again after that time "
                 "(without --no-wait, import and batch wait and go on by themselves)")


# --- waiting ---------------------------------------------------------------------------------------


def sleep_until(moment: datetime, *, cancel: threading.Event | None = None) -> None:
    """Wait until ``moment`` (by ``utc_now``), waking every minute to look at the clock again
    (a laptop that slept meanwhile). Ctrl-C interrupts it."""
    cancel = cancel or threading.Event()
    while (left := (moment - utc_now()).total_seconds()) > 0:
        if cancel.wait(min(left, 60.0)):
            return


def run_with_waits(run: Callable[[], JobReport], *, wait: bool = True,
                   wait_until: Callable[[datetime], None] = sleep_until,
                   on_wait: Callable[[JobReport], None] | None = None) -> JobReport:
    """``run()`` the job; while it stops at a daily budget (status "waiting"), wait until it may
    go on and run it again. ``wait=False`` (``--no-wait``): the waiting report is returned."""
    while True:
        report = run()
        if report.status != "waiting" or not wait or report.resume_at is None:
            return report
        if on_wait is not None:
            on_wait(report)
        wait_until(report.resume_at)
