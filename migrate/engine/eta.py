"""The honest finish time: bytes still to copy, the measured byte rate, and the budget windows ahead.

A provider's daily budget (``migrate.engine.budget``) caps what one account may move per day, so
a big mailbox behind a budget takes days however fast the line is. ``finish_time`` works it out,
without any clock or I/O: in the current window the job copies at the measured rate until the
budget left today is used up, then waits for the next window, which allows ``per_day`` again,
and so on. The sentence names the budget when it is what makes the job long:
"about 2 days: Gmail allows 2.5 GB a day; 6.1 GB to go".

Without a measured rate (before copying starts: the fit check, a dry run) copying is taken as
instant: the result is then what the budget alone imposes (None when no budget binds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

DAY_S = 86_400.0


@dataclass(frozen=True)
class Window:
    """One daily budget as the ETA sees it."""

    left_now: int  # bytes it still allows before it resets
    per_day: int  # bytes it allows in every window after that
    reset_in_s: float  # seconds until it resets
    says: str  # what it is, in words: "Gmail allows 2.5 GB a day"


@dataclass(frozen=True)
class Eta:
    seconds: float | None  # None: not known (no rate yet and no budget that binds)
    text: str | None  # "about 5 min", "about 2 days: Gmail allows 2.5 GB a day; 6.1 GB to go"
    budget_bound: bool = False  # the budget, not the rate, decides when the job is done


def human_bytes(n: float) -> str:
    """``512 B``, ``1.5 KB``, ``6.1 GB`` (decimal units, as providers state their budgets)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def duration(seconds: float) -> str:
    """A duration for people: "less than a minute", "12 min", "5 h 12 min", "1 day 6 h", "3 days"."""
    s = max(0.0, seconds)
    if s < 60:
        return "less than a minute"
    minutes = round(s / 60)
    if minutes < 60:
        return f"{minutes} min"
    if s < DAY_S:
        h, m = divmod(minutes, 60)
        return f"{h} h" + (f" {m} min" if m else "")
    days, rest = divmod(s, DAY_S)
    if days < 2:
        h = round(rest / 3600)
        return "2 days" if h == 24 else "1 day" + (f" {h} h" if h else "")
    return f"{round(s / DAY_S)} days"


def about(seconds: float) -> str:
    """``duration`` as an estimate: "about 5 h 12 min" (but "less than a minute")."""
    text = duration(seconds)
    return text if text.startswith("less") else f"about {text}"


def finish_time(bytes_left: int, rate: float | None, windows: Sequence[Window] = ()) -> Eta:
    """Seconds until ``bytes_left`` are copied at ``rate`` bytes/s under the daily budgets
    ``windows`` (all reset together, at the tightest one's ``reset_in_s``), and the sentence."""
    if bytes_left <= 0:
        return Eta(0.0, None)
    speed = rate if rate and rate > 0 else math.inf
    plain = bytes_left / speed  # 0 without a rate
    if not windows:
        return Eta(plain, about(plain)) if rate else Eta(None, None)
    tight = min(windows, key=lambda w: (w.left_now, w.per_day))
    per_day = min(w.per_day for w in windows)
    span = max(0.0, tight.reset_in_s)
    left = float(bytes_left)

    def copyable(budget: int, seconds: float) -> float:
        # What one window lets through: its budget, or less when the rate cannot fill it.
        return float(budget) if math.isinf(speed) else min(budget, speed * seconds)

    can_now = copyable(max(0, tight.left_now), span)
    if left <= can_now:
        seconds = left / speed
    else:
        if per_day <= 0:
            return Eta(None, f"not before the budget allows more: {tight.says}", True)
        left -= can_now
        seconds = span
        per_window = copyable(per_day, DAY_S)
        more_windows = math.ceil(left / per_window) - 1  # full windows before the last one
        seconds += more_windows * DAY_S
        left -= more_windows * per_window
        seconds += left / speed
    bound = seconds > plain + 1
    if not bound:
        return Eta(seconds, about(seconds)) if rate else Eta(None, None)
    return Eta(seconds, f"{about(seconds)}: {tight.says}; {human_bytes(bytes_left)} to go", True)
