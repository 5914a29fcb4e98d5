#!/usr/bin/env python3
"""Generate the bundled demo mailbox ``samples/demo`` (a Maildir++) through ``MaildirEndpoint``.

Deterministic: file names, UIDVALIDITYs and uidlist tokens come from counters, and every
message text is written here (no third-party text), so re-running gives identical files.

    python scripts/make_sample.py            # (re)write samples/demo
    python scripts/make_sample.py OUT_DIR    # somewhere else (must not exist, or use --force)

Git does not keep file mtimes, so a checked-out copy has checkout-time INTERNALDATEs; run this
script to get the intended dates (each file name also starts with its intended epoch time).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import shutil
import sys
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from migrate.local._maildir_index import LOCKFILE  # noqa: E402
from migrate.local.maildir import MaildirEndpoint  # noqa: E402
from migrate.models import AppendItem  # noqa: E402

DEFAULT_OUT = ROOT / "samples" / "demo"
FOLDERS = ("Sent", "Drafts", "Archive/2023", "Archive/2024", "Entwürfe-Test", "Projects/Empty")
CRLF = "\r\n"


class SampleMaildir(MaildirEndpoint):
    """MaildirEndpoint with counters instead of clock, pid and randomness."""

    def __init__(self, path: Path) -> None:
        self._n = 0
        self._uidv = 1_600_000_000
        self._gen = 0
        super().__init__(path, create=True)

    def _new_basename(self, internaldate: datetime | None) -> str:
        self._n += 1
        epoch = int(internaldate.timestamp()) if internaldate else 0
        return f"{epoch}.M{self._n:06d}P1Q{self._n}.sample"

    def _new_uidvalidity(self) -> int:
        self._uidv += 1
        return self._uidv

    def _new_generation(self) -> str:
        self._gen += 1
        return f"{self._gen:08x}"


def when(y: int, mo: int, d: int, h: int = 9, mi: int = 30) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def message(date: datetime, sender: str, to: str, subject: str, body: str, *, mid: str | None,
            extra: tuple[str, ...] = (), eol: str = CRLF, cc: str | None = None) -> bytes:
    lines = [f"From: {sender}", f"To: {to}"]
    if cc:
        lines.append(f"Cc: {cc}")
    lines += [f"Subject: {subject}", f"Date: {format_datetime(date)}"]
    if mid:
        lines.append(f"Message-ID: <{mid}>")
    lines += ["MIME-Version: 1.0", *extra]
    if not any(x.lower().startswith("content-type") for x in extra):
        lines.append("Content-Type: text/plain; charset=utf-8")
    text = eol.join(lines) + eol + eol + eol.join(body.splitlines()) + eol
    return text.encode("utf-8")


def attachment_bytes(size: int) -> bytes:
    """Deterministic pseudo-random bytes (SHA-256 in counter mode)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"mailmigrate-sample-%d" % counter).digest()
        counter += 1
    return bytes(out[:size])


def with_attachment(date: datetime) -> bytes:
    data = base64.encodebytes(attachment_bytes(37_500)).decode().replace("\n", CRLF)
    body = CRLF.join([
        "--sample-boundary-1",
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Here is the measurement export you asked for (binary, about 37 KB).",
        "",
        "--sample-boundary-1",
        "Content-Type: application/octet-stream; name=\"measurements.bin\"",
        "Content-Transfer-Encoding: base64",
        "Content-Disposition: attachment; filename=\"measurements.bin\"",
        "",
        data.rstrip(CRLF),
        "--sample-boundary-1--",
    ])
    return message(date, "Lab Robot <robot@example.net>", "Alice Example <alice@example.org>",
                   "Measurement export", body, mid="export-2020-05@example.net",
                   extra=("Content-Type: multipart/mixed; boundary=\"sample-boundary-1\"",))


A = "Alice Example <alice@example.org>"
B = "Bob Builder <bob@example.net>"
C = "Carol Chen <carol@example.com>"


