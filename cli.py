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
from pathlib import Path
from typing import Annotated

import typer

from migrate.errors import ExitCode, MigrateError, UsageError, redact, register_secret
from migrate.gate import WriteGate

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Bulk mailbox migration: copy every folder and message from one account to another, "
                       "resumably, without duplicates.")

Opt = typer.Option


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


def _mask_secret(value: str) -> str:
    if value.startswith(("env:", "file:")):
        return value  # a reference, not the secret: keeps the command re-runnable
    register_secret(value)  # redact() now scrubs it from every message, too
    return "********"


def _rerun_command(argv: list[str]) -> str:
    """The command line to run the job again, as stored in the journal and the report.

    A password given literally (``--source-password VALUE``) is replaced by ``********``: the
    rerun command is computed before the sides resolve (and register) their secrets, so
    ``redact`` alone would let it through.
    """
    args: list[str] = []
    mask_next = False
    for a in argv:
        opt, eq, value = a.partition("=")
        if mask_next:
            a, mask_next = _mask_secret(a), False
        elif opt in _SECRET_OPTIONS and eq:
            a = f"{opt}={_mask_secret(value)}"
        elif a in _SECRET_OPTIONS:
            mask_next = True
        args.append(a)
    return redact("mailmigrate " + " ".join(shlex.quote(a) for a in args))


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


