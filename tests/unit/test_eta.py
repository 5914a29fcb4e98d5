"""The honest finish time (``migrate.engine.eta``), the daily budgets' arithmetic
(``migrate.engine.budget``) and the fit check's decision (``migrate.engine.fit``): pure logic and
a budget file in a temporary folder, no server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from migrate.engine import budget as budget_module
from migrate.engine.budget import (
    OVERRIDE_ENV,
    BudgetReached,
    DailyBudgets,
    DailyLimit,
    megabytes,
    next_reset,
    parse_override,
    preset_limit,
    run_with_waits,
)
from migrate.engine.eta import DAY_S, Window, about, duration, finish_time
from migrate.engine.fit import FolderSizes, Limits, check, fit_lines
from migrate.engine.progress import Progress
from migrate.errors import UsageError
from migrate.models import MessageMeta, Quota
from migrate.providers import get
from migrate.report import ErrorInfo, JobReport
from migrate.ui import progress_text

GB = 1_000_000_000
GMAIL = "Gmail allows 2.5 GB a day"


# --- the finish time ----------------------------------------------------------------------------------


def test_without_a_budget_the_rate_decides() -> None:
    assert finish_time(6_000_000, 50_000).seconds == 120
    assert finish_time(6_000_000, 50_000).text == "about 2 min"
    assert not finish_time(6_000_000, 50_000).budget_bound
    assert finish_time(0, None).seconds == 0  # nothing left
    assert finish_time(10, None).seconds is None  # no rate yet, no budget: not known


def test_the_budget_windows_ahead_count() -> None:
    # 6.1 GB to go, 2.5 GB left today, 10 h to the reset, 5 MB/s: today's 2.5 GB take 500 s, then
    # the day ends (10 h), tomorrow 2.5 GB, then 1.1 GB the day after at 5 MB/s (220 s).
    w = Window(left_now=int(2.5 * GB), per_day=int(2.5 * GB), reset_in_s=10 * 3600, says=GMAIL)
    eta = finish_time(int(6.1 * GB), 5_000_000, [w])
    assert eta.seconds == 10 * 3600 + DAY_S + 220
    assert eta.budget_bound and eta.text == "about 1 day 10 h: Gmail allows 2.5 GB a day; 6.1 GB to go"


def test_today_used_up_waits_for_the_reset() -> None:
    w = Window(left_now=0, per_day=int(2.5 * GB), reset_in_s=5 * 3600 + 12 * 60, says=GMAIL)
    eta = finish_time(GB, 10_000_000, [w])
    assert eta.seconds == 5 * 3600 + 12 * 60 + 100  # the reset, then 1 GB at 10 MB/s
    assert eta.text == "about 5 h 14 min: Gmail allows 2.5 GB a day; 1.0 GB to go"


def test_a_slow_line_is_the_limit_not_the_budget() -> None:
    w = Window(left_now=int(2.5 * GB), per_day=int(2.5 * GB), reset_in_s=DAY_S, says=GMAIL)
    eta = finish_time(2 * GB, 1_000_000, [w])  # 2,000 s: within today's budget
    assert (eta.seconds, eta.budget_bound, eta.text) == (2000, False, "about 33 min")
    # 20 GB at 10 kB/s (864 MB a day) fills no day's budget: the rate decides, the budget never binds.
    slow = finish_time(20 * GB, 10_000, [w])
    assert slow.seconds == pytest.approx(2_000_000) and not slow.budget_bound and slow.text == "about 23 days"


def test_the_tightest_of_two_budgets_decides() -> None:
    download = Window(left_now=int(2.5 * GB), per_day=int(2.5 * GB), reset_in_s=3600, says=GMAIL)
    upload = Window(left_now=100_000_000, per_day=500_000_000, reset_in_s=3600, says="Gmail allows 500.0 MB a day")
    eta = finish_time(1_100_000_000, None, [download, upload])  # no rate yet: the budgets alone
    # 0.1 GB today, 0.5 GB tomorrow and the day after: the last bytes go on the third day.
    assert eta.seconds == 3600 + DAY_S and eta.text == "about 1 day 1 h: Gmail allows 500.0 MB a day; 1.1 GB to go"


def test_durations_for_people() -> None:
    assert [duration(s) for s in (30, 61, 3600, 5 * 3600 + 12 * 60, DAY_S + 6 * 3600, 3 * DAY_S)] == [
        "less than a minute", "1 min", "1 h", "5 h 12 min", "1 day 6 h", "3 days"]
    assert about(5) == "less than a minute" and about(600) == "about 10 min"


def test_progress_says_when_a_budget_decides() -> None:
    now = [0.0]
    p = Progress(clock=lambda: now[0])
    p.add_folder("INBOX", "INBOX")
    p.folder_total("INBOX", 10)
    p.folder_bytes("INBOX", 10_000_000)
    p.copy_phase()
    now[0] = 10.0
    p.count("INBOX", copied=1, nbytes=1_000_000)  # 100 kB/s
    assert p.snapshot()["eta_s"] == 90 and p.snapshot()["eta_text"] is None
    p.budget_windows = lambda: [Window(left_now=0, per_day=1_000_000, reset_in_s=3600, says="X allows 1.0 MB a day")]
    s = p.snapshot()
    assert s["eta_s"] == 3600 + 8 * DAY_S + 10 and s["eta_text"] == "about 8 days: X allows 1.0 MB a day; 9.0 MB to go"
    assert "  ETA about 8 days: X allows 1.0 MB a day; 9.0 MB to go  " in progress_text(s)  # the progress line


# --- the daily budgets -----------------------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch):
    now = [datetime(2024, 5, 1, 18, 48, tzinfo=UTC)]
    monkeypatch.setattr(budget_module, "utc_now", lambda: now[0])
    return now


def limit(per_day: int, direction: str = "download", account: str = "a@h:993") -> DailyLimit:
    return DailyLimit(account=account, direction=direction, per_day=per_day, provider="Gmail",  # type: ignore[arg-type]
                      preset="gmail", source="test")


def test_a_batch_takes_what_fits_and_the_next_message_stops_the_job(tmp_path, clock):
    b = DailyBudgets([limit(2_500_000_000)], tmp_path / "b.sqlite")
    b.moved(b.take([2_499_000_000]), "download", 2_499_000_000)  # read earlier today
    t = b.take([400_000, 500_000, 300_000, 10])
    assert t.count == 2 and t.stop is not None  # 900,000 fit; the third message would go over
    assert t.stop.message == ("Gmail allows 2,500 MB a day from one account; 2,500 MB were read today; "
                              "going on at 00:00 UTC (in 5 h 12 min)")
    assert t.stop.resume_at == datetime(2024, 5, 2, tzinfo=UTC) and t.stop.exit_code == 4
    b.moved(t, "download", 900_000)
    with pytest.raises(BudgetReached):
        b.take([300_000])
    clock[0] += timedelta(hours=6)  # a new UTC day: the whole budget again
    assert b.take([300_000, 10]).count == 2


def test_reservations_are_shared_by_the_jobs_of_one_account(tmp_path, clock):
    one = DailyBudgets([limit(1000)], tmp_path / "b.sqlite")
    two = DailyBudgets([limit(1000)], tmp_path / "b.sqlite")  # a second batch row of the same source
    held = one.take([600])
    assert two.take([300, 200]).count == 1  # 600 are being read by the other row
    one.release(held)  # fetched nothing after all
    assert DailyBudgets([limit(1000, account="other@h:993")], tmp_path / "b.sqlite").take([900]).count == 1


def test_upload_and_download_budgets_both_hold(tmp_path, clock):
    b = DailyBudgets([limit(1000), limit(500, "upload", "t@h:993")], tmp_path / "b.sqlite")
    t = b.take([300, 300])
    assert t.count == 1 and t.stop is not None and "into one account" in t.stop.message  # the upload budget
    b.moved(t, "download", 300)
    b.moved(t, "upload", 290)
    assert [(lim.direction, used) for lim, used in b.usage()] == [("download", 300), ("upload", 290)]


def test_a_message_bigger_than_a_whole_day_goes_alone_on_a_fresh_day(tmp_path, clock):
    b = DailyBudgets([limit(1000)], tmp_path / "b.sqlite")
    alone = b.take([5000, 10])
    assert (alone.count, alone.held) == (1, {"download": 5000})  # it could never go otherwise
    other = DailyBudgets([limit(1000, account="x@h:993")], tmp_path / "b.sqlite")
    t = other.take([10, 5000])  # not once something was read that day: it waits for the next
    assert t.count == 1 and t.stop is not None and t.stop.resume_at == datetime(2024, 5, 2, tzinfo=UTC)


def test_a_dry_run_reads_the_budget_and_creates_nothing(tmp_path, clock):
    b = DailyBudgets([limit(1000)], tmp_path / "b.sqlite", dry_run=True)
    assert b.usage()[0][1] == 0 and not (tmp_path / "b.sqlite").exists()
    assert b.windows()[0].left_now == 1000 and b.windows()[0].reset_in_s == 5 * 3600 + 12 * 60


def test_next_reset_is_the_next_utc_midnight():
    assert next_reset(datetime(2024, 12, 31, 23, 59, tzinfo=UTC)) == datetime(2025, 1, 1, tzinfo=UTC)
    assert megabytes(2_500_000_000) == "2,500 MB" and megabytes(50_000) == "0.05 MB"


def test_presets_and_the_override(monkeypatch):
    gmail = preset_limit(get("gmail"), "download", "Alice@Gmail.com@imap.gmail.com:993")
    assert gmail is not None and gmail.per_day == 2_500_000_000 and gmail.account == "alice@gmail.com@imap.gmail.com:993"
    assert gmail.source == "preset gmail: support.google.com/a/answer/1071518"
    assert gmail.says() == "Gmail allows 2,500 MB a day from one account"
    assert preset_limit(get("imap"), "download", "a@h:1") is None
    monkeypatch.setenv(OVERRIDE_ENV, "imap:download_mb_per_day=0.05, gmail:upload_mb_per_day=10")
    small = preset_limit(get("imap"), "download", "a@h:1")
    assert small is not None and small.per_day == 50_000 and small.source == OVERRIDE_ENV
    assert preset_limit(get("gmail"), "upload", "a@h:1").per_day == 10_000_000  # type: ignore[union-attr]
    for bad in ("gmail", "gmail:download_mb_per_day", "gmail:speed=3", "gmail:download_mb_per_day=-1",
                "gmail:download_mb_per_day=lots", "gmial:download_mb_per_day=1"):
        with pytest.raises(UsageError, match=OVERRIDE_ENV):
            parse_override(bad)


def test_run_with_waits_runs_again_at_resume_time():
    resume = datetime(2024, 5, 2, tzinfo=UTC)
    reports = iter([_report("waiting", resume), _report("waiting", resume + timedelta(days=1)), _report("ok")])
    waited: list[datetime] = []
    said: list[str] = []
    final = run_with_waits(lambda: next(reports), wait_until=waited.append, on_wait=lambda r: said.append(r.status))
    assert final.status == "ok" and waited == [resume, resume + timedelta(days=1)] and said == ["waiting"] * 2
    no_wait = run_with_waits(lambda: _report("waiting", resume), wait=False, wait_until=waited.append)
    assert no_wait.status == "waiting" and len(waited) == 2


def _report(status: str, resume: datetime | None = None) -> JobReport:
    return JobReport(job_id="j", source="s", target="t", started_at=datetime(2024, 5, 1, tzinfo=UTC),
                     status=status, resume_at=resume,  # type: ignore[arg-type]
                     error=ErrorInfo(reference="budget-reached", message="m") if resume else None)


# --- the fit check's decision -------------------------------------------------------------------------


def meta(uid: int, size: int, subject: bytes | None = None) -> MessageMeta:
    header = b"Subject: " + subject + b"\r\nMessage-ID: <" + subject + b"@x>\r\n" if subject else b""
    return MessageMeta(uid=uid, size=size, flags=(), internaldate=None, header=header)


def folder(name: str, sizes: list[int], *, present: int = 0, copy: list[MessageMeta] | None = None) -> FolderSizes:
    metas = [meta(i + 1, s) for i, s in enumerate(sizes)]
    return FolderSizes(source=name, target=name, messages=len(metas), bytes=sum(sizes),
                       copy=metas if copy is None else copy, largest=max(metas, key=lambda m: m.size),
                       target_messages=present)


def test_fits_and_does_not_fit_by_the_quota():
    folders = [folder("INBOX", [3_000_000_000]), folder("Archive", [1_200_000_000])]
    room = Limits(quota=Quota(storage_used=1_000_000_000, storage_limit=6_000_000_000))
    ok = check(folders, room)
    assert (ok.outcome, ok.text, ok.to_copy_bytes, ok.free_bytes) == ("fits", "fits", 4_200_000_000, 5_000_000_000)
    tight = check(folders, Limits(quota=Quota(storage_used=3_900_000_000, storage_limit=5_000_000_000)))
    assert (tight.outcome, tight.text) == ("does_not_fit", "does not fit: 4.2 GB to copy, 1.1 GB free")
    assert [(x.name, x.source) for x in tight.limits] == [("quota-storage", "GETQUOTAROOT (RFC 9208)")]
    counted = check(folders, Limits(quota=Quota(messages_used=9, messages_limit=10)))
    assert counted.text == "does not fit: 2 messages to copy, room for 1 more"


def test_what_the_target_holds_is_not_to_copy():
    inbox = folder("INBOX", [1000, 1000, 1000], present=2, copy=[meta(3, 1000)])
    fit = check([inbox], Limits(quota=Quota(storage_used=2000, storage_limit=3500)))
    assert (fit.outcome, fit.to_copy_messages, fit.to_copy_bytes, fit.source_messages) == ("fits", 1, 1000, 3)


def test_too_big_messages_are_listed_and_left_out_of_the_room_needed():
    big = [meta(7, 40_000_000, b"scan"), meta(8, 36_000_000, b"video")]
    inbox = folder("INBOX", [1000], copy=[meta(1, 1000), *big])
    limits = Limits(quota=Quota(storage_used=0, storage_limit=10_000), append_limit=35_651_584,
                    preset_size_limit=36_700_160, preset="microsoft365")
    fit = check([inbox], limits)
    assert (fit.outcome, fit.text, fit.to_copy_bytes) == ("too_big", "fits, 2 messages too big (listed)", 1000)
    assert [(m.uid, m.subject, m.message_id) for m in fit.too_big] == [(7, "scan", "scan@x"), (8, "video", "video@x")]
    assert [(x.name, x.value, x.source) for x in fit.limits if x.name == "size-limit"] == [
        ("size-limit", 35_651_584, "APPENDLIMIT (RFC 7889)"), ("size-limit", 36_700_160, "preset microsoft365")]
    assert "  too big: 40.0 MB (INBOX uid 7, subject 'scan')" in fit_lines(fit)


def test_a_folder_limit_of_the_provider():
    inbox = folder("INBOX", [10] * 5, present=999_998)
    fit = check([inbox], Limits(provider="Microsoft 365", messages_per_folder=1_000_000,
                                folder_limit_source="preset microsoft365"))
    assert fit.text == "does not fit: 'INBOX' would hold 1,000,003 messages, Microsoft 365 allows 1,000,000 per folder"
    assert "no IMAP QUOTA" in fit.notes[0]


def test_the_budgets_say_how_long_it_takes():
    w = Window(left_now=0, per_day=int(2.5 * GB), reset_in_s=3600, says=GMAIL)
    gmail = DailyLimit(account="a", direction="download", per_day=int(2.5 * GB), provider="Gmail", preset="gmail",
                       source="preset gmail: support.google.com/a/answer/1071518")
    fit = check([folder("INBOX", [int(6.1 * GB)])], Limits(budgets=[(gmail, int(2.5 * GB))], windows=[w]))
    assert fit.outcome == "fits" and fit.finish == "about 2 days: Gmail allows 2.5 GB a day; 6.1 GB to go"
    assert fit.notes[1] == ("Gmail allows 2,500 MB a day from one account "
                            "(preset gmail: support.google.com/a/answer/1071518); 2,500 MB moved today")
    assert ("download-per-day", int(2.5 * GB)) in [(x.name, x.value) for x in fit.limits]
