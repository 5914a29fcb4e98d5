"""mailmigrate command line: parse options, call ``migrate``, render. No IMAP in here.

Exit codes (documented in the README, a public contract):
0 all done; 1 done but some messages failed; 2 usage or input error; 3 authentication failed;
4 connection/TLS failure or interrupted (re-running resumes).
"""

# No "from __future__ import annotations" here: typer reads these signatures at every start, and
# string annotations would have to be parsed and eval()ed one by one (152 of them).

import atexit
import contextlib
import gc
import os
import shlex
import sys
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from migrate import __version__
from migrate.errors import ExitCode, MigrateError, UsageError, redact, register_secret
from migrate.gate import WriteGate

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                  context_settings={"help_option_names": ["-h", "--help"]},  # -h on every command
                  help="Bulk mailbox migration: copy every folder and message from one account to another, "
                       "resumably, without duplicates.")

Opt = typer.Option


class Security(StrEnum):
    """The fixed value sets are choices: a wrong value is refused by the parser, listing the right ones."""

    ssl = "ssl"
    starttls = "starttls"
    none = "none"


class Lang(StrEnum):
    en = "en"
    de = "de"
    fr = "fr"
    it = "it"


SECURITY = "{ssl,starttls,none}"
LANG = "{en,de,fr,it}"
SECRET_REF = "env:NAME|file:PATH"
MAX_RETRIES = 100
MAX_TIMEOUT = 3600.0  # seconds


def _value(choice: Enum | None) -> str | None:
    return None if choice is None else str(choice.value)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"mailmigrate {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, Opt("--version", is_eager=True, callback=_show_version,
                                 help="Show the version and exit.")] = False,
) -> None:
    """Bulk mailbox migration: copy every folder and message from one account to another, resumably,
    without duplicates."""


def _started() -> None:
    """Call once a long-running command has imported what it needs.

    Imports create a few hundred thousand objects that live as long as the process and no
    garbage, so ``main`` turns the cyclic garbage collector off until here. Freezing them keeps
    every later collection (and the one at exit, 20 ms of a 0.2 s re-run) from walking them again."""
    gc.freeze()
    gc.enable()


def _fail(exc: MigrateError) -> None:
    from migrate.ui import err
    err.print(exc.one_line(), markup=False, highlight=False, soft_wrap=True)  # one line, never wrapped
    raise typer.Exit(int(exc.exit_code))