def inbox() -> list[AppendItem]:
    twin = message(when(2012, 2, 29), B, A, "Leap day lunch?", "Shall we have lunch on the leap day?",
                   mid="leap-lunch@example.net")
    return [
        AppendItem(message(when(1990, 3, 14), C, A, "Welcome to the new mail system",
                           "Your account is ready.\nThis is the oldest message in the sample.",
                           mid="welcome-1990@example.com"), ("\\Seen",), when(1990, 3, 14)),
        AppendItem(message(when(1999, 12, 31, 23, 59), B, A, "Meeting notes before the millennium",
                           "1. Check the clocks\n2. Back up the server\n3. Celebrate", mid="notes-1999@example.net",
                           cc=C), ("\\Seen", "\\Flagged"), when(1999, 12, 31, 23, 59)),
        AppendItem(message(when(2005, 6, 1), C, A, "A message without a Message-ID",
                           "Some old clients did not add a Message-ID header.\nThis is one of those.",
                           mid=None), (), when(2005, 6, 1)),
        AppendItem(message(when(2010, 1, 1), B, A, "Shared identifier, first body",
                           "This message shares its Message-ID with the next one.", mid="shared-id@example.net"),
                   ("\\Seen",), when(2010, 1, 1)),
        AppendItem(message(when(2010, 1, 2), B, A, "Shared identifier, second body",
                           "Same Message-ID as the previous one, different text.", mid="shared-id@example.net"),
                   (), when(2010, 1, 2)),
        AppendItem(twin, ("\\Seen",), when(2012, 2, 29)),
        AppendItem(twin, ("\\Seen",), when(2012, 2, 29)),
        AppendItem(message(when(2015, 7, 4), C, A, "Bare LF line endings",
                           "This file uses bare LF line endings.\nThey must stay exactly as they are.",
                           mid="bare-lf@example.com", eol="\n"), ("$Forwarded",), when(2015, 7, 4)),
        AppendItem(message(when(2018, 10, 10), "Jörg Müller <joerg@example.org>", A, "Grüße aus Köln – 8-bit header",
                           "Raw UTF-8 in the header fields, not RFC 2047 encoded.\nSchöne Grüße!",
                           mid="koeln-8bit@example.org"), ("\\Seen", "$MDNSent"), when(2018, 10, 10)),
        AppendItem(with_attachment(when(2020, 5, 5)), ("\\Seen", "\\Answered"), when(2020, 5, 5)),
        AppendItem(message(when(2021, 3, 3), C, A, "Tagged with custom keywords",
                           "Look at the keywords on this one.", mid="keywords-2021@example.com"),
                   ("Custom_1", "$Label1", "\\Seen"), when(2021, 3, 3)),
        AppendItem(message(when(2022, 8, 8), B, A, "Marked as deleted", "Deleted but not expunged.",
                           mid="deleted-2022@example.net"), ("\\Seen", "\\Deleted"), when(2022, 8, 8)),
        AppendItem(message(when(2030, 1, 1), C, A, "A message from the future",
                           "The date on this message is in 2030.", mid="future-2030@example.com"),
                   (), when(2030, 1, 1)),
        AppendItem(message(when(2019, 4, 1), B, A, "Alternative parts", CRLF.join([
            "--alt-1", "Content-Type: text/plain; charset=utf-8", "", "Plain text version.", "",
            "--alt-1", "Content-Type: text/html; charset=utf-8", "", "<p>HTML version.</p>", "", "--alt-1--"]),
            mid="alternative-2019@example.net", extra=("Content-Type: multipart/alternative; boundary=\"alt-1\"",)),
            ("\\Seen", "$Junk"), when(2019, 4, 1)),
        AppendItem(message(when(2016, 11, 11), C, A, "Re: Re: Re: a long thread with a folded header",
                           "The References header above is folded over several lines.",
                           mid="thread-4@example.com",
                           extra=("In-Reply-To: <thread-3@example.com>",
                                  "References: <thread-1@example.com>\r\n <thread-2@example.com>\r\n"
                                  " <thread-3@example.com>")),
                   ("\\Seen", "\\Answered", "$Forwarded"), when(2016, 11, 11)),
        AppendItem(b"From: " + A.encode() + b"\r\nTo: " + B.encode() + b"\r\nSubject: Header only\r\n"
                   b"Date: Mon, 01 Jan 2001 10:00:00 +0000\r\nMessage-ID: <header-only-2001@example.org>\r\n\r\n",
                   (), when(2001, 1, 1, 10, 0)),
    ]


