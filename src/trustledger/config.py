"""Settings from the environment: where the ledger lives."""

from __future__ import annotations

import os
from pathlib import Path

DATABASE_URL_ENV = "TRUSTLEDGER_DATABASE_URL"
DATA_DIR_ENV = "TRUSTLEDGER_DATA"


def data_dir() -> Path:
    """The data folder (``$TRUSTLEDGER_DATA``, default ``./data``), created if missing."""
    path = Path(os.environ.get(DATA_DIR_ENV, "data"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    """The ledger's SQLAlchemy URL: ``$TRUSTLEDGER_DATABASE_URL`` or SQLite in the data folder."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        return url
    return f"sqlite:///{(data_dir() / 'ledger.db').resolve()}"