def _parse_maps(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        src, sep, dst = v.partition("=")
        if not sep or not src or not dst:
            raise UsageError(f"--map-folder '{v}' is not SRC=DST", hint="e.g. --map-folder 'Old Sent=Sent'")
        out[src] = dst
    return out


_SECRET_OPTIONS = ("--source-password", "--target-password", "--smtp-password",
                   "--source-oauth-token", "--target-oauth-token")


_DETACHED_REF = "env:MAILMIGRATE_DETACHED_"  # migrate.background.PROMPTED_ENV


def _mask_secret(value: str) -> str:
    if value.startswith(("env:", "file:")):
        return value  # a reference, not the secret: keeps the command re-runnable
    register_secret(value)  # redact() now scrubs it from every message, too
    return "********"


def _rerun_command(argv: list[str]) -> str:
    """The command line to run the job again, as stored in the journal and the report.

    A password given literally (``--source-password VALUE``) is replaced by ``********``: the
    rerun command is computed before the sides resolve (and register) their secrets, so
    ``redact`` alone would let it through. A password that ``--detach`` asked for and handed to
    its child (``env:MAILMIGRATE_DETACHED_...``) is left out: running the command again asks again.
    """
    args: list[str] = []
    mask_next = False
    for a in argv:
        opt, eq, value = a.partition("=")
        if mask_next:
            a, mask_next = _mask_secret(a), False
            if a.startswith(_DETACHED_REF):
                args.pop()  # and its option
                continue
        elif opt in _SECRET_OPTIONS and eq:
            if value.startswith(_DETACHED_REF):
                continue
            a = f"{opt}={_mask_secret(value)}"
        elif a in _SECRET_OPTIONS:
            mask_next = True
        args.append(a)
    return redact("mailmigrate " + " ".join(shlex.quote(a) for a in args))


def _warn_literal_secrets(*given: tuple[str, str | None]) -> None:
    """A password typed on the command line works, but 'ps' and the shell history show it: say so."""
    for flag, value in given:
        if value and not value.startswith(("env:", "file:")):
            ask = ", or leave it out to be asked for it" if flag in ("--source-password", "--target-password") else ""
            print(f"warning: {flag} given on the command line: other users can see it ('ps', shell history); "
                  f"use {flag} env:NAME or file:PATH{ask}", file=sys.stderr)


def _store_of(side: object) -> tuple[str, str]:
    """("imap", login@host:port), ("maildir", resolved path) or ("mbox", resolved path)."""
    label = str(getattr(side, "label", ""))
    kind, sep, path = label.partition(":")
    if sep and kind in ("maildir", "mbox"):
        return kind, str(Path(path).resolve())
    return "imap", label.lower()


def _check_distinct(src: object, dst: object) -> None:
    """Copying a mailbox onto itself (or into a folder of itself) is a mistake: refuse it up front."""
    (skind, spath), (dkind, dpath) = _store_of(src), _store_of(dst)
    if skind == dkind == "imap" and spath == dpath:
        login, _, where = spath.rpartition("@")
        raise UsageError(f"the source and the target are the same account ({login} on {where})",
                         hint="give the account to copy into with --target-email/--target-host")
    if "imap" in (skind, dkind):
        return
    if spath == dpath:
        raise UsageError(f"--source-{skind} and --target-{dkind} are the same folder ({spath})",
                         hint="give --target-maildir a folder outside the source")
    if Path(spath) in Path(dpath).parents:
        raise UsageError(f"--target-{dkind} {dpath} is inside the source (--source-{skind} {spath})",
                         hint="give --target-maildir a folder outside the source")


def _make_dir(folder: Path, flag: str, given: Path, gate: WriteGate) -> None:
    if folder.is_dir() or not gate.allow("file", folder):
        return
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise UsageError(f"{flag} {given}: cannot create {folder} ({exc.strerror or type(exc).__name__})",
                         hint=f"give {flag} a path in a writable folder") from None


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_journal(path: Path) -> None:
    """An existing --journal must be an SQLite file: anything else is a usage error, not a crash."""
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise UsageError(f"cannot read journal {path} ({exc.strerror or type(exc).__name__})",
                         hint="pass --journal PATH of a journal file") from None
    if head and head != _SQLITE_MAGIC:
        raise UsageError(f"{path} is not a mailmigrate journal (not an SQLite file)",
                         hint="pass --journal PATH of a journal written by 'mailmigrate import', or a new file name")


def _check_output(path: Path | None, flag: str, example: str, gate: WriteGate) -> None:
    """Refuse an unusable --journal/--report path up front (exit 2), not after the whole copy."""
    if path is None:
        return
    path = path.expanduser()
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a directory", hint=f"give a file name, e.g. {flag} {path / example}")
    _make_dir(path.parent, flag, path, gate)
    if flag == "--journal" and path.is_file():
        _check_journal(path)


NOTIFY_WHEN_HELP = ("When to send the confirmation mail: always; changes (default: only when a run copied or "
                    "failed something, or is the job's first run: a re-run from cron with nothing new sends "
                    "none); never.")

# Options several commands share (import, batch, notify): declared once.
SmtpPort = Annotated[int | None, Opt(metavar="PORT", help="SMTP port.")]
SmtpSecurity = Annotated[Security | None, Opt(metavar=SECURITY, case_sensitive=False,
                                              help="SMTP connection security (default starttls).")]
SmtpUser = Annotated[str | None, Opt(metavar="LOGIN", help="SMTP login.")]
SmtpPassword = Annotated[str | None, Opt(metavar=SECRET_REF, help="Where the SMTP password is.")]
SmtpCaFile = Annotated[str | None, Opt(metavar="PEM", help="Trust this CA (PEM) for the SMTP server.")]
NotifyWhen = Annotated[str, Opt(metavar="{always,changes,never}", help=NOTIFY_WHEN_HELP)]


@app.command("import")
def import_(
    source_email: Annotated[str | None, Opt(metavar="ADDRESS", help="Source address (login unless "
                                                                     "--source-username).")] = None,
    source_username: Annotated[str | None, Opt(metavar="LOGIN", help="Source login when it differs from the "
                                                                     "address.")] = None,
    source_password: Annotated[str | None, Opt(metavar=SECRET_REF, help="Where the password is; asked for on a "
                                                                        "terminal when left out. A literal "
                                                                        "password works but shows in 'ps'.")] = None,
    source_provider: Annotated[str | None, Opt(metavar="PRESET", help="Preset name (see 'mailmigrate providers'); "
                                                                      "default: detected from the address.")] = None,
    source_host: Annotated[str | None, Opt(metavar="HOST", help="IMAP host (overrides the preset).")] = None,
    source_port: Annotated[int | None, Opt(metavar="PORT", help="IMAP port.")] = None,
    source_security: Annotated[Security | None, Opt(metavar=SECURITY, case_sensitive=False,
                                                    help="Connection security (default: the preset's, else ssl)."
                                                    )] = None,
    source_ca_file: Annotated[str | None, Opt(metavar="PEM", help="Trust this CA (PEM) for the source's "
                                                                  "certificate.")] = None,
    source_oauth_token: Annotated[str | None, Opt(metavar=SECRET_REF, help="OAuth2 access token.")] = None,
    source_maildir: Annotated[Path | None, Opt(metavar="DIR", help="Read a local Maildir instead of IMAP.")] = None,
    source_mbox: Annotated[Path | None, Opt(metavar="FILE|DIR", help="Read a local mbox file or folder of mbox "
                                                                     "files.")] = None,
    target_email: Annotated[str | None, Opt(metavar="ADDRESS", help="Target address.")] = None,
    target_username: Annotated[str | None, Opt(metavar="LOGIN", help="Target login when it differs from the "
                                                                     "address.")] = None,
    target_password: Annotated[str | None, Opt(metavar=SECRET_REF, help="Where the password is; asked for on a "
                                                                        "terminal when left out.")] = None,
    target_provider: Annotated[str | None, Opt(metavar="PRESET", help="Preset name; default: detected from the "
                                                                      "address.")] = None,
    target_host: Annotated[str | None, Opt(metavar="HOST", help="IMAP host (overrides the preset).")] = None,
    target_port: Annotated[int | None, Opt(metavar="PORT", help="IMAP port.")] = None,
    target_security: Annotated[Security | None, Opt(metavar=SECURITY, case_sensitive=False,
                                                    help="Connection security (default: the preset's, else ssl)."
                                                    )] = None,
    target_ca_file: Annotated[str | None, Opt(metavar="PEM", help="Trust this CA (PEM) for the target's "
                                                                  "certificate.")] = None,
    target_oauth_token: Annotated[str | None, Opt(metavar=SECRET_REF, help="OAuth2 access token.")] = None,
    target_maildir: Annotated[Path | None, Opt(metavar="DIR", help="Write into a local Maildir instead of "
                                                                   "IMAP.")] = None,
    insecure: Annotated[bool, Opt("--insecure", help="Do not verify TLS certificates (DANGEROUS; never the "
                                                     "default).")] = False,
    include: Annotated[list[str] | None, Opt(metavar="PATTERN", help="Copy only folders matching this pattern "
                                                                     "(repeatable; fnmatch, or a role like "
                                                                     "\\Sent).")] = None,
    exclude: Annotated[list[str] | None, Opt(metavar="PATTERN", help="Leave out folders matching this pattern "
                                                                     "(repeatable).")] = None,
    map_folder: Annotated[list[str] | None, Opt(metavar="SRC=DST", help="Put source folder SRC into target "
                                                                        "folder DST (repeatable).")] = None,
    dry_run: Annotated[bool, Opt("--dry-run", help="Show the folder mapping and counts; write nothing "
                                                   "anywhere.")] = False,
    journal: Annotated[Path | None, Opt(metavar="PATH", help="Job journal (SQLite). Default: one per target "
                                                             "account under $MAILMIGRATE_HOME or "
                                                             "~/.local/state/mailmigrate.")] = None,
    report: Annotated[Path | None, Opt(metavar="PATH", help="Write the JSON report here.")] = None,
    connections: Annotated[int, Opt(metavar="N", help="Parallel connections per side, 1-32 (capped by the "
                                                      "provider preset).")] = 4,
    timeout: Annotated[float, Opt(metavar="SECONDS", help="Network read timeout, more than 0 and at most "
                                                          f"{MAX_TIMEOUT:g}.")] = 60.0,
    retries: Annotated[int, Opt(metavar="N", help=f"Retries per folder after a dropped connection or "
                                                  f"throttling, 0-{MAX_RETRIES}.")] = 8,
    batch_size: Annotated[int, Opt(metavar="N", help="Messages per APPEND batch (also capped at 4 MB).")] = 100,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="No live progress.")] = False,
    no_notify: Annotated[bool, Opt("--no-notify", help="Send no confirmation mail.")] = False,
    notify: Annotated[list[str] | None, Opt(metavar="ADDRESS", help="Extra address for the confirmation mail "
                                                                    "(repeatable).")] = None,
    lang: Annotated[Lang, Opt(metavar=LANG, case_sensitive=False,
                              help="Language of the confirmation mail.")] = Lang.en,
    smtp_host: Annotated[str | None, Opt(metavar="HOST", help="SMTP relay for the confirmation mail (default: "
                                                              "the target provider's SMTP server with the "
                                                              "target login).")] = None,
    smtp_port: SmtpPort = None,
    smtp_security: SmtpSecurity = None,
    smtp_user: SmtpUser = None,
    smtp_password: SmtpPassword = None,
    smtp_ca_file: SmtpCaFile = None,
    notify_from: Annotated[str | None, Opt(metavar="ADDRESS", help="Sender address of the confirmation "
                                                                   "mail.")] = None,
    notify_when: NotifyWhen = "changes",
    detach: Annotated[bool, Opt("--detach", help="Run in the background; print the job id and log path "
                                                 "(asks for missing passwords first).")] = False,
    gmail_one_copy: Annotated[bool, Opt("--gmail-one-copy", help="Gmail source: keep one copy per message, in "
                                                                 "the first label that holds it (INBOX first), "
                                                                 "to save quota.")] = False,
    force: Annotated[bool, Opt("--force", help="Copy even when the fit check says the target is too small (what "
                                               "does not fit then fails with its reason).")] = False,
    no_wait: Annotated[bool, Opt("--no-wait", help="When a provider's daily budget is used up, exit 4 with the "
                                                   "time the job may go on, instead of waiting for it.")] = False,
) -> None:
    """Copy every folder and message of one account into another (re-runs copy only what is new).

    Examples:

    \b
      mailmigrate import --source-email alice@gmx.net --source-password env:OLD_PW \\
        --target-email alice@example.com --target-password env:NEW_PW \\
        --target-host mail.example.com --target-security ssl --report alice.json
      mailmigrate import --source-email alice@gmail.com ... --dry-run        # show what would be copied
      mailmigrate import ... --include INBOX --include 'Archive/*' --map-folder 'Old Sent=Sent'
      mailmigrate import --source-maildir ~/Maildir --target-email bob@example.com --target-host mail.example.com
      mailmigrate import ... --detach        # asks for passwords, then runs in the background

    Before copying, the fit check sets what is to copy against the target's quota and size limits:
    a job that does not fit exits 2 before it writes anything (--force copies anyway). A provider's
    daily budget (Gmail: 2,500 MB a day from one account) is kept: the job waits for the next day
    and goes on (--no-wait: exit 4, run it again later).
    """
    from migrate.notify.options import NotifyOptions
    from migrate.sides import SideOptions, build_side
    from migrate.ui import print_summary

    # The parser gives the fixed choices as Enum members; everything below takes plain strings.
    source_security, target_security, smtp_security = map(_value, (source_security, target_security, smtp_security))
    lang = _value(lang)  # type: ignore[assignment]
    gate = WriteGate(open=not dry_run)  # every write of this job passes it (migrate/gate.py)
    try:
        if connections < 1 or connections > 32:
            raise UsageError(f"--connections {connections} is out of range", hint="use 1 to 32")
        if batch_size < 1:
            raise UsageError(f"--batch-size {batch_size} must be at least 1", hint="e.g. --batch-size 100")
        if not 0 <= retries <= MAX_RETRIES:
            raise UsageError(f"--retries {retries} is out of range",
                             hint=f"use 0 (no retry) to {MAX_RETRIES}, e.g. --retries 8")
        if not 0 < timeout <= MAX_TIMEOUT:  # also refuses nan and inf
            raise UsageError(f"--timeout {timeout:g} is out of range",
                             hint=f"give seconds, more than 0 and at most {MAX_TIMEOUT:g}, e.g. --timeout 60")
        _warn_literal_secrets(("--source-password", source_password), ("--target-password", target_password),
                              ("--smtp-password", smtp_password))
        if gate.open:  # a dry run writes nothing anywhere, not even a folder
            _check_output(journal, "--journal", "journal.sqlite", gate)
            _check_output(report, "--report", "report.json", gate)
        if smtp_ca_file and not no_notify and not dry_run:
            from migrate.sides import check_ca_file
            check_ca_file(smtp_ca_file, "--smtp-ca-file")
        if insecure:
            from migrate.ui import err
            err.print("[bold red]WARNING: --insecure: TLS certificates are NOT verified; anyone on the network "
                      "path can read your mail and passwords.[/]", soft_wrap=True)
        src = SideOptions("source", email=source_email, username=source_username, password=source_password,
                          provider=source_provider, host=source_host, port=source_port,
                          security=source_security, ca_file=source_ca_file, insecure=insecure,
                          oauth_token=source_oauth_token, maildir=source_maildir, mbox=source_mbox, timeout=timeout)
        dst = SideOptions("target", email=target_email, username=target_username, password=target_password,
                          provider=target_provider, host=target_host, port=target_port,
                          security=target_security, ca_file=target_ca_file, insecure=insecure,
                          oauth_token=target_oauth_token, maildir=target_maildir, timeout=timeout)
        from migrate.notify.i18n import check_lang
        check_lang(lang)
        maps = _parse_maps(map_folder or [])
        # Asks for a missing password on a terminal: also before --detach, which has no terminal after.
        sides = (build_side(src, gate), build_side(dst, gate))
        _check_distinct(*sides)
        if not detach:
            # Start both logins now: they run while the engine is imported below.
            for side in sides:
                side.factory.warm()
        from migrate.api import ImportRequest
        if not detach:
            # migrate.api imports the engine only when a job starts: import it now, while the logins
            # run and before _started() freezes what the imports made.
            from migrate.engine.api import start  # noqa: F401
        _started()
        req = ImportRequest(source=src, target=dst, include=include or [], exclude=exclude or [],
                            map_folder=maps, dry_run=dry_run, journal=journal,
                            report_path=report, connections=connections, retries=retries, batch_count=batch_size,
                            rerun_command=_rerun_command(sys.argv[1:]), progress=not quiet,
                            notify=NotifyOptions(enabled=not no_notify and not dry_run, lang=lang,
                                                 extra=notify or [], sender=notify_from, smtp_host=smtp_host,
                                                 smtp_port=smtp_port, smtp_security=smtp_security,
                                                 smtp_user=smtp_user, smtp_password=smtp_password,
                                                 ca_file=smtp_ca_file, insecure=insecure, when=notify_when))
        req.gmail_single_copy = gmail_one_copy
        req.force = force
        if detach:
            from migrate.background import detach_import
            detach_import(req, sys.argv[1:], sides)
            return
        result = _import_until_done(req, sides, wait=not (no_wait or dry_run))
    except MigrateError as exc:
        _fail(exc)
        return
    print_summary(result)
    raise typer.Exit(result.exit_code)


