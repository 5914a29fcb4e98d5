"""Secrets at rest: Fernet with a key from ``MAILMIGRATE_SECRET_KEY`` or a 0600 key file."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from ..errors import UsageError


class SecretBox:
    def __init__(self, key: str | bytes) -> None:
        self._fernet = Fernet(key)

    @classmethod
    def load(cls, home: Path, key: str | None) -> SecretBox:
        """``key`` (a Fernet key: 32 url-safe base64 bytes) or the key file ``home/service.key``,
        created 0600 on first use."""
        if key:
            try:
                return cls(key.strip())
            except ValueError:
                raise UsageError("MAILMIGRATE_SECRET_KEY is not a Fernet key (32 url-safe base64 bytes)",
                                 hint="make one with: python -c 'from cryptography.fernet import Fernet; "
                                      "print(Fernet.generate_key().decode())'") from None
        path = home / "service.key"
        try:
            return cls(path.read_bytes().strip())
        except FileNotFoundError:
            pass
        home.mkdir(parents=True, exist_ok=True)
        new = Fernet.generate_key()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another instance made it meanwhile
            return cls(path.read_bytes().strip())
        with os.fdopen(fd, "wb") as fh:
            fh.write(new + b"\n")
        return cls(new)

    def seal(self, value: str) -> bytes:
        return self._fernet.encrypt(value.encode("utf-8"))

    def open(self, token: bytes | None) -> str | None:
        if token is None:
            return None
        try:
            return self._fernet.decrypt(token).decode("utf-8")
        except InvalidToken:
            return None  # another key (rotated): the secret is gone, the job needs it again
