"""``mailmigrate serve``: the import tool as a web service (HTTP API, job pool, sessions).

    from migrate.service import ServiceConfig, create_app
    app = create_app(ServiceConfig(target_host="mail.example.com"))   # a Starlette ASGI app

State lives in one SQLite file, ``$MAILMIGRATE_HOME/service.sqlite`` (jobs, sessions); the
engine's journals stay where they always are. Jobs run in-process through
``migrate.api.start_import`` on a pool of ``jobs`` worker threads.
"""

from .app import create_app
from .config import ServiceConfig

__all__ = ["ServiceConfig", "create_app"]
