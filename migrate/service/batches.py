"""CSV batches sent to the service (``POST /api/batches``): check every row before anything
starts, then one ordinary job per row.

The CSV has the columns of ``templates/batch.csv`` / ``mailmigrate batch`` and is read by the same
reader, as an uploaded file: no env:/file: reference, token or CA-file cell is followed, and every
target is a mailbox of the service's own mail system. A person's targets must be their own
mailboxes (their passwords come from the session: the target_password cell stays empty); an
operator gives each target's password in the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import providers
from ..csvbatch.reader import CsvInvalid, CsvProblem, FixedTarget, read_batch_text
from ..errors import MigrateError
from .db import BUDGET_WAITING, FINAL, WAITING
from .network import PrivateSourceServer, SourceNetworks, is_preset_host

MAX_ROWS = 25

# What the service adds to the reader's problems (``csvbatch.reader.PROBLEMS``), by code: the
# English texts; the pages translate the codes (``i18n.problem_text``).
PROBLEMS: dict[str, str] = {
    "target_password_required": "required: give the password of each target mailbox",
    "not_your_mailbox": "{email} is not one of your mailboxes: add it to your sign-in first (POST /api/mailboxes), "
                        "or leave this row out",
    "password_from_session": "leave it empty: the service uses the password you signed in with",
    "private_source": "the server {host} is on a private network: the service does not connect there",
    "signin_not_offered": "{provider} rows without a password need {signin} sign-in, which this service does not "
                          "offer: give an app password",
    "signin_not_offered_no_password": "{provider} rows without a password need {signin} sign-in, which this "
                                      "service does not offer: this service cannot import from it",
}


def api_not_mine(email: str) -> str:
    """A row's target that is not one of the person's mailboxes, as the API says it."""
    return PROBLEMS["not_your_mailbox"].format(email=email)


def _problem(line: int, column: str | None, code: str, message: str | None = None, /,
             **params: object) -> CsvProblem:
    """A problem the service finds; ``message``: its English text when not the code's own."""
    text = {k: str(v) for k, v in params.items()}
    return CsvProblem(line, column, message or PROBLEMS[code].format(**text), code, text)


SIGNIN_NAMES = {"google": "Google", "microsoft": "Microsoft"}


class BatchInvalid(Exception):
    """The batch was refused. ``errors``: every problem as the API answers it, ``[{"line",
    "message"}]`` by line (``message`` in English, after its column); ``problems``: the same
    ``CsvProblem``s, whose code, column and params the pages translate."""

    def __init__(self, problems: list[CsvProblem]) -> None:
        n = len(problems)
        super().__init__(f"the batch has {n} problem{'' if n == 1 else 's'}: nothing was started")
        self.problems = problems
        self.errors = [{"line": p.line, "message": f"{p.column}: {p.message}" if p.column else p.message}
                       for p in problems]


@dataclass(frozen=True, repr=False)
class PlannedRow:
    """One row, checked: the job's request (no secret in it) and the two passwords to seal.
    ``source_password`` None: a Google or Microsoft source that is signed in later, by a link."""

    line: int
    request: dict[str, Any]
    source_password: str | None
    target_password: str

    @property
    def waits_for_signin(self) -> bool:
        return self.source_password is None