@app.command("import")
def import_(
    source_email: Annotated[str | None, Opt(help="Source address (login unless --source-username).")] = None,
    source_username: Annotated[str | None, Opt(help="Source login when it differs from the address.")] = None,
    source_password: Annotated[str | None, Opt(help="env:NAME, file:PATH or the password; prompted if omitted "
                                                    "on a terminal.")] = None,
    source_provider: Annotated[str | None, Opt(help="Preset name (see 'mailmigrate providers'); default: "
                                                    "detected from the address.")] = None,
    source_host: Annotated[str | None, Opt(help="IMAP host (overrides the preset).")] = None,
    source_port: Annotated[int | None, Opt(help="IMAP port.")] = None,
    source_security: Annotated[str | None, Opt(help="ssl | starttls | none.")] = None,
    source_ca_file: Annotated[str | None, Opt(help="Trust this CA (PEM) for the source's certificate.")] = None,
    source_oauth_token: Annotated[str | None, Opt(help="OAuth2 access token: env:NAME or file:PATH.")] = None,
    source_maildir: Annotated[Path | None, Opt(help="Read a local Maildir instead of IMAP.")] = None,
    source_mbox: Annotated[Path | None, Opt(help="Read a local mbox file or folder of mbox files.")] = None,
    target_email: Annotated[str | None, Opt(help="Target address.")] = None,
    target_username: Annotated[str | None, Opt(help="Target login when it differs from the address.")] = None,
    target_password: Annotated[str | None, Opt(help="env:NAME, file:PATH or the password.")] = None,
    target_provider: Annotated[str | None, Opt(help="Preset name; default: detected from the address.")] = None,
    target_host: Annotated[str | None, Opt(help="IMAP host (overrides the preset).")] = None,
    target_port: Annotated[int | None, Opt(help="IMAP port.")] = None,
    target_security: Annotated[str | None, Opt(help="ssl | starttls | none.")] = None,
    target_ca_file: Annotated[str | None, Opt(help="Trust this CA (PEM) for the target's certificate.")] = None,
    target_oauth_token: Annotated[str | None, Opt(help="OAuth2 access token: env:NAME or file:PATH.")] = None,
    target_maildir: Annotated[Path | None, Opt(help="Write into a local Maildir instead of IMAP.")] = None,
    insecure: Annotated[bool, Opt(help="Do not verify TLS certificates (DANGEROUS; never the default).")] = False,
    include: Annotated[list[str] | None, Opt(help="Copy only folders matching this pattern (repeatable; "
                                                   "fnmatch, or a role like \\Sent).")] = None,
    exclude: Annotated[list[str] | None, Opt(help="Leave out folders matching this pattern (repeatable).")] = None,
    map_folder: Annotated[list[str] | None, Opt(help="SRC=DST: put source folder SRC into target folder DST "
                                                      "(repeatable).")] = None,
    dry_run: Annotated[bool, Opt(help="Show the folder mapping and counts; write nothing anywhere.")] = False,
    journal: Annotated[Path | None, Opt(help="Job journal (SQLite). Default: one per target account under "
                                             "$MAILMIGRATE_HOME or ~/.local/state/mailmigrate.")] = None,
    report: Annotated[Path | None, Opt(help="Write the JSON report here.")] = None,
    connections: Annotated[int, Opt(help="Parallel connections per side (capped by the provider preset).")] = 4,
    timeout: Annotated[float, Opt(help="Network read timeout in seconds.")] = 60.0,
    retries: Annotated[int, Opt(help="Retries per folder after a dropped connection or throttling.")] = 8,
    batch_size: Annotated[int, Opt(help="Messages per APPEND batch (also capped at 4 MB).")] = 100,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="No live progress.")] = False,
    no_notify: Annotated[bool, Opt("--no-notify", help="Send no confirmation mail.")] = False,
    notify: Annotated[list[str] | None, Opt(help="Extra address for the confirmation mail (repeatable).")] = None,
    lang: Annotated[str, Opt(help="Language of the confirmation mail: en, de, fr, it.")] = "en",
    smtp_host: Annotated[str | None, Opt(help="SMTP relay for the confirmation mail (default: the target "
                                              "provider's SMTP server with the target login).")] = None,
    smtp_port: Annotated[int | None, Opt(help="SMTP port.")] = None,
    smtp_security: Annotated[str | None, Opt(help="ssl | starttls | none (default starttls).")] = None,
    smtp_user: Annotated[str | None, Opt(help="SMTP login.")] = None,
    smtp_password: Annotated[str | None, Opt(help="SMTP password: env:NAME, file:PATH or the value.")] = None,
    smtp_ca_file: Annotated[str | None, Opt(help="Trust this CA (PEM) for the SMTP server.")] = None,
    notify_from: Annotated[str | None, Opt(help="Sender address of the confirmation mail.")] = None,
    detach: Annotated[bool, Opt(help="Run in the background; print the job id and log path.")] = False,
    gmail_one_copy: Annotated[bool, Opt(help="Gmail source: keep one copy per message, in the first label "
                                             "that holds it (INBOX first), to save quota.")] = False,
) -> None:
    """Copy every folder and message of one account into another (re-runs copy only what is new)."""
    from migrate.notify.options import NotifyOptions
    from migrate.sides import SideOptions, build_side
    from migrate.ui import print_summary

    gate = WriteGate(open=not dry_run)  # every write of this job passes it (migrate/gate.py)
    try:
        if connections < 1 or connections > 32:
            raise UsageError(f"--connections {connections} is out of range", hint="use 1 to 32")
        if batch_size < 1:
            raise UsageError(f"--batch-size {batch_size} must be at least 1", hint="e.g. --batch-size 100")
        if gate.open:  # a dry run writes nothing anywhere, not even a folder
            _check_output(journal, "--journal", "journal.sqlite", gate)
            _check_output(report, "--report", "report.json", gate)
        if insecure:
            from migrate.ui import err
            err.print("[bold red]WARNING: --insecure: TLS certificates are NOT verified; anyone on the network "
                      "path can read your mail and passwords.[/]")
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
        sides = None
        if not detach:
            # Start both logins now: they run while the engine is imported below.
            sides = (build_side(src, gate), build_side(dst, gate))
            for side in sides:
                side.factory.warm()
        from migrate.api import ImportRequest, run_import
        _started()
        req = ImportRequest(source=src, target=dst, include=include or [], exclude=exclude or [],
                            map_folder=maps, dry_run=dry_run, journal=journal,
                            report_path=report, connections=connections, retries=retries, batch_count=batch_size,
                            rerun_command=_rerun_command(sys.argv[1:]), progress=not quiet,
                            notify=NotifyOptions(enabled=not no_notify and not dry_run, lang=lang,
                                                 extra=notify or [], sender=notify_from, smtp_host=smtp_host,
                                                 smtp_port=smtp_port, smtp_security=smtp_security,
                                                 smtp_user=smtp_user, smtp_password=smtp_password,
                                                 ca_file=smtp_ca_file, insecure=insecure))
        req.gmail_single_copy = gmail_one_copy
        if detach:
            from migrate.background import detach_import
            detach_import(req, sys.argv[1:])
            return
        result = run_import(req, sides=sides)
    except MigrateError as exc:
        _fail(exc)
        return
    print_summary(result)
    raise typer.Exit(result.exit_code)