def _import_until_done(req, sides, *, wait: bool):  # type: ignore[no-untyped-def]
    """Run the import; while a provider's daily budget stops it, say so, wait until it may go
    on and run it again (``wait``). Ctrl-C while waiting: the waiting report (exit 4)."""
    from migrate.api import run_import
    from migrate.engine.budget import run_with_waits

    waited = []

    def say(report) -> None:  # type: ignore[no-untyped-def]
        from migrate.ui import err  # rich: only when there is something to say (25 ms of a no-op re-run)

        waited.append(report)
        err.print(f"waiting: {report.error.message if report.error else 'a daily budget is used up'}",
                  markup=False, highlight=False, soft_wrap=True)

    try:
        return run_with_waits(lambda: run_import(req, sides=sides), wait=wait, on_wait=say)
    except KeyboardInterrupt:
        if not waited:
            raise
        return waited[-1]  # stopped while waiting: nothing was running


def _check_batch_tls(source_ca: str | None, target_ca: str | None, smtp_ca: str | None, insecure: bool) -> None:
    """A wrong CA file is a usage error before any row connects; --insecure warns like import's."""
    from migrate.csvbatch.reader import ca_problem

    for flag, path in (("--source-ca-file", source_ca), ("--target-ca-file", target_ca),
                       ("--smtp-ca-file", smtp_ca)):
        if path and (why := ca_problem(path)):
            raise UsageError(f"{flag}: {why}",
                             hint="give the CA certificate (PEM, '-----BEGIN CERTIFICATE-----') that signed the "
                                  "server's certificate")
    if insecure:
        from migrate.ui import err
        err.print("[bold red]WARNING: --insecure: TLS certificates are NOT verified; anyone on the network "
                  "path can read your mail and passwords.[/]", soft_wrap=True)