def plan_rows(csv_text: str, *, target: tuple[str, str, int, str],
              mailboxes: dict[str, tuple[str, str]] | None, lang: str,
              networks: SourceNetworks | None = None, signin_offered: Callable[[str], bool] = lambda _kind: True,
              not_mine: Callable[[str], str] = api_not_mine) -> list[PlannedRow]:
    """Check the whole CSV for a caller and plan its jobs; ``BatchInvalid`` lists every problem.

    ``target``: the service's mail system (provider, host, port, security). ``mailboxes``: the
    person's mailboxes (lowercase address -> (address, password)), None for an operator.
    ``networks``: the check of source servers; ``signin_offered(kind)``: whether Google/Microsoft
    sign-in is set up (a row without password waits for it); ``not_mine(email)``: what a row
    whose target is not one of the person's mailboxes says (the API's way, or the page's)."""

    def check(email: str, password: str | None) -> list[tuple[str, str] | CsvProblem]:
        # the reader puts in the row's line
        if mailboxes is None:
            return [] if password else [_problem(0, "target_password", "target_password_required")]
        problems: list[tuple[str, str] | CsvProblem] = []
        if email.lower() not in mailboxes:
            problems.append(_problem(0, "target_email", "not_your_mailbox", not_mine(email), email=email))
        if password:
            problems.append(_problem(0, "target_password", "password_from_session"))
        return problems

    provider, host, port, security = target
    fixed = FixedTarget(provider=provider, host=host, port=port, security=security, check=check)
    try:
        rows = read_batch_text(csv_text, max_rows=MAX_ROWS, untrusted=True, fixed_target=fixed,
                               # a Google row without a password is signed in later, by a link
                               has_stored_signin=lambda _provider, _email: True)
    except CsvInvalid as exc:
        raise BatchInvalid(exc.problems) from None
    errors = [problem for row in rows
              for problem in _source_problems(row.line, row.source, row.source.password_ref, networks,
                                              signin_offered)]
    if errors:
        raise BatchInvalid(errors)
    planned = []
    for row in rows:
        s, t = row.source, row.target
        source = {"email": s.email, "provider": s.provider, "host": s.host, "port": s.port,
                  "security": s.security}
        if s.username:
            source["username"] = s.username
        # a person's mailbox as it was signed in to (the login may be case-sensitive)
        target_email, target_pw = (t.email, t.password_ref) if mailboxes is None else mailboxes[t.email.lower()]
        assert target_pw
        request = {"source": source, "target": {"email": target_email}, "exclude": [],
                   "notify": list(row.notify), "lang": lang}
        planned.append(PlannedRow(row.line, request, s.password_ref, target_pw))
    return planned


def _source_problems(line: int, source: Any, password: str | None, networks: SourceNetworks | None,
                     signin_offered: Callable[[str], bool]) -> list[CsvProblem]:
    """What the service refuses in a row's source that the CSV reader accepts: a server on an
    internal network, or a row waiting for a Google/Microsoft sign-in the service does not offer
    (it would wait forever)."""
    problems = []
    if networks is not None and not is_preset_host(source.provider, source.host):
        try:
            networks.check_submitted(source.provider, source.host, source.port)
        except PrivateSourceServer as exc:
            problems.append(_problem(line, "source_host", "private_source", exc.message, host=exc.host))
        except MigrateError as exc:  # a refusal the pages have no translation of: said in English
            problems.append(CsvProblem(line, "source_host", exc.message))
    if password is None:
        try:
            preset = providers.get(source.provider)
        except MigrateError:
            preset = None
        kind = getattr(preset, "oauth", None)
        if preset is not None and kind in SIGNIN_NAMES and not signin_offered(kind):
            code = ("signin_not_offered" if {"password", "app-password"} & set(preset.auth)
                    else "signin_not_offered_no_password")
            problems.append(_problem(line, None, code, provider=preset.short_title, signin=SIGNIN_NAMES[kind]))
    return problems


def batch_state(states: list[str]) -> str:
    """A batch's state from its rows': running while any runs (or some are done and some wait
    their turn), queued, waiting (rows wait for a daily budget), waiting_signin (only rows
    waiting for a sign-in are left), then the end: done (all done), failed, cancelled (all of them), else partial."""
    active = [s for s in states if s not in FINAL]
    if "running" in active or ("queued" in active and len(active) < len(states)):
        return "running"
    if "queued" in active:
        return "queued"
    if BUDGET_WAITING in active:
        return BUDGET_WAITING
    if WAITING in active:
        return WAITING
    if active:
        return active[0]  # a state this module does not know yet: shown as it is
    for whole in ("done", "failed", "cancelled"):
        if states and all(s == whole for s in states):
            return whole
    return "partial"


TOTAL_KEYS = ("copied", "skipped_duplicates", "failed", "bytes", "source_messages")


def batch_view(batch: dict[str, Any], views: list[tuple[int | None, dict[str, Any]]],
               created_at: str | None) -> dict[str, Any]:
    """``GET /api/batches/{id}``: the batch and each row's state and totals (``views``: each
    row's line and its import's view)."""
    totals = dict.fromkeys(TOTAL_KEYS, 0)
    rows = []
    for line, v in views:
        rows.append({"line": line, "source": v["source"], "target": v["target"], "import_id": v["id"],
                     "state": v["state"], "totals": v["totals"], "resume_at": v.get("resume_at")})
        for k in TOTAL_KEYS:
            totals[k] += int(v["totals"].get(k) or 0)
    return {"id": batch["id"], "state": batch_state([r["state"] for r in rows]), "created_at": created_at,
            "rows": rows, "totals": totals}
