"""What a running job tells whoever drives it (``migrate.engine.start``): typed, immutable events.

In order, for one job:

* ``FolderPlanned`` once per source folder, in plan order, when folders are planned (``target``
  None: the folder is skipped, ``reason`` says why; a folder the target then refuses under every
  name fails with a ``MessageFailed`` and ends with a ``FolderDone`` whose target is None);
* ``FitChecked`` once, when every folder was read and before anything is copied (or created):
  will the job fit the target (``migrate.engine.fit``)? A job that does not fit ends there
  (``JobDone``, error "does-not-fit") unless forced;
* then, while folders are copied: ``Progress`` whenever counters moved (after each batch, each
  chunk of duplicates, each failure), ``MessageFailed`` for each message (or whole folder, ``uid``
  None) that could not be copied, and ``FolderDone`` once per folder with its final report;
* ``JobDone`` last, exactly once, with the job's report (also after an error or a cancel).

Events of one job are delivered one at a time (never two callbacks at once), synchronously, from
the job's own threads: a ``cancel()`` from a callback therefore takes effect within the batch the
event was about. A callback must be quick and must not block: the worker that sent the event
waits for it (a ``MessageFailed`` may even be sent while that worker holds the journal's write
transaction). To decouple, start the job with ``stream=True`` and read ``handle.events()`` from
a thread of your own (the engine then only puts events on a queue). A callback that raises is
logged and otherwise ignored: it never stops the job.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..report import FitReport, FolderReport, JobReport


@dataclass(frozen=True, slots=True)
class FolderPlanned:
    source: str
    target: str | None  # None: not copied (excluded, a Gmail view, refused by the target...)
    messages: int  # messages in the source folder when it was planned (0 for a skipped folder)
    reason: str = ""  # how the target name was chosen, or why the folder is skipped


@dataclass(frozen=True, slots=True)
class FitChecked:
    fit: FitReport  # outcome ("fits", "too_big", "does_not_fit"), its text, sizes, limits, finish time


@dataclass(frozen=True, slots=True)
class Progress:
    copied: int  # messages copied (or, in a dry run, that would be copied) so far
    bytes: int  # bytes of those messages
    total_messages: int  # messages in the source folders being copied (grows as folders are read)
    total_bytes: int  # bytes of the messages left to decide when each folder was read
    current_folders: tuple[str, ...]  # source folders being copied right now
    done_messages: int = 0  # decided: copied, already present or failed
    duplicates: int = 0  # already present on the target
    failed: int = 0


@dataclass(frozen=True, slots=True)
class MessageFailed:
    folder: str  # source folder
    uid: int | None  # source UID; None: the whole folder failed (its messages are counted failed)
    reason: str  # the server's answer or ours (never a secret)


@dataclass(frozen=True, slots=True)
class FolderDone:
    report: FolderReport  # a copy: final for this folder


@dataclass(frozen=True, slots=True)
class JobDone:
    report: JobReport  # the job's final report (``status``, ``exit_code``, ``error``...)


Event = FolderPlanned | FitChecked | Progress | MessageFailed | FolderDone | JobDone