@app.command()
def batch(
    file: Annotated[Path | None, typer.Argument(metavar="FILE.csv", help="CSV file, one row per mailbox (see "
                                                                          "--template).", show_default=False)] = None,
    template: Annotated[bool, Opt("--template", help="Print the model CSV file and exit.")] = False,
    parallel: Annotated[int, Opt(metavar="N", help="Mailboxes migrated at the same time (1-25); each "
                                                   "provider's connection cap is respected across rows too.")] = 4,
    journal_dir: Annotated[Path | None, Opt(metavar="DIR", help="Keep the journals here (one per target "
                                                                "account). Default: the per-target journals "
                                                                "under $MAILMIGRATE_HOME or "
                                                                "~/.local/state/mailmigrate.")] = None,
    report: Annotated[Path | None, Opt(metavar="PATH", help="Write the batch JSON report here.")] = None,
    dry_run: Annotated[bool, Opt("--dry-run", help="Show what each row would copy; write nothing "
                                                   "anywhere.")] = False,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="No live table.")] = False,
    no_notify: Annotated[bool, Opt("--no-notify", help="Send no confirmation mails (one per row, to its "
                                                       "source, target and notify addresses).")] = False,
    lang: Annotated[Lang, Opt(metavar=LANG, case_sensitive=False,
                              help="Language of the confirmation mails.")] = Lang.en,
    source_ca_file: Annotated[str | None, Opt(metavar="PEM", help="Trust this CA (PEM) for every source's "
                                                                  "certificate (a row's source_ca_file wins)."
                                              )] = None,
    target_ca_file: Annotated[str | None, Opt(metavar="PEM", help="Trust this CA (PEM) for every target's "
                                                                  "certificate (a row's target_ca_file wins)."
                                              )] = None,
    insecure: Annotated[bool, Opt("--insecure", help="Do not verify TLS certificates (DANGEROUS; never the "
                                                     "default).")] = False,
    smtp_host: Annotated[str | None, Opt(metavar="HOST", help="SMTP relay for the confirmation mails (default: "
                                                              "each target provider's SMTP server with the "
                                                              "target login; generic IMAP rows need this).")] = None,
    smtp_port: SmtpPort = None,
    smtp_security: SmtpSecurity = None,
    smtp_user: SmtpUser = None,
    smtp_password: SmtpPassword = None,
    smtp_ca_file: SmtpCaFile = None,
    notify_from: Annotated[str | None, Opt(metavar="ADDRESS", help="Sender address of the confirmation "
                                                                   "mails.")] = None,
    notify_when: NotifyWhen = "changes",
    force: Annotated[bool, Opt("--force", help="Run rows even when the fit check says their target is too small "
                                               "(without it such a row fails alone, exit 2).")] = False,
    no_wait: Annotated[bool, Opt("--no-wait", help="Rows stopped by a provider's daily budget stay waiting (exit 4) "
                                                   "instead of going on when it allows.")] = False,
) -> None:
    """Import up to 25 mailboxes listed in a CSV file, several at a time (re-running resumes).

    Exit 0 every row done; 1 some row failed or had failed messages (the table and the report say
    which); 2 the CSV is invalid (every problem is listed, nothing was imported); 4 interrupted, or
    rows wait for a daily budget (--no-wait).

    Examples:

    \b
      mailmigrate batch --template > batch.csv     # the model file: fill in one row per mailbox
      mailmigrate batch batch.csv --dry-run        # check every row, copy nothing
      mailmigrate batch batch.csv --parallel 8 --report batch.json
      mailmigrate batch batch.csv --target-ca-file ca.pem --smtp-host smtp.example.com \
        --smtp-user mailer --smtp-password env:SMTP_PW
    """
    lang = _value(lang)  # type: ignore[assignment]
    smtp_security = _value(smtp_security)  # type: ignore[assignment]
    from migrate.csvbatch import (
        CsvInvalid,
        check_permissions,
        has_stored_signin,
        print_batch_summary,
        read_batch,
        run_batch,
        template_text,
    )
    from migrate.ui import err

    _started()
    try:
        if template:
            typer.echo(template_text(), nl=False)
            return
        if file is None:
            raise UsageError("missing CSV file: mailmigrate batch FILE.csv",
                             hint="'mailmigrate batch --template > batch.csv' writes a model file to fill in")
        if not 1 <= parallel <= 25:
            raise UsageError(f"--parallel {parallel} is out of range", hint="use 1 to 25")
        from migrate.notify.i18n import check_lang
        from migrate.notify.options import NotifyOptions
        check_lang(lang)
        notify = NotifyOptions(enabled=not no_notify and not dry_run, lang=lang, sender=notify_from,
                               smtp_host=smtp_host, smtp_port=smtp_port, smtp_security=smtp_security,
                               smtp_user=smtp_user, smtp_password=smtp_password, ca_file=smtp_ca_file,
                               insecure=insecure, when=notify_when)
        _check_batch_tls(source_ca_file, target_ca_file, smtp_ca_file if notify.enabled else None, insecure)
        _warn_literal_secrets(("--smtp-password", smtp_password))
        if warning := check_permissions(file):
            err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
        try:
            rows = read_batch(file, has_stored_signin=has_stored_signin)
        except CsvInvalid as exc:
            for line in exc.lines():  # one problem per line, never wrapped: scripts grep them
                err.print(line, markup=False, highlight=False, soft_wrap=True)
            _fail(exc)
            return
        def say_waiting(waiting, resume) -> None:  # type: ignore[no-untyped-def]
            for r in waiting:
                why = r.error.message if r.error else "a daily budget is used up"
                err.print(f"line {r.line}: waiting: {why}", markup=False, highlight=False, soft_wrap=True)

        result = run_batch(rows, parallel=parallel, journal_dir=journal_dir, report_path=report,
                           progress_ui=not quiet, dry_run=dry_run, rerun_command=_rerun_command(sys.argv[1:]),
                           file=str(file), notify=notify, source_ca_file=source_ca_file,
                           target_ca_file=target_ca_file, insecure=insecure, force=force, wait=not no_wait,
                           on_wait=say_waiting)
    except MigrateError as exc:
        _fail(exc)
        return
    except KeyboardInterrupt:  # a second Ctrl-C while rows wind down: stop now (journals are crash-safe)
        print("interrupted: run the same command again to resume", file=sys.stderr)
        os._exit(int(ExitCode.CONNECTION))
    print_batch_summary(result)
    if report and not dry_run:
        typer.echo(f"report: {report}")
    raise typer.Exit(result.exit_code)


