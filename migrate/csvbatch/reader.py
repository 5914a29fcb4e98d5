"""Read and validate the CSV file of ``mailmigrate batch``.

The whole file is checked before anything connects, and every problem is reported at once with
its physical line number, so a user fixes the file in one pass. Secrets are never echoed:
password cells are only tested for being empty or for resolving (``env:`` / ``file:``).

Columns are matched by their header name, in any order: ``COLUMNS`` must all be there,
``OPTIONAL_COLUMNS`` may be; any other name is an error (a typo must not silently drop a value).

``read_batch(path)`` reads the operator's file; ``read_batch_text(text, untrusted=True,
fixed_target=...)`` reads one sent to ``mailmigrate serve``: no cell may make the service read
its own environment or files, and every row imports into the service's mail system.
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import os
import re
import shlex
import stat
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import UsageError

COLUMNS: tuple[str, ...] = (
    "source_email", "source_password", "source_provider", "source_host", "source_port",
    "source_security", "source_username", "target_email", "target_password", "target_provider",
    "target_host", "target_port", "target_security", "target_username", "notify",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("source_oauth_token", "target_oauth_token", "source_ca_file",
                                     "target_ca_file")
SECURITIES = ("ssl", "starttls", "none")
MAX_FILE_BYTES = 1_000_000  # 25 rows never need more; stops a wrong file (a mailbox dump) early
_KNOWN = frozenset(COLUMNS + OPTIONAL_COLUMNS)
_REFS = ("env:", "file:")

SignInCheck = Callable[[str, str], bool]
# In an uploaded file (``untrusted``): what a cell may not ask of the machine that reads it.
_UNTRUSTED = {
    "password": "env:/file: references are not accepted in an uploaded file: put the password itself in the cell",
    "oauth_token": "not accepted in an uploaded file: leave it empty (Google and Microsoft rows without a "
                   "password are signed in later, by a link)",
    "ca_file": "not accepted in an uploaded file: leave it empty (the service cannot read files you name)",
}


@dataclass(frozen=True, repr=False)
class SideSpec:
    email: str
    provider: str  # resolved preset name, or "imap"
    host: str
    port: int
    security: str
    username: str | None = None
    password_ref: str | None = None  # raw cell: "env:X", "file:P" or the literal password
    oauth_token_ref: str | None = None
    ca_file: str | None = None  # trust this CA (PEM) for the server's certificate
    insecure: bool = False  # do not verify the certificate (``batch --insecure``, never from the CSV)

    def __repr__(self) -> str:
        def hide(v: str | None) -> str:
            return "None" if v is None else "'********'"

        return (f"SideSpec(email={self.email!r}, provider={self.provider!r}, host={self.host!r}, "
                f"port={self.port}, security={self.security!r}, username={self.username!r}, "
                f"password_ref={hide(self.password_ref)}, oauth_token_ref={hide(self.oauth_token_ref)}, "
                f"ca_file={self.ca_file!r}, insecure={self.insecure})")


@dataclass(frozen=True)
class BatchRow:
    line: int
    source: SideSpec
    target: SideSpec
    notify: tuple[str, ...] = ()

    @property
    def row_id(self) -> str:
        """Stable across runs and edits of other rows: names the per-row journal."""
        s, t = self.source, self.target
        key = f"{s.email.lower()}|{s.host.lower()}|{t.email.lower()}|{t.host.lower()}"
        return hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]


@dataclass(frozen=True)
class FixedTarget:
    """Every row imports into this one mail system (``mailmigrate serve``'s): a row's
    target_provider, _host, _port and _security may be empty or repeat it, target_username empty
    or the address. ``check(email, password_cell)`` adds the reader's own rules about the target
    (whose mailbox, which password) as ``(column, message)`` pairs, column without ``target_``, or
    as ``CsvProblem`` (whose line is replaced by the row's)."""

    provider: str
    host: str
    port: int
    security: str
    check: Callable[[str, str | None], list[tuple[str, str] | CsvProblem]] = lambda _email, _password: []


# What a problem says, by its stable ``code`` (the service's pages translate these codes;
# ``migrate/service/i18n.py`` has them in every page language with the same placeholders).
PROBLEMS: dict[str, str] = {
    "empty_file": "the file is empty: the first line must be the header {columns}",
    "unparsable_line": "cannot parse this line ({error})",
    "missing_header": "missing header: the first line must be the column names {columns}",
    "missing_columns": "missing columns: {missing} (required: {required})",
    "unknown_columns": "unknown columns: {unknown} (known: {known})",
    "duplicate_columns": "columns appear twice: {columns}",
    "empty_field": "empty required field",
    "not_address": "{value} is not an email address",
    "not_address_commas": "{value} is not an email address (separate addresses with ';')",
    "not_host": "{value} is not a host name or IP address",
    "unknown_provider": "unknown provider {value} (known: {known})",
    "no_provider": "cannot detect provider for domain {domain}: set {side}_provider or {side}_host",
    "not_port": "{value} is not a port (1-65535)",
    "not_security": "{value} is not a security mode (ssl, starttls or none)",
    "uploaded_password_ref": _UNTRUSTED["password"],
    "uploaded_oauth_token": _UNTRUSTED["oauth_token"],
    "uploaded_ca_file": _UNTRUSTED["ca_file"],
    "needs_host": "provider {provider} needs a host: set {side}_host",
    "empty_password": "empty password: {provider} has no OAuth sign-in, give the password",
    "no_passwords": "{provider} does not accept passwords: leave {side}_password empty it is signed in later, "
                    "by a link",
    "not_fixed_target": "{value}: every import here goes into {where}: leave target_{field} empty",
    "login_is_address": "{value}: the login here is the address: leave target_username empty",
    "too_many_rows": "more than {max_rows} rows: split the file ({rows} rows)",
    "too_many_fields": "{fields} fields, expected {expected}: quote values that contain {sep} or '\"'",
    "unclosed_quote": "{fields} fields, expected {expected}: is a quote not closed?",
    "too_few_fields": "{fields} fields, expected {expected}: check separators and quotes",
    "same_mailbox": "source and target are the same mailbox",
    "duplicate_row": "duplicate row: same source and target as line {first}",
    "no_rows": "no accounts: add one row per mailbox below the header",
    "not_utf8": "not UTF-8: save the file as UTF-8 CSV",
    # only the command line meets these (an uploaded file's references are refused unread)
    "ref_needs_name": "env: needs a variable name (env:NAME)",
    "env_unset": "environment variable {name} is not set",
    "file_missing": "file {path} does not exist",
    "file_unreadable": "cannot read file {path} ({error})",
    "file_empty": "file {path} is empty",
    "bad_ref": "invalid env:/file: reference",
    "ca_directory": "{path} is a directory, not a CA certificate (PEM)",
    "ca_unusable": "{path} is not a usable CA certificate ({reason}): give the PEM file of the CA",
    "token_not_ref": "must be env:NAME or file:PATH (keep tokens out of the CSV)",
    "password_and_token": "give {side}_password or {side}_oauth_token, not both",
    "google_app_password": "Google rows need an app password (or run `mailmigrate auth {provider} --email {email}` "
                           "first)",
    "empty_password_ref": "empty password: {provider} has no OAuth sign-in, give a password, env:NAME or file:PATH",
    "no_passwords_signin": "{provider} does not accept passwords: leave {side}_password empty to use a stored "
                           "sign-in (`mailmigrate auth {provider} --email {email}`)",
    "too_large": "too large for a batch file (over {max_bytes} bytes): is this the right file?",
}


@dataclass
class CsvProblem:
    """``message``: the English text (the command line and the API show it); ``code`` and
    ``params``: the same problem for a translation (``PROBLEMS[code].format(**params)`` is the
    message); no code for a ``FixedTarget.check`` answer given as a plain (column, message) pair."""

    line: int
    column: str | None
    message: str
    code: str | None = None
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, line: int, column: str | None, code: str, /, **params: object) -> CsvProblem:
        text = {k: str(v) for k, v in params.items()}
        return cls(line, column, PROBLEMS[code].format(**text), code, text)

    def __str__(self) -> str:
        where = f"line {self.line}, {self.column}" if self.column else f"line {self.line}"
        return f"{where}: {self.message}"


class CsvInvalid(UsageError):
    """The batch file has problems; ``problems`` lists them all, sorted by line."""

    reference = "batch-csv-invalid"

    def __init__(self, problems: list[CsvProblem], *, name: str = "batch.csv") -> None:
        self.problems = sorted(problems, key=lambda p: p.line)
        n = len(self.problems)
        super().__init__(f"{name} has {n} problem{'' if n == 1 else 's'}",
                         hint="fix them and run again; nothing was imported")

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


# --- low-level checks -------------------------------------------------------------------

_LABEL = re.compile(r"[^\W_](?:[\w-]*[^\W_])?")  # letters/digits (IDN too), inner hyphens
_LOCAL_BAD = re.compile(r'[\s\x00-\x1f\x7f<>()\[\],;:"\\@]')


def _show(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def _is_address(s: str) -> bool:
    local, at, domain = s.rpartition("@")
    if not at or not local or len(s) > 254 or _LOCAL_BAD.search(local):
        return False
    labels = domain.split(".")
    return (len(labels) >= 2 and all(_LABEL.fullmatch(x) for x in labels)
            and not labels[-1].isdigit())  # no IP literals in addresses


def _is_host(h: str) -> bool:
    try:
        ipaddress.ip_address(h)
        return True
    except ValueError:
        pass
    return len(h) <= 253 and all(_LABEL.fullmatch(x) for x in h.split("."))


Coded = tuple[str, dict[str, object]]  # a problem's code and params (see ``PROBLEMS``)


def _ref_problem(ref: str) -> Coded | None:
    """Why an ``env:``/``file:`` reference would not resolve (never the secret itself)."""
    try:
        if ref.startswith("env:"):
            name = ref[4:]
            if not name:
                return "ref_needs_name", {}
            if not os.environ.get(name):
                return "env_unset", {"name": name}
        elif ref.startswith("file:"):
            path = Path(ref[5:]).expanduser()
            try:
                text = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return "file_missing", {"path": path}
            except (OSError, UnicodeDecodeError) as exc:
                return "file_unreadable", {"path": path, "error": type(exc).__name__}
            if not text.rstrip("\r\n"):
                return "file_empty", {"path": path}
    except ValueError:  # NUL bytes in a name or path
        return "bad_ref", {}
    return None


def ca_problem(cell: str) -> str | None:
    """Why a ``*_ca_file`` cell is not a CA certificate we can load."""
    found = _ca_problem(cell)
    return PROBLEMS[found[0]].format(**found[1]) if found else None


def _ca_problem(cell: str) -> Coded | None:
    path = Path(cell).expanduser()
    if not path.exists():
        return "file_missing", {"path": path}
    if path.is_dir():
        return "ca_directory", {"path": path}
    import ssl

    from ..accounts import tls_context

    try:
        tls_context(str(path), insecure=False)
    except (ssl.SSLError, OSError, UnicodeDecodeError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
        return "ca_unusable", {"path": path, "reason": reason}
    return None


# --- tokenising -------------------------------------------------------------------------


def _header_cells(line: str, sep: str) -> list[str]:
    try:
        cells = next(csv.reader([line], delimiter=sep), [])
    except csv.Error:
        return []
    return [c.strip().lstrip("\ufeff").lower() for c in cells]


def _tokenize(text: str) -> tuple[int, list[str], str, list[tuple[int, list[str]]], list[CsvProblem]]:
    """Split into (header line, column names, separator, [(line, cells)], parse problems)."""
    lines = io.StringIO(text, newline="").readlines()  # splits like csv does: \n, \r\n, \r
    hdr = next((i for i, ln in enumerate(lines)
                if ln.strip() and not ln.lstrip().lstrip('"').startswith("#")), None)
    if hdr is None:
        return 1, [], ",", [], [CsvProblem.of(1, None, "empty_file", columns=",".join(COLUMNS))]
    # Sniff from the header only: the separator that yields the most known column names wins.
    sep = max((",", ";"), key=lambda s: (sum(c in _KNOWN for c in _header_cells(lines[hdr], s)),
                                         len(_header_cells(lines[hdr], s)), s == ","))
    names = _header_cells(lines[hdr], sep)
    rows: list[tuple[int, list[str]]] = []
    problems: list[CsvProblem] = []
    reader = csv.reader(lines[hdr + 1:], delimiter=sep)
    done = 0
    try:
        for cells in reader:
            start, done = hdr + 2 + done, reader.line_num
            if any(c.strip() for c in cells) and not cells[0].strip().startswith("#"):
                rows.append((start, cells))
    except csv.Error as exc:
        problems.append(CsvProblem.of(hdr + 2 + done, None, "unparsable_line", error=exc))
    return hdr + 1, names, sep, rows, problems


def _header_problems(names: list[str]) -> tuple[list[tuple[str, dict[str, str]]], bool]:
    """Problems of the header (code, params), and whether rows can still be read by column name."""
    names = list(names)
    while names and not names[-1]:  # spreadsheets like to append empty columns
        names.pop()
    if not any(c in _KNOWN for c in names):
        return [("missing_header", {"columns": ",".join(COLUMNS)})], False
    # Matched by name, in any order: only missing, unknown and repeated names are problems.
    msgs: list[tuple[str, dict[str, str]]] = []
    missing = [c for c in COLUMNS if c not in names]
    unknown = [c or "(empty)" for c in names if c not in _KNOWN]
    dupes = sorted({c for c in names if c in _KNOWN and names.count(c) > 1})
    if missing:
        msgs.append(("missing_columns", {"missing": ", ".join(missing), "required": ",".join(COLUMNS)}))
    if unknown:
        msgs.append(("unknown_columns", {"unknown": ", ".join(unknown),
                                         "known": ",".join(COLUMNS + OPTIONAL_COLUMNS)}))
    if dupes:
        msgs.append(("duplicate_columns", {"columns": ", ".join(dupes)}))
    return msgs, not (missing or dupes)


# --- one side of a row ------------------------------------------------------------------


def _side(rec: dict[str, str], side: str, line: int, problems: list[CsvProblem],
          signin: SignInCheck, untrusted: bool = False) -> SideSpec | None:
    from .. import providers  # lazily: the preset table is only needed here

    before = len(problems)

    def coded(col: str, code: str, **params: object) -> None:
        problems.append(CsvProblem.of(line, f"{side}_{col}", code, **params))

    email = rec[f"{side}_email"]
    email_ok = bool(email) and _is_address(email)
    if not email:
        coded("email", "empty_field")
    elif not email_ok:
        coded("email", "not_address", value=_show(email))
    host = rec[f"{side}_host"].lower()
    if host and not _is_host(host):
        coded("host", "not_host", value=_show(host))
    name = rec[f"{side}_provider"].lower()
    preset = None
    if name:
        try:
            preset = providers.get(name)
        except UsageError:
            coded("provider", "unknown_provider", value=_show(name), known=", ".join(providers.names()))
    elif email_ok:
        preset = providers.detect(email)
        if preset is None and host:
            preset = providers.get("imap")
        elif preset is None:
            coded("provider", "no_provider", domain=email.rpartition("@")[2], side=side)
    port: int | None = None
    if cell := rec[f"{side}_port"]:
        port = int(cell) if re.fullmatch(r"[0-9]{1,5}", cell) else 0
        if not 1 <= port <= 65535:
            coded("port", "not_port", value=_show(cell))
    security = rec[f"{side}_security"].lower()
    if security and security not in SECURITIES:
        coded("security", "not_security", value=_show(rec[f"{side}_security"]))

    ca = rec.get(f"{side}_ca_file") or None
    pw, tok = rec[f"{side}_password"] or None, rec.get(f"{side}_oauth_token") or None
    if untrusted:  # refused without looking at what a cell names: even its existence is an answer
        _untrusted_cells(rec, side, coded)
    else:
        if ca and (why := _ca_problem(ca)):
            coded("ca_file", why[0], **why[1])
        if pw and pw.startswith(_REFS) and (why := _ref_problem(pw)):
            coded("password", why[0], **why[1])
        if tok and not tok.startswith(_REFS):
            coded("oauth_token", "token_not_ref")
        elif tok and (why := _ref_problem(tok)):
            coded("oauth_token", why[0], **why[1])
        if pw and tok:
            coded("password", "password_and_token", side=side)
    if preset is not None:
        if not (host or preset.imap_host):
            coded("host", "needs_host", provider=preset.name, side=side)
        if not pw and not tok:
            if preset.oauth == "google":
                if not (email_ok and signin(preset.name, email)):
                    coded("password", "google_app_password", provider=preset.name, email=email)
            elif preset.oauth is None and untrusted:
                coded("password", "empty_password", provider=preset.name)
            elif preset.oauth is None:
                coded("password", "empty_password_ref", provider=preset.name)
        elif pw and not {"password", "app-password"} & set(preset.auth):
            if untrusted:
                coded("password", "no_passwords", provider=preset.name, side=side)
            else:
                coded("password", "no_passwords_signin", provider=preset.name, side=side, email=email)
    if preset is None or len(problems) > before:
        return None

    # The one resolver the command line uses too: the same cells give the same settings.
    from ..providers.connection import resolve_connection

    conn = resolve_connection(email, host=host or None, port=port, security=security or None, preset=preset)
    return SideSpec(email=email, provider=preset.name, host=conn.host, port=conn.port,
                    security=conn.security, username=rec[f"{side}_username"] or None,
                    password_ref=pw, oauth_token_ref=tok, ca_file=str(Path(ca).expanduser()) if ca else None)


def _untrusted_cells(rec: dict[str, str], side: str, coded: Callable[[str, str], None]) -> None:
    for col in ("ca_file", "oauth_token"):
        if rec.get(f"{side}_{col}"):
            coded(col, f"uploaded_{col}")
    if rec[f"{side}_password"].startswith(_REFS):
        coded("password", "uploaded_password_ref")


def _fixed_target(rec: dict[str, str], line: int, problems: list[CsvProblem], fixed: FixedTarget,
                  untrusted: bool) -> SideSpec | None:
    """The target of a row when every row imports into ``fixed``."""
    before = len(problems)

    def coded(col: str, code: str, **params: object) -> None:
        problems.append(CsvProblem.of(line, f"target_{col}", code, **params))

    email = rec["target_email"]
    if not email:
        coded("email", "empty_field")
    elif not _is_address(email):
        coded("email", "not_address", value=_show(email))
    where = f"{fixed.host}:{fixed.port} ({fixed.security})"
    for col, want in (("provider", fixed.provider), ("host", fixed.host), ("port", str(fixed.port)),
                      ("security", fixed.security)):
        cell = rec[f"target_{col}"]
        if cell and cell.lower() != want.lower():
            coded(col, "not_fixed_target", value=_show(cell), where=where, field=col)
    if (login := rec["target_username"]) and login.lower() != email.lower():
        coded("username", "login_is_address", value=_show(login))
    pw = rec["target_password"] or None
    if untrusted:
        _untrusted_cells(rec, "target", coded)
    if email and _is_address(email) and not (untrusted and pw and pw.startswith(_REFS)):
        for found in fixed.check(email, pw):
            problems.append(replace(found, line=line) if isinstance(found, CsvProblem)
                            else CsvProblem(line, f"target_{found[0]}", found[1]))
    if len(problems) > before:
        return None
    return SideSpec(email=email, provider=fixed.provider, host=fixed.host, port=fixed.port,
                    security=fixed.security, password_ref=pw)


# --- public API -------------------------------------------------------------------------


def read_batch(path: Path, *, has_stored_signin: SignInCheck | None = None,
               max_rows: int = 25) -> list[BatchRow]:
    """Parse and validate the whole file; raise ``CsvInvalid`` listing every problem."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", hint="check the file name") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path} ({type(exc).__name__})", hint="check permissions") from None
    if len(data) > MAX_FILE_BYTES:
        raise UsageError(f"{path} is too large for a batch file (over {MAX_FILE_BYTES} bytes)",
                         hint="is this the right file?")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise CsvInvalid([CsvProblem.of(line, None, "not_utf8")],
                         name=path.name) from None
    return _parse(text, path.name, has_stored_signin, max_rows)


def read_batch_text(text: str, *, name: str = "batch.csv", has_stored_signin: SignInCheck | None = None,
                    max_rows: int = 25, untrusted: bool = False,
                    fixed_target: FixedTarget | None = None) -> list[BatchRow]:
    """``read_batch`` of a file's text (already decoded). ``untrusted``: the text comes from
    someone who must not reach this machine's environment or files (``mailmigrate serve``):
    env:/file: password cells and the token and CA-file columns are refused, not looked at.
    ``fixed_target``: every row imports into that mail system (see ``FixedTarget``)."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise CsvInvalid([CsvProblem.of(1, None, "too_large", max_bytes=MAX_FILE_BYTES)], name=name)
    return _parse(text.removeprefix("\ufeff"), name, has_stored_signin, max_rows, untrusted=untrusted,
                  fixed_target=fixed_target)


def _parse(text: str, name: str, has_stored_signin: SignInCheck | None, max_rows: int, *,
           untrusted: bool = False, fixed_target: FixedTarget | None = None) -> list[BatchRow]:
    signin: SignInCheck = has_stored_signin or (lambda provider, email: False)
    hdr_line, names, sep, raw_rows, problems = _tokenize(text)
    msgs, usable = _header_problems(names) if names or not problems else ([], False)
    problems += [CsvProblem.of(hdr_line, None, code, **params) for code, params in msgs]
    if not usable:
        raise CsvInvalid(problems, name=name)

    rows: list[BatchRow] = []
    seen: dict[tuple[str, ...], int] = {}
    for count, (line, cells) in enumerate(raw_rows, start=1):
        if count == max_rows + 1:
            problems.append(CsvProblem.of(line, None, "too_many_rows", max_rows=max_rows, rows=len(raw_rows)))
        if len(cells) != len(names):
            code = ("too_many_fields" if len(cells) > len(names)
                    else "unclosed_quote" if any("\n" in c or "\r" in c for c in cells)
                    else "too_few_fields")
            problems.append(CsvProblem.of(line, None, code, fields=len(cells), expected=len(names),
                                          **({"sep": repr(sep)} if code == "too_many_fields" else {})))
            continue
        rec = {n: c.strip() for n, c in zip(names, cells, strict=True) if n in _KNOWN}
        source = _side(rec, "source", line, problems, signin, untrusted)
        target = (_fixed_target(rec, line, problems, fixed_target, untrusted) if fixed_target is not None
                  else _side(rec, "target", line, problems, signin, untrusted))
        notify = tuple(a.strip() for a in rec["notify"].split(";") if a.strip())
        for addr in notify:
            if not _is_address(addr):
                problems.append(CsvProblem.of(line, "notify", "not_address_commas" if "," in addr else "not_address",
                                              value=_show(addr)))
        if source is None or target is None:
            continue
        if (source.email.lower(), source.host) == (target.email.lower(), target.host):
            problems.append(CsvProblem.of(line, None, "same_mailbox"))
            continue
        key = (source.email.lower(), source.host, target.email.lower(), target.host)
        if key in seen:
            problems.append(CsvProblem.of(line, None, "duplicate_row", first=seen[key]))
            continue
        seen[key] = line
        rows.append(BatchRow(line=line, source=source, target=target, notify=notify))
    if not raw_rows and not problems:
        problems.append(CsvProblem.of(hdr_line, None, "no_rows"))
    if problems:
        raise CsvInvalid(problems, name=name)
    return rows


def template_text() -> str:
    """The model file users download and fill in (``templates/batch.csv``)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "templates" / "batch.csv", here.parents[1] / "templates" / "batch.csv"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise UsageError("the batch.csv template is missing from this installation", hint="reinstall mailmigrate")


def check_permissions(path: Path | str) -> str | None:
    """A warning when other users can read a file that holds literal passwords."""
    path = Path(path)
    try:
        if os.name != "posix" or not path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
            return None
        text = path.read_bytes()[: MAX_FILE_BYTES].decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    _, names, _, raw_rows, _ = _tokenize(text)
    cols = [i for i, n in enumerate(names) if n in ("source_password", "target_password")]
    literal = any(i < len(cells) and cells[i].strip() and not cells[i].strip().startswith(_REFS)
                  for _, cells in raw_rows for i in cols)
    if not literal:
        return None
    return (f"{path.name} is readable by other users and holds plaintext passwords: "
            f"chmod 600 {shlex.quote(str(path))}")