@app.command()
def batch(
    file: Annotated[Path | None, typer.Argument(help="CSV file, one row per mailbox (see --template).",
                                                show_default=False)] = None,
    template: Annotated[bool, Opt("--template", help="Print the model CSV file and exit.")] = False,
    parallel: Annotated[int, Opt(help="Mailboxes migrated at the same time (1-25); each provider's connection "
                                      "cap is respected across rows too.")] = 4,
    journal_dir: Annotated[Path | None, Opt(help="Keep the journals here (one per target account). Default: "
                                                 "the per-target journals under $MAILMIGRATE_HOME or "
                                                 "~/.local/state/mailmigrate.")] = None,
    report: Annotated[Path | None, Opt(help="Write the batch JSON report here.")] = None,
    dry_run: Annotated[bool, Opt(help="Show what each row would copy; write nothing anywhere.")] = False,
    quiet: Annotated[bool, Opt("--quiet", "-q", help="No live table.")] = False,
    no_notify: Annotated[bool, Opt("--no-notify", help="Send no confirmation mails (one per row, to its "
                                                       "source, target and notify addresses).")] = False,
    lang: Annotated[str, Opt(help="Language of the confirmation mails: en, de, fr, it.")] = "en",
) -> None:
    """Import up to 25 mailboxes listed in a CSV file, several at a time (re-running resumes).

    Exit 0 every row done; 1 some row failed or had failed messages (the table and the report say
    which); 2 the CSV is invalid (every problem is listed, nothing was imported); 4 interrupted.
    """
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
        if warning := check_permissions(file):
            err.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)
        try:
            rows = read_batch(file, has_stored_signin=has_stored_signin)
        except CsvInvalid as exc:
            for line in exc.lines():  # one problem per line, never wrapped: scripts grep them
                err.print(line, markup=False, highlight=False, soft_wrap=True)
            _fail(exc)
            return
        result = run_batch(rows, parallel=parallel, journal_dir=journal_dir, report_path=report,
                           progress_ui=not quiet, dry_run=dry_run, rerun_command=_rerun_command(sys.argv[1:]),
                           file=str(file), notify=NotifyOptions(enabled=not no_notify and not dry_run, lang=lang))
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
    job: Annotated[str | None, typer.Argument(help="Job id (default: all jobs in the journal).")] = None,
    journal: Annotated[Path | None, Opt(help="Journal file (default: every journal under the state dir).")] = None,
    follow: Annotated[bool, Opt("--follow", "-f", help="Keep showing live progress until the job ends.")] = False,
) -> None:
    """Show what jobs did and what is left, from their journals."""
    from migrate.status import show_status

    _started()
    try:
        if journal is not None and journal.is_dir():
            raise UsageError(f"--journal {journal} is a directory", hint="pass --journal PATH of a journal file")
        if journal is not None and journal.is_file():
            _check_journal(journal)
        code = show_status(journal, job, follow=follow)
    except MigrateError as exc:
        _fail(exc)
        return
    raise typer.Exit(code)


@app.command("notify")
def notify_cmd(
    journal: Annotated[Path, Opt(help="Journal of the job(s) whose confirmation mail was not sent.")],
    job: Annotated[str | None, typer.Argument(help="Job id (default: every unsent mail).")] = None,
    smtp_password: Annotated[str | None, Opt(help="SMTP password when it was not given as env:/file: "
                                                  "(literal passwords are never stored).")] = None,
    again: Annotated[bool, Opt(help="Send even mails that were already sent.")] = False,
) -> None:
    """Send a job's confirmation mail again (e.g. after the SMTP server was down)."""
    from migrate.accounts import resolve_secret
    from migrate.notify.deliver import resend
    from migrate.ui import out
    try:
        if not journal.exists():
            raise UsageError(f"journal {journal} does not exist", hint="check --journal PATH")
        pw = resolve_secret(smtp_password, what="--smtp-password") if smtp_password else None
        lines = resend(journal, job, password=pw, include_sent=again)
    except MigrateError as exc:
        _fail(exc)
        return
    if not lines:
        out.print("nothing to send: every confirmation mail in this journal was sent")
    for line in lines:
        out.print(line, markup=False)
    raise typer.Exit(1 if any("NOT sent" in line for line in lines) else 0)


@app.command()
def providers() -> None:
    """List the provider presets with their settings and what a user must do first."""
    from rich.table import Table

    from migrate.providers.describe import provider_rows
    from migrate.ui import out
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


@app.command()
def auth(
    provider: Annotated[str, typer.Argument(help="gmail, or outlook / microsoft365 (the OAuth providers).",
                                            show_default=False)],
    email: Annotated[str, Opt(help="The address to sign in as.")],
    client_id: Annotated[str | None, Opt(help="OAuth client id (default: $MAILMIGRATE_GOOGLE_CLIENT_ID or "
                                              "$MAILMIGRATE_MS_CLIENT_ID).")] = None,
    client_secret: Annotated[str | None, Opt(help="Google client secret: env:NAME, file:PATH or the value "
                                                  "(default: $MAILMIGRATE_GOOGLE_CLIENT_SECRET).")] = None,
    no_browser: Annotated[bool, Opt("--no-browser", help="Google: only print the address to open.")] = False,
    forget: Annotated[bool, Opt("--forget", help="Delete the stored sign-in instead.")] = False,
) -> None:
    """Sign in with Google or Microsoft once; imports then use the stored refresh token (no password).

    Google opens a browser and returns to a one-time 127.0.0.1 address; Microsoft prints a code to
    enter at microsoft.com/devicelogin (works over SSH). The refresh token goes to the OS keyring if
    one is available, else to $MAILMIGRATE_HOME/tokens/ (readable only by you); never an access token.
    """
    from migrate import oauth
    from migrate.accounts import resolve_secret
    from migrate.ui import out
    try:
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
    target_maildir: Annotated[Path, Opt(help="Where to write the copy.")] = Path("demo-output/Maildir"),
    journal: Annotated[Path | None, Opt(help="Journal file (default: next to the output).")] = None,
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