@app.command()
def status(
    job: Annotated[str | None, typer.Argument(metavar="[JOB]", help="Job id or its first characters: that job in "
                                                                    "detail (default: one line per job).",
                                              show_default=False)] = None,
    journal: Annotated[Path | None, Opt(metavar="PATH", help="Journal file (default: every journal under the "
                                                             "state dir).")] = None,
    follow: Annotated[bool, Opt("--follow", "-f", help="Keep showing live progress until the job ends.")] = False,
    failures: Annotated[bool, Opt("--failures", help="List every failed message with its reason.")] = False,
    as_json: Annotated[bool, Opt("--json", help="Machine-readable: {\"jobs\": [...]} (with JOB: folders and "
                                                "failures too).")] = False,
) -> None:
    """Show what jobs did and what is left, from their journals.

    Examples:

    \b
      mailmigrate status                                  # one line per job: state, counts, last error
      mailmigrate status JOB                              # one job: folders, failures
      mailmigrate status JOB --failures                   # every failed message and why
      mailmigrate status --json                           # for scripts
      mailmigrate status JOB --journal J.sqlite --follow  # live progress of a running job
    """
    from migrate.status import show_status

    _started()
    try:
        if journal is not None and journal.is_dir():
            raise UsageError(f"--journal {journal} is a directory", hint="pass --journal PATH of a journal file")
        if journal is not None and journal.is_file():
            _check_journal(journal)
        code = show_status(journal, job, follow=follow, as_json=as_json, failures=failures)
    except MigrateError as exc:
        _fail(exc)
        return
    raise typer.Exit(code)


@app.command("notify", short_help="Send a job's confirmation mail again (after the SMTP server was down).")
def notify_cmd(
    journal: Annotated[Path, Opt(metavar="PATH", help="Journal of the job(s) whose confirmation mail was not "
                                                      "sent.")],
    job: Annotated[str | None, typer.Argument(metavar="[JOB]", help="Job id (default: every unsent mail).",
                                              show_default=False)] = None,
    smtp_password: Annotated[str | None, Opt(metavar=SECRET_REF, help="SMTP password when it was not given as "
                                                                      "env:/file: (literal passwords are never "
                                                                      "stored).")] = None,
    again: Annotated[bool, Opt("--again", help="Send even mails that were already sent.")] = False,
    smtp_host: Annotated[str | None, Opt(metavar="HOST", help="Send through this SMTP server instead of the one "
                                                              "recorded (also for mails that had none).")] = None,
    smtp_port: SmtpPort = None,
    smtp_security: SmtpSecurity = None,
    smtp_user: SmtpUser = None,
    smtp_ca_file: SmtpCaFile = None,
    insecure: Annotated[bool, Opt("--insecure", help="Do not verify the SMTP server's certificate (DANGEROUS)."
                                  )] = False,
) -> None:
    """Send a job's confirmation mail again (e.g. after the SMTP server was down).

    The SMTP options correct what the import or batch used (a wrong host, port, login or password),
    or give a server to mails that had none (generic IMAP targets without --smtp-host)."""
    from migrate.accounts import resolve_secret
    from migrate.notify.deliver import resend
    from migrate.notify.options import NotifyOptions
    from migrate.ui import out
    smtp_security = _value(smtp_security)  # type: ignore[assignment]
    try:
        _warn_literal_secrets(("--smtp-password", smtp_password))
        if not journal.exists():
            raise UsageError(f"journal {journal} does not exist", hint="check --journal PATH")
        _check_batch_tls(None, None, smtp_ca_file, insecure)
        pw = resolve_secret(smtp_password, what="--smtp-password") if smtp_password else None
        fix = None
        if smtp_host or smtp_port or smtp_security or smtp_user or smtp_ca_file or insecure:
            fix = NotifyOptions(smtp_host=smtp_host, smtp_port=smtp_port, smtp_security=smtp_security,
                                smtp_user=smtp_user, smtp_password=smtp_password, ca_file=smtp_ca_file,
                                insecure=insecure)
        lines = resend(journal, job, password=pw, include_sent=again, smtp=fix)
    except MigrateError as exc:
        _fail(exc)
        return
    if not lines:
        out.print("nothing to send: every confirmation mail in this journal was sent")
    for line in lines:
        out.print(line, markup=False, soft_wrap=True)
    raise typer.Exit(1 if any("NOT sent" in line for line in lines) else 0)


@app.command()
def providers(
    name: Annotated[str | None, typer.Argument(metavar="[NAME]", help="Show this preset in detail.",
                                               show_default=False)] = None,
) -> None:
    """List the provider presets with their settings and what a user must do first.

    Examples:

    \b
      mailmigrate providers          # every preset
      mailmigrate providers gmail    # one preset in detail: servers, sign-in, limits, folders
    """
    from rich.table import Table

    from migrate.providers.describe import provider_rows
    from migrate.ui import out
    if name is not None:
        try:
            _show_preset(name)
        except MigrateError as exc:
            _fail(exc)
        return
    rows = provider_rows()
    if out.width < 150:  # too narrow for a table (a pipe, a small terminal): one block each
        for r in rows:
            out.print(f"{r['name']}: {r['title']}", markup=False, soft_wrap=True)
            for c in ("domains", "imap", "smtp", "auth", "username", "max_connections", "size_limit", "hint"):
                out.print(f"  {c}: {r[c]}", markup=False, soft_wrap=True)
        return
    table = Table(title="Provider presets", show_lines=True)
    for col in ("name", "title", "imap", "smtp", "auth", "username", "max_connections", "size_limit", "hint"):
        # names are what users type and grep for: never fold them, even on a narrow or piped output
        table.add_column(col, overflow="fold", no_wrap=col == "name", min_width=12 if col == "name" else None)
    for r in rows:
        table.add_row(*(r[c] for c in ("name", "title", "imap", "smtp", "auth", "username", "max_connections",
                                       "size_limit", "hint")))
    out.print(table)


