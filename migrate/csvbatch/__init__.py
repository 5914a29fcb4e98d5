"""The CSV file of ``mailmigrate batch``: one row per mailbox to migrate."""

from .reader import (
    COLUMNS,
    OPTIONAL_COLUMNS,
    BatchRow,
    CsvInvalid,
    CsvProblem,
    SideSpec,
    check_permissions,
    read_batch,
    template_text,
)

__all__ = [
    "COLUMNS",
    "OPTIONAL_COLUMNS",
    "BatchRow",
    "CsvInvalid",
    "CsvProblem",
    "SideSpec",
    "check_permissions",
    "read_batch",
    "template_text",
]
