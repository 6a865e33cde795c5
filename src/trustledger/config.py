"""Settings from the environment: where the ledger lives and the key signing its checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

DATABASE_URL_ENV = "TRUSTLEDGER_DATABASE_URL"
DATA_DIR_ENV = "TRUSTLEDGER_DATA"
CHECKPOINT_KEY_ENV = "TRUSTLEDGER_CHECKPOINT_KEY"
"""Names the file of the Ed25519 key that signs ledger checkpoints."""


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


def checkpoint_key() -> Path:
    """The checkpoint signing key's file: ``$TRUSTLEDGER_CHECKPOINT_KEY``, else in the data folder.

    The default is ``checkpoint.key`` in the data folder (created if missing); better
    kept away from the database's host (docs/scale.md, "Signed checkpoints").
    """
    path = os.environ.get(CHECKPOINT_KEY_ENV)
    if path:
        return Path(path)
    return data_dir() / "checkpoint.key"