def _show_preset(name: str) -> None:
    """``mailmigrate providers NAME``: every fact of one preset, a line each (never wrapped: greppable)."""
    from migrate import providers
    from migrate.providers.describe import preset_row

    preset = providers.get(name)  # UsageError listing the valid names
    row, q = preset_row(preset), preset.quirks
    lines = [f"{preset.name}: {preset.title}", f"  domains: {row['domains']}",
             f"  imap: {row['imap'] if preset.imap_host else 'none: give --source-host/--target-host'}",
             f"  smtp: {row['smtp']}", f"  auth: {row['auth']}",
             f"  login: {'the local part of the address' if preset.username == 'localpart' else 'the address'}"]
    if preset.oauth:
        lines.append(f"  sign in: mailmigrate auth {preset.name} --email ADDRESS")
    lines += [f"  max_connections: {row['max_connections']}", f"  size_limit: {row['size_limit']}"]
    if q.max_messages_per_second:
        lines.append(f"  upload pace: at most {q.max_messages_per_second:g} messages/s")
    b = preset.budget
    if b.download_mb_per_day or b.upload_mb_per_day:
        per_day = [f"{what} {mb:,g} MB" for what, mb in (("download", b.download_mb_per_day),
                                                         ("upload", b.upload_mb_per_day)) if mb]
        lines.append(f"  daily budget per account: {', '.join(per_day)} ({b.source})")
    if b.max_messages_per_folder:
        lines.append(f"  messages per folder at most: {b.max_messages_per_folder:,} ({b.source})")
    if q.folder_count_cap:
        lines.append(f"  messages visible per folder: {q.folder_count_cap}"
                     + (f" (all of them on {q.export_host})" if q.export_host else ""))
    if preset.special_folders:
        lines.append("  special folders: " + ", ".join(f"{k} = {v}" for k, v in preset.special_folders.items()))
    if q.source_skip_folders:
        lines.append(f"  folders not read as a source: {', '.join(q.source_skip_folders)}")
    if q.reserved_folders:
        lines.append(f"  names it keeps for itself: {', '.join(q.reserved_folders)}")
    if q.drop_flags:
        lines.append(f"  flags it refuses (dropped): {', '.join(q.drop_flags)}")
    lines.append(f"  first: {row['hint'] or '-'}")
    typer.echo("\n".join(lines))


@app.command()
def auth(
    provider: Annotated[str, typer.Argument(metavar="{gmail,outlook,microsoft365}",
                                            help="The provider to sign in with.", show_default=False)],
    email: Annotated[str, Opt(metavar="ADDRESS", help="The address to sign in as.")],
    client_id: Annotated[str | None, Opt(metavar="ID", help="OAuth client id (default: "
                                                            "$MAILMIGRATE_GOOGLE_CLIENT_ID or "
                                                            "$MAILMIGRATE_MS_CLIENT_ID).")] = None,
    client_secret: Annotated[str | None, Opt(metavar=SECRET_REF, help="Google client secret (default: "
                                                                      "$MAILMIGRATE_GOOGLE_CLIENT_SECRET)."
                                             )] = None,
    no_browser: Annotated[bool, Opt("--no-browser", help="Google: only print the address to open.")] = False,
    forget: Annotated[bool, Opt("--forget", help="Delete the stored sign-in instead.")] = False,
) -> None:
    """Sign in with Google or Microsoft once; imports then use the stored refresh token (no password).

    Google opens a browser and returns to a one-time 127.0.0.1 address; Microsoft prints a code to
    enter at microsoft.com/devicelogin (works over SSH). The refresh token goes to the OS keyring if
    one is available, else to $MAILMIGRATE_HOME/tokens/ (readable only by you); never an access token.

    Examples:

    \b
      mailmigrate auth gmail --email alice@gmail.com        # browser sign-in
      mailmigrate auth outlook --email bob@outlook.com      # device code: works over SSH
      mailmigrate auth gmail --email alice@gmail.com --client-id ID --client-secret env:GOOGLE_SECRET
      mailmigrate auth outlook --email bob@outlook.com --forget
    """
    from migrate import oauth
    from migrate.accounts import resolve_secret
    from migrate.ui import out
    try:
        _warn_literal_secrets(("--client-secret", client_secret))
        kind = oauth.kind_for(provider)
        if forget:
            gone = oauth.forget_signin(kind, email)
            out.print(f"removed the stored sign-in for {email}: {', '.join(gone)}" if gone
                      else f"no stored sign-in for {email}", markup=False, soft_wrap=True)
            return
        secret = resolve_secret(client_secret, what="--client-secret").get() if client_secret else None
        done = oauth.sign_in(provider, email, client_id=client_id, client_secret=secret,
                             open_browser=not no_browser, echo=lambda s: out.print(s, markup=False, soft_wrap=True))
    except MigrateError as exc:
        _fail(exc)
        return
    if done.account and done.account.lower() != email.strip().lower():
        from migrate.ui import err
        err.print(f"warning: signed in as {done.account}, stored for {email}: imports log in as {email}",
                  markup=False, soft_wrap=True)
    where = "the OS keyring" if done.stored_in == "keyring" else f"{done.stored_in} (readable only by you)"
    out.print(f"signed in: {email}; refresh token stored in {where}", markup=False, soft_wrap=True)


@app.command()
def demo(
    target_maildir: Annotated[Path, Opt(metavar="DIR", help="Where to write the copy.")] = Path("demo-output/Maildir"),
    journal: Annotated[Path | None, Opt(metavar="PATH", help="Journal file (default: next to the output).")] = None,
) -> None:
    """Migrate the bundled sample mailbox into a local Maildir (no server needed), then show the summary."""
    from migrate.api import ImportRequest, run_import, sample_mailbox
    from migrate.sides import SideOptions
    from migrate.ui import print_summary

    _started()
    try:
        _make_dir(target_maildir.parent, "--target-maildir", target_maildir, WriteGate())
        src = SideOptions("source", maildir=sample_mailbox(), email="demo@example.org")
        dst = SideOptions("target", maildir=target_maildir, email="demo-copy@example.org")
        req = ImportRequest(source=src, target=dst, journal=journal or target_maildir.parent / "journal.sqlite",
                            report_path=target_maildir.parent / "report.json", connections=2,
                            rerun_command="mailmigrate demo", progress=False)
        result = run_import(req)
    except MigrateError as exc:
        _fail(exc)
        return
    print_summary(result)
    typer.echo(f"report: {target_maildir.parent / 'report.json'}")
    raise typer.Exit(result.exit_code)


# Options of `serve` and `worker` (a worker runs the imports serve queues: same target, same mails).
ServeTargetHost = Annotated[str | None, Opt("--target-host", metavar="HOST",
                                            help="IMAP host of your mail system: people sign in there and every "
                                                 "import goes there (or --target-provider).")]
ServeTargetProvider = Annotated[str | None, Opt("--target-provider", metavar="PRESET",
                                                help="Your mail system is this provider preset (its IMAP host, "
                                                     "port and security; see 'mailmigrate providers'), instead "
                                                     "of --target-host.")]
ServeTargetPort = Annotated[int | None, Opt("--target-port", metavar="PORT", help="IMAP port of your mail system.")]
ServeTargetSecurity = Annotated[Security | None, Opt("--target-security", metavar=SECURITY, case_sensitive=False,
                                                     help="Connection security (default: ssl).")]
ServeTargetCa = Annotated[str | None, Opt("--target-ca-file", metavar="PEM",
                                          help="Trust this CA (PEM) for your mail system's certificate.")]
ServeSmtpHost = Annotated[str | None, Opt("--smtp-host", metavar="HOST",
                                          help="SMTP relay for the service's mails (confirmation mails, sign-in "
                                               "links); default for confirmation mails: the target provider's "
                                               "SMTP server with the target login.")]
ServeMailFrom = Annotated[str | None, Opt("--mail-from", metavar="ADDRESS", help="Sender address of the service's "
                                                                                 "mails.")]
ServePublicUrl = Annotated[str | None, Opt("--public-url", metavar="URL",
                                           help="Address browsers reach the service at (sign-in links, OAuth "
                                                "redirect URI <URL>/oauth/callback); default http://HOST:PORT.")]
