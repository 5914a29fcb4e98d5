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
from .runner import (
    BatchReport,
    BatchTotals,
    ConnectionBudget,
    RowReport,
    has_stored_signin,
    plan_connections,
    print_batch_summary,
    run_batch,
)

__all__ = [
    "COLUMNS",
    "OPTIONAL_COLUMNS",
    "BatchReport",
    "BatchRow",
    "BatchTotals",
    "ConnectionBudget",
    "CsvInvalid",
    "CsvProblem",
    "RowReport",
    "SideSpec",
    "check_permissions",
    "has_stored_signin",
    "plan_connections",
    "print_batch_summary",
    "read_batch",
    "run_batch",
    "template_text",
]