def simple(folder_tag: str, n: int, start: datetime, flags: tuple[str, ...], sender: str = A,
           to: str = B) -> list[AppendItem]:
    items = []
    for i in range(n):
        d = start.replace(month=1 + (i * 2) % 12, day=1 + i)
        items.append(AppendItem(message(d, sender, to, f"{folder_tag} message {i + 1}",
                                        f"Body of {folder_tag.lower()} message number {i + 1}.",
                                        mid=f"{folder_tag.lower().replace(' ', '-')}-{i + 1}@example.org"),
                                flags, d))
    return items


def build_sample(out: Path) -> dict[str, int]:
    """Write the sample Maildir into ``out`` (which must not exist); return message counts."""
    ep = SampleMaildir(out)
    for name in FOLDERS:
        ep.create_folder(name)
    plan: dict[str, list[AppendItem]] = {
        "INBOX": inbox(),
        "Sent": simple("Sent", 5, when(2003, 1, 1), ("\\Seen",), A, C)
        + [AppendItem(message(when(2024, 6, 6), A, B, "Re: Shared identifier", "Answering both of them.",
                              mid="answer-2024@example.org"), ("\\Seen", "$Forwarded"), when(2024, 6, 6))],
        "Drafts": [
            AppendItem(message(when(2024, 9, 9), A, B, "Unfinished draft", "Dear Bob,\n\nI wanted to say", mid=None),
                       ("\\Draft",), when(2024, 9, 9)),
            AppendItem(message(when(2024, 9, 10), A, C, "Draft with an ID", "Almost done.",
                               mid="draft-2@example.org"), ("\\Draft", "\\Seen"), when(2024, 9, 10)),
            AppendItem(message(when(2025, 2, 2), A, C, "Empty draft", "", mid=None), ("\\Draft",), when(2025, 2, 2)),
        ],
        "Archive/2023": simple("Archive 2023", 6, when(2023, 1, 1), ("\\Seen",), B, A),
        "Archive/2024": simple("Archive 2024", 6, when(2024, 1, 1), ("\\Seen", "Custom_1"), C, A),
        "Entwürfe-Test": [
            AppendItem(message(when(2023, 5, 1 + i), A, "Dörte <doerte@example.org>", f"Entwurf {i + 1}: Überprüfung",
                               f"Text mit Umlauten: äöüß – Nummer {i + 1}.", mid=f"entwurf-{i + 1}@example.org"),
                       ("\\Draft",) if i == 0 else ("\\Seen",), when(2023, 5, 1 + i))
            for i in range(3)
        ],
    }
    counts = {}
    for folder, items in plan.items():
        results = ep.append(folder, items)
        assert all(r.ok for r in results), results
        counts[folder] = len(items)
    counts["Projects/Empty"] = 0
    ep.close()
    for lock in out.rglob(LOCKFILE):  # runtime artefacts, not part of the sample
        lock.unlink()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = parser.parse_args(argv)
    out: Path = args.out
    if out.exists():
        if not (args.force or out == DEFAULT_OUT):
            parser.error(f"{out} exists (use --force to replace it)")
        shutil.rmtree(out)
    counts = build_sample(out)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out}: {sum(counts.values())} messages in {len(counts)} folders, {total} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