ServeGoogleId = Annotated[str | None, Opt("--google-client-id", metavar="ID",
                                          help="OAuth client (type 'Web application') for 'Sign in with Google' "
                                               "(default: MAILMIGRATE_GOOGLE_CLIENT_ID).")]
ServeGoogleSecret = Annotated[str | None, Opt("--google-client-secret", metavar="env:NAME|file:PATH",
                                              help="Its secret (default: MAILMIGRATE_GOOGLE_CLIENT_SECRET).")]
ServeMicrosoftId = Annotated[str | None, Opt("--microsoft-client-id", metavar="ID",
                                             help="Entra app (public client, redirect URI <URL>/oauth/callback) "
                                                  "for 'Sign in with Microsoft' (default: MAILMIGRATE_MS_CLIENT_ID).")]
ServeAllowNetwork = Annotated[list[str] | None, Opt("--allow-source-network", metavar="CIDR",
                                                    help="Let people import from source servers in this internal "
                                                         "range (repeatable; by default loopback and private "
                                                         "addresses are refused).")]
ServeDatabase = Annotated[str | None, Opt("--database", metavar="URL",
                                          help="Keep everything in this PostgreSQL database (postgresql://...) "
                                               "and run the imports on 'mailmigrate worker' processes; "
                                               "default: $MAILMIGRATE_HOME/service.sqlite and imports in this "
                                               "process.")]


def _service_config(*, target_host: str | None, target_provider: str | None, target_port: int | None,
                    target_security: Security | None, target_ca_file: str | None, smtp_host: str | None,
                    smtp_port: int | None, smtp_security: Security | None, smtp_user: str | None,
                    smtp_password: str | None, smtp_ca_file: str | None, mail_from: str | None,
                    google_client_id: str | None, google_client_secret: str | None,
                    microsoft_client_id: str | None, allow_source_network: list[str] | None,
                    database: str | None, **rest: Any) -> Any:
    """The ServiceConfig of `serve` and `worker`, their options checked (UsageError: one line)."""
    if any(p is not None and not 0 < p < 65536 for p in (target_port, smtp_port)):
        raise UsageError("a port must be 1-65535", hint="--port 8080, --target-port 993, --smtp-port 587")
    if bool(target_host) == bool(target_provider):
        raise UsageError("give --target-provider NAME or --target-host HOST (exactly one)",
                         hint="e.g. --target-host mail.example.com --target-security ssl")
    _warn_literal_secrets(("--smtp-password", smtp_password), ("--google-client-secret", google_client_secret))
    from migrate.accounts import resolve_secret
    google_secret = resolve_secret(google_client_secret, what="--google-client-secret").get() \
        if google_client_secret else None
    from migrate.sides import check_ca_file
    for path, flag in ((target_ca_file, "--target-ca-file"), (smtp_ca_file, "--smtp-ca-file")):
        if path:
            check_ca_file(path, flag)
    if database is not None:
        from migrate.store.postgres import check_url
        check_url(database)
    from migrate.service import ServiceConfig
    return ServiceConfig(target_host=target_host, target_provider=target_provider, target_port=target_port,
                         target_security=_value(target_security), target_ca_file=target_ca_file,
                         smtp_host=smtp_host, smtp_port=smtp_port, smtp_security=_value(smtp_security),
                         smtp_user=smtp_user, smtp_password=smtp_password, smtp_ca_file=smtp_ca_file,
                         mail_from=mail_from, google_client_id=google_client_id, google_client_secret=google_secret,
                         microsoft_client_id=microsoft_client_id,
                         allow_source_networks=tuple(allow_source_network or ()), database=database, **rest)


@app.command()
def serve(
    target_host: ServeTargetHost = None,
    target_provider: ServeTargetProvider = None,
    host: Annotated[str, Opt(metavar="ADDRESS", help="Listen on this address.")] = "127.0.0.1",
    port: Annotated[int, Opt(metavar="PORT", help="Listen on this port.")] = 8080,
    jobs: Annotated[int, Opt(metavar="N", help="Imports that run at once (1-64; without --database).")] = 4,
    target_port: ServeTargetPort = None,
    target_security: ServeTargetSecurity = None,
    target_ca_file: ServeTargetCa = None,
    smtp_host: ServeSmtpHost = None,
    smtp_port: SmtpPort = None,
    smtp_security: SmtpSecurity = None,
    smtp_user: SmtpUser = None,
    smtp_password: SmtpPassword = None,
    smtp_ca_file: SmtpCaFile = None,
    mail_from: ServeMailFrom = None,
    public_url: ServePublicUrl = None,
    signin_link_days: Annotated[float, Opt(metavar="DAYS", help="How long a mailed sign-in link "
                                                                "lasts.")] = 7.0,
    google_client_id: ServeGoogleId = None,
    google_client_secret: ServeGoogleSecret = None,
    microsoft_client_id: ServeMicrosoftId = None,
    allow_source_network: ServeAllowNetwork = None,
    cookie_secure: Annotated[bool | None, Opt("--cookie-secure/--no-cookie-secure",
                                              help="Secure cookies and Strict-Transport-Security, for a service "
                                                   "reached over HTTPS (default: on when --public-url is "
                                                   "https://).")] = None,
    database: ServeDatabase = None,
) -> None:
    """Run the import tool as a web service (HTTP API; state in $MAILMIGRATE_HOME/service.sqlite,
    or in PostgreSQL with --database, where 'mailmigrate worker' processes run the imports).

    Operators authenticate with MAILMIGRATE_ADMIN_TOKEN (Authorization: Bearer); passwords of
    waiting jobs are encrypted with MAILMIGRATE_SECRET_KEY (a Fernet key) or a generated key file.

    Examples:

    \b
      mailmigrate serve --target-host mail.example.com --target-security ssl --jobs 8
      mailmigrate serve --target-provider gmx --smtp-host smtp.example.com --smtp-user imports \\
        --smtp-password env:SMTP_PW --mail-from imports@example.com
      mailmigrate serve --database postgresql://mailmigrate@db/mailmigrate --target-host mail.example.com
    """
    options = dict(locals())  # the command's options, before any name of ours
    _started()
    try:
        if not 1 <= jobs <= 64:
            raise UsageError(f"--jobs {jobs} is out of range (1-64)", hint="give --jobs 4, say")
        if not 0 < port < 65536:
            raise UsageError("a port must be 1-65535", hint="--port 8080, --target-port 993, --smtp-port 587")
        url = public_url or f"http://{host}:{port}"
        cfg = _service_config(**_options_of(options, exclude=("host", "port", "public_url", "cookie_secure")),
                              public_url=url,
                              cookie_secure=url.startswith("https://") if cookie_secure is None else cookie_secure)
        import uvicorn

        from migrate.service import create_app
        application = create_app(cfg)
        if database is not None:
            application.state.service.check_database()
    except MigrateError as exc:
        _fail(exc)
        return
    where = f"{jobs} at once" if database is None else "run by 'mailmigrate worker' processes"
    typer.echo(f"mailmigrate serve: http://{host}:{port}/ (imports into {cfg.target_server}, {where})")
    signins = sorted(application.state.service.signin.clients)
    if signins:
        typer.echo(f"sign-in with {' and '.join(signins)}: redirect URI {cfg.public_url}/oauth/callback")
    uvicorn.run(application, host=host, port=port, log_level="info", proxy_headers=False)


