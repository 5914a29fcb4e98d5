"""mailmigrate command line: parse options, call ``migrate``, render. No IMAP in here.

Exit codes (documented in the README, a public contract):
0 all done; 1 done but some messages failed; 2 usage or input error; 3 authentication failed;
4 connection/TLS failure or interrupted (re-running resumes).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from migrate.errors import ExitCode, MigrateError, UsageError, redact

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Bulk mailbox migration: copy every folder and message from one account to another, "
                       "resumably, without duplicates.")

Opt = typer.Option


def _fail(exc: MigrateError) -> None:
    from migrate.ui import err
    err.print(exc.one_line(), markup=False, highlight=False)
    raise typer.Exit(int(exc.exit_code))


def _parse_maps(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for v in values:
        src, sep, dst = v.partition("=")
        if not sep or not src or not dst:
            raise UsageError(f"--map-folder '{v}' is not SRC=DST", hint="e.g. --map-folder 'Old Sent=Sent'")
        out[src] = dst
    return out


def _rerun_command(argv: list[str]) -> str:
    # The command line never holds a secret (passwords are env:/file:/prompt), but be safe.
    return redact("mailmigrate " + " ".join(shlex.quote(a) for a in argv))


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
    batch_size: Annotated[int, Opt(help="Messages per APPEND batch (also capped at 8 MB).")] = 100,
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
) -> None:
    """Copy every folder and message of one account into another (re-runs copy only what is new)."""
    from migrate.api import ImportRequest, run_import
    from migrate.notify.deliver import NotifyOptions
    from migrate.sides import SideOptions
    from migrate.ui import err, print_summary

    try:
        if connections < 1 or connections > 32:
            raise UsageError(f"--connections {connections} is out of range", hint="use 1 to 32")
        if batch_size < 1:
            raise UsageError(f"--batch-size {batch_size} must be at least 1")
        if insecure:
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
        req = ImportRequest(source=src, target=dst, include=include or [], exclude=exclude or [],
                            map_folder=_parse_maps(map_folder or []), dry_run=dry_run, journal=journal,
                            report_path=report, connections=connections, retries=retries, batch_count=batch_size,
                            rerun_command=_rerun_command(sys.argv[1:]), progress=not quiet,
                            notify=NotifyOptions(enabled=not no_notify and not dry_run, lang=lang,
                                                 extra=notify or [], sender=notify_from, smtp_host=smtp_host,
                                                 smtp_port=smtp_port, smtp_security=smtp_security,
                                                 smtp_user=smtp_user, smtp_password=smtp_password,
                                                 ca_file=smtp_ca_file, insecure=insecure))
        from migrate.notify.i18n import check_lang
        check_lang(lang)
        if detach:
            from migrate.background import detach_import
            detach_import(req, sys.argv[1:])
            return
        result = run_import(req)
    except MigrateError as exc:
        _fail(exc)
        return
    print_summary(result)
    raise typer.Exit(result.exit_code)


@app.command()
def status(
    job: Annotated[str | None, typer.Argument(help="Job id (default: all jobs in the journal).")] = None,
    journal: Annotated[Path | None, Opt(help="Journal file (default: every journal under the state dir).")] = None,
    follow: Annotated[bool, Opt("--follow", "-f", help="Keep showing live progress until the job ends.")] = False,
) -> None:
    """Show what jobs did and what is left, from their journals."""
    from migrate.status import show_status
    try:
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
    table = Table(title="Provider presets", show_lines=True)
    for col in ("name", "title", "imap", "smtp", "auth", "username", "max_connections", "size_limit", "hint"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(*(r[c] for c in ("name", "title", "imap", "smtp", "auth", "username", "max_connections",
                                       "size_limit", "hint")))
    out.print(table)


@app.command()
def demo(
    target_maildir: Annotated[Path, Opt(help="Where to write the copy.")] = Path("demo-output/Maildir"),
    journal: Annotated[Path | None, Opt(help="Journal file (default: next to the output).")] = None,
) -> None:
    """Migrate the bundled sample mailbox into a local Maildir (no server needed), then show the summary."""
    from migrate.api import ImportRequest, run_import, sample_mailbox
    from migrate.sides import SideOptions
    from migrate.ui import print_summary
    try:
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


def main() -> None:
    try:
        app()
    except MigrateError as exc:  # anything that escaped a command
        from migrate.ui import err
        err.print(exc.one_line(), markup=False)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        sys.exit(int(ExitCode.CONNECTION))
    except Exception as exc:  # noqa: BLE001 - last resort: one line, no traceback, no secret
        if os.environ.get("MAILMIGRATE_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {redact(str(exc))} (set MAILMIGRATE_DEBUG=1 for details)",
              file=sys.stderr)
        sys.exit(int(ExitCode.CONNECTION))


if __name__ == "__main__":
    main()
