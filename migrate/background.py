"""``--detach``: run an import in the background, so the user can close the terminal.

The child is the same command line without ``--detach``, in a new session (no controlling
terminal: a closed SSH session does not kill it), with its output in a log file next to the
journal. The child has no terminal to ask on: a password the user was asked for here (the CLI
builds the sides, which asks, before detaching) reaches the child in its environment, named by an
``env:`` reference that ``cli._rerun_command`` leaves out of the stored command line.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from .api import ImportRequest, spec_for
from .errors import JobLocked
from .journal import JobGuard
from .sides import Side, build_side

#: ``env:`` names that hand a password asked for on the terminal to the detached child.
PROMPTED_ENV = "MAILMIGRATE_DETACHED_{role}_PASSWORD"


def detach_import(req: ImportRequest, argv: list[str], sides: tuple[Side, Side] | None = None) -> None:
    """``sides``: built from ``req`` by the caller (on a terminal: after asking for missing passwords)."""
    # Validate everything (and fail here, visibly) before going to the background.
    if sides is None:
        sides = (build_side(dataclasses.replace(req.source, interactive=False)),
                 build_side(dataclasses.replace(req.target, interactive=False)))
    src, dst = sides
    spec = spec_for(req, src, dst)
    if JobGuard.is_running(spec.journal_path, spec.job_id):
        raise JobLocked(f"job {spec.job_id} is already running",
                        hint=f"follow it with 'mailmigrate status {spec.job_id} --journal {spec.journal_path} --follow'")
    log_dir = spec.journal_path.parent / "logs"
    log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = log_dir / f"{spec.job_id}.log"
    args = [a for a in argv if a != "--detach"]
    env = dict(os.environ)
    for opts, side in ((req.source, src), (req.target, dst)):
        if opts.password is None and side.password is not None:  # asked for on the terminal
            name = PROMPTED_ENV.format(role=opts.role.upper())
            env[name] = side.password.get()
            args += [f"--{opts.role}-password", f"env:{name}"]
    if "--journal" not in args:
        args += ["--journal", str(spec.journal_path)]
    if "-q" not in args and "--quiet" not in args:
        args.append("--quiet")
    cli = Path(__file__).resolve().parent.parent / "cli.py"
    cmd = [sys.executable, str(cli), *args] if cli.exists() else \
        [sys.executable, "-c", "import cli; cli.main()", *args]
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True,
                                close_fds=True, env=env)
    finally:
        os.close(fd)
    print(f"started job {spec.job_id} in the background (pid {proc.pid})")
    print(f"log: {log_path}")
    print(f"follow it: mailmigrate status {spec.job_id} --journal {spec.journal_path} --follow")