def _options_of(values: dict[str, Any], *, exclude: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in exclude}


@app.command()
def worker(
    database: Annotated[str, Opt("--database", metavar="URL", help="The PostgreSQL database of 'mailmigrate serve "
                                                                   "--database' (postgresql://...).")],
    target_host: ServeTargetHost = None,
    target_provider: ServeTargetProvider = None,
    concurrency: Annotated[int, Opt(metavar="N", help="Imports this worker runs at once (1-64).")] = 4,
    max_per_provider: Annotated[list[str] | None, Opt(metavar="PROVIDER=N",
                                                      help="At most N imports from this provider at once, over "
                                                           "all workers (repeatable; give every worker the "
                                                           "same).")] = None,
    stalled_after: Annotated[float, Opt(metavar="SECONDS", help="A worker silent this long is taken for dead: "
                                                                "its imports go to the others.")] = 30.0,
    target_port: ServeTargetPort = None,
    target_security: ServeTargetSecurity = None,
    target_ca_file: ServeTargetCa = None,
    smtp_host: ServeSmtpHost = None,
    smtp_port: SmtpPort = None,
    smtp_security: SmtpSecurity = None,
    smtp_user: SmtpUser = None,
    smtp_password: SmtpPassword = None,
    smtp_ca_file: SmtpCaFile = None,
    mail_from: ServeMailFrom = None,
    public_url: ServePublicUrl = None,
    google_client_id: ServeGoogleId = None,
    google_client_secret: ServeGoogleSecret = None,
    microsoft_client_id: ServeMicrosoftId = None,
    allow_source_network: ServeAllowNetwork = None,
) -> None:
    """Run the imports of a 'serve --database' service (on this host; start as many as you like).

    Give it the same target, SMTP and sign-in options as 'serve', and the same
    MAILMIGRATE_SECRET_KEY. SIGTERM: the imports in flight stop after their current batch and
    go to another worker. A worker killed outright: its imports go to another one after
    --stalled-after seconds, and resume where they stopped.

    Exit 0 stopped; 2 bad option or database schema not up to date; 3 login to PostgreSQL
    refused; 4 PostgreSQL unreachable.

    Examples:

    \b
      mailmigrate worker --database postgresql://mailmigrate@db/mailmigrate --target-host mail.example.com
      mailmigrate worker --database $DB --target-provider gmx --concurrency 8 --max-per-provider gmail=50
    """
    options = dict(locals())  # the command's options, before any name of ours
    _started()
    try:
        if not 1 <= concurrency <= 64:
            raise UsageError(f"--concurrency {concurrency} is out of range (1-64)", hint="give --concurrency 4, say")
        if not stalled_after >= 2:
            raise UsageError(f"--stalled-after {stalled_after:g} is too short (at least 2 seconds)",
                             hint="give --stalled-after 30, say")
        from migrate.service.worker import Worker, parse_caps
        caps = parse_caps(max_per_provider)
        cfg = _service_config(**_options_of(options, exclude=("concurrency", "max_per_provider", "stalled_after",
                                                               "public_url")),
                              jobs=concurrency, **({"public_url": public_url} if public_url else {}))
        runner = Worker(cfg, concurrency=concurrency, max_per_provider=caps, stalled_after=stalled_after)
        runner.check()
        runner.run()
    except MigrateError as exc:
        _fail(exc)
        return


db_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                     help="The PostgreSQL database (preview): its schema.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(
    database: Annotated[str, Opt("--database", metavar="URL", help="postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE "
                                                                   "(the database must exist).")],
) -> None:
    """Bring the PostgreSQL database's schema up to date (applies the pending numbered migrations
    and creates the task queue's tables; nothing to do when it is current; two at once: the second
    waits, then has nothing to do).

    Exit 0 up to date; 2 bad URL or no such database; 3 login refused; 4 server unreachable.

    Examples:

    \b
      mailmigrate db upgrade --database postgresql://mailmigrate@db.example.com/mailmigrate
    """
    try:
        from migrate.service.queue import apply_schema
        from migrate.store.postgres import connect, upgrade
        applied = upgrade(database)
        with contextlib.closing(connect(database)) as conn:  # the task queue's tables (procrastinate's own)
            if apply_schema(conn):
                applied.append("task queue (procrastinate)")
    except MigrateError as exc:
        _fail(exc)
        return
    typer.echo(f"applied: {', '.join(applied)}" if applied else "database schema is up to date: nothing to do")


def _click_exception() -> type[Exception]:
    try:  # typer >= 0.2x vendors click; older releases use the click package
        from typer._click.exceptions import ClickException
    except ImportError:
        from click.exceptions import ClickException
    return ClickException


def main() -> None:
    gc.disable()  # until the command's imports are done: see _started
    if os.path.basename(sys.argv[0]) in ("mailmigrate", "cli.py"):  # the program, not a caller's process
        atexit.register(_skip_teardown)  # registered first, so it runs after every other exit handler
    code = _run()
    gc.enable()
    _exit_code.append(code)
    sys.exit(code)


_exit_code: list[int] = []


def _skip_teardown() -> None:
    """The last exit handler: everything that cleans up (other atexit handlers, thread joins, the
    journal closed by the job) has run. What is left is the interpreter freeing its few hundred
    thousand objects one by one: 10 ms of a 0.2 s re-run, for nothing (Instagram's trick)."""
    if not _exit_code:  # not leaving through main()
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(_exit_code[-1])


def _run() -> int:
    try:
        code = app(prog_name="mailmigrate", standalone_mode=False)  # click's usage errors: see below
    except _click_exception() as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare 'mailmigrate': show the help, as click does
            exc.show()  # type: ignore[attr-defined]
        else:  # unknown option, missing or malformed value: one line with a hint, like ours
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "mailmigrate"
            print(f"error: {redact(exc.format_message())} (hint: see '{where} --help')", file=sys.stderr)
        return int(exc.exit_code)  # type: ignore[attr-defined]
    except typer.Abort:  # Ctrl-C or end of input at the password prompt
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return int(ExitCode.CONNECTION)
    except MigrateError as exc:  # anything that escaped a command
        from migrate.ui import err
        err.print(exc.one_line(), markup=False, highlight=False, soft_wrap=True)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return int(ExitCode.CONNECTION)
    except Exception as exc:  # noqa: BLE001 - last resort: one line, no traceback, no secret
        if os.environ.get("MAILMIGRATE_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {redact(str(exc))} (set MAILMIGRATE_DEBUG=1 for details)",
              file=sys.stderr)
        return int(ExitCode.CONNECTION)
    if code == 130:  # typer's exit for a Ctrl-C outside a job (e.g. at the password prompt)
        print("interrupted: run the same command again to resume", file=sys.stderr)
        code = int(ExitCode.CONNECTION)
    return code if isinstance(code, int) else 0

if __name__ == "__main__":
    main()
