"""Signed checkpoints of the ledger's head: tamper evidence that does not stop at the head.

``verify`` proves the chain consistent with itself and with its head row, but whoever
can write to the database can remove the last entries and fix the head row, or
rewrite the whole chain with fresh hashes, and it still verifies. A checkpoint is the
operator's signed statement "entry ``seq`` had hash ``hash`` at ``time``", kept by an
auditor outside the ledger. Each entry's hash covers every earlier entry, so a chain
that still has that hash at that seq has the checkpointed chain as its prefix; one
that was truncated below ``seq`` or rewritten at or before it does not (Certificate
Transparency's signed tree head, over a hash chain instead of a Merkle tree). The
signature makes a kept checkpoint evidence: the operator cannot claim an auditor
made it up, and an auditor cannot edit one to match a rewritten chain.

The document (format ``trustledger-checkpoint/1``), JSON::

    {"format": "trustledger-checkpoint/1", "seq": 8, "hash": "<64 hex digits>",
     "time": "2026-12-06T20:00:00.000000Z", "key_id": "<64 hex digits>",
     "signature": "<base64, 64 bytes>"}

    key_id        = hex(SHA-256(DER SubjectPublicKeyInfo of the Ed25519 public key))
                    (as RFC 6962 names a log by its key)
    signed bytes  = JSON array ["trustledger-checkpoint/1", seq, hash, time_us, key_id]
                    (orjson, no whitespace; time_us: microseconds since the Unix epoch)
    signature     = base64(Ed25519 signature of the signed bytes)

Keys are PEM files: the signing key PKCS#8 (mode 0600, created on first use), the
public key SubjectPublicKeyInfo (what auditors are given).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from trustledger.errors import ConfigError, InputError, IntegrityError
from trustledger.ledger.chain import iso, to_us
from trustledger.ledger.models import VerifyReport
from trustledger.ledger.store import Ledger, Progress

CHECKPOINT_FORMAT = "trustledger-checkpoint/1"
"""Version tag of a checkpoint document and of the bytes its signature covers."""

_FIELDS = ("format", "seq", "hash", "time", "key_id", "signature")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_BYTES = 64 * 1024  # a checkpoint is ~300 bytes; refuse to read anything much larger


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement that the ledger's entry ``seq`` had hash ``hash`` at ``time``."""

    seq: int
    hash: str
    time: datetime
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        """The bytes the signature covers (see the module docstring)."""
        return _message(self.seq, self.hash, self.time, self.key_id)

    def to_json(self) -> bytes:
        """The checkpoint document, indented, ending with a newline."""
        document = {
            "format": CHECKPOINT_FORMAT,
            "seq": self.seq,
            "hash": self.hash,
            "time": iso(self.time),
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }
        return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def _message(seq: int, hash_: str, time: datetime, key_id: str) -> bytes:
    return orjson.dumps([CHECKPOINT_FORMAT, seq, hash_, to_us(time), key_id])


class PublicKey:
    """An Ed25519 public key that checkpoints are checked against (an auditor's trusted key)."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        """Wrap a public key; :meth:`load` reads one from a PEM file."""
        self._key = key
        self.key_id = hashlib.sha256(
            key.public_bytes(serialization.Encoding.DER,
                             serialization.PublicFormat.SubjectPublicKeyInfo)
        ).hexdigest()
        """hex(SHA-256) of the key's DER SubjectPublicKeyInfo: the ``key_id`` it signs with."""

    @classmethod
    def load(cls, path: Path) -> PublicKey:
        """Read a PEM public key; :class:`InputError` naming the file if it is not one."""
        data = _read(path, "public key")
        if b"PRIVATE KEY" in data:
            raise InputError(f"public key {path}: holds a private key; give the public key "
                             "(`trustledger checkpoint --public-key FILE` writes it)")
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as err:
            raise InputError(f"public key {path}: not a PEM public key ({err})") from err
        if not isinstance(key, Ed25519PublicKey):
            raise InputError(f"public key {path}: not an Ed25519 key "
                             f"(a {type(key).__name__.lstrip('_')})")
        return cls(key)

    def pem(self) -> bytes:
        """The key as PEM (SubjectPublicKeyInfo), the form auditors keep."""
        return self._key.public_bytes(serialization.Encoding.PEM,
                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def write(self, path: Path) -> None:
        """Write the key to ``path`` as PEM; an existing file must already hold this key.

        Never replaces a different key: an auditor's trusted key is the auditor's to change.
        """
        pem = self.pem()
        if path.exists():
            if _read(path, "public key") != pem:
                raise InputError(f"public key {path}: exists and holds a different key; "
                                 "nothing written")
            return
        _create(path, pem, 0o644, "public key", InputError)

    def check(self, checkpoint: Checkpoint, where: str) -> None:
        """Raise :class:`InputError` naming ``where`` unless this key signed ``checkpoint``."""
        if checkpoint.key_id != self.key_id:
            raise InputError(f"checkpoint {where}: signed by key {checkpoint.key_id}, not by "
                             f"the trusted public key {self.key_id}")
        try:
            self._key.verify(checkpoint.signature, checkpoint.message())
        except InvalidSignature as err:
            raise InputError(f"checkpoint {where}: bad signature (the document was changed "
                             "after signing, or was not signed with this key)") from err


class SigningKey:
    """The operator's Ed25519 key that signs checkpoints; never leaves its file."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        """Wrap a private key; :meth:`load` and :meth:`create` handle its file."""
        self._key = key
        self.public_key = PublicKey(key.public_key())
        """The matching public key, to give to auditors."""

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Read the PEM signing key at ``path``; :class:`ConfigError` naming it if unusable.

        Refused if others than its owner may read it (mode wider than 0600).
        """
        if os.name == "posix":
            try:
                mode = path.stat().st_mode & 0o777
            except OSError as err:
                raise ConfigError(f"checkpoint key {path}: {err.strerror}") from err
            if mode & 0o077:
                raise ConfigError(f"checkpoint key {path}: mode {mode:04o} lets others read "
                                  f"the signing key; make it 0600 (chmod 600 {path})")
        try:
            data = path.read_bytes()
            key = serialization.load_pem_private_key(data, password=None)
        except OSError as err:
            raise ConfigError(f"checkpoint key {path}: {err.strerror}") from err
        except (ValueError, TypeError, UnsupportedAlgorithm) as err:
            raise ConfigError(f"checkpoint key {path}: not an unencrypted PEM private key "
                              f"({err})") from err
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"checkpoint key {path}: not an Ed25519 key")
        return cls(key)

    @classmethod
    def create(cls, path: Path) -> SigningKey:
        """A new key written to ``path`` with mode 0600; the existing one if ``path`` exists.

        Written to a temporary file first and linked into place, so two processes
        creating it at once end up with the same key, never a half-written one.
        """
        if path.exists():
            return cls.load(path)
        if not path.parent.is_dir():
            raise ConfigError(f"checkpoint key {path}: folder {path.parent} does not exist")
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            _create(temporary, pem, 0o600, "checkpoint key", ConfigError)
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process created it first: use theirs
            except OSError as err:
                raise ConfigError(f"checkpoint key {path}: {err.strerror}") from err
        finally:
            temporary.unlink(missing_ok=True)
        return cls.load(path)

    def sign(self, seq: int, hash_: str, time: datetime) -> Checkpoint:
        """A checkpoint of entry ``seq`` with hash ``hash_``, made at ``time`` (timezone-aware)."""
        if time.tzinfo is None or time.utcoffset() is None:
            raise InputError("time: must be timezone-aware")
        key_id = self.public_key.key_id
        signature = self._key.sign(_message(seq, hash_, time, key_id))
        return Checkpoint(seq, hash_, time, key_id, signature)


def _read(path: Path, what: str) -> bytes:
    """A small file's bytes; :class:`InputError` naming it if it cannot be read."""
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_BYTES + 1)
    except OSError as err:
        raise InputError(f"{what} {path}: {err.strerror}") from err
    if len(data) > _MAX_BYTES:
        raise InputError(f"{what} {path}: larger than {_MAX_BYTES // 1024} KiB; not a {what}")
    return data


def _create(
    path: Path, data: bytes, mode: int, what: str, error: type[ConfigError | InputError]
) -> None:
    """Write a new file (never replacing one) with ``mode``, flushed to disk."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError as err:
        raise error(f"{what} {path}: already exists; nothing written") from err
    except OSError as err:
        raise error(f"{what} {path}: {err.strerror}") from err
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def write_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to a new file; an existing file is never replaced (kept evidence)."""
    _create(path, checkpoint.to_json(), 0o644, "checkpoint", InputError)


def read_checkpoint(path: Path, key: PublicKey) -> Checkpoint:
    """Read a checkpoint file and check its signature against the trusted ``key``.

    Raises :class:`InputError` naming the file and what is wrong: unreadable, not
    JSON, a missing, unknown or malformed field, another key, or a bad signature.
    """
    data = _read(path, "checkpoint")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise InputError(f"checkpoint {path}: not JSON ({err})") from err
    checkpoint = _parse(document, path)
    key.check(checkpoint, str(path))
    return checkpoint


def _parse(document: Any, path: Path) -> Checkpoint:
    def bad(field: str, reason: str) -> InputError:
        return InputError(f"checkpoint {path}: {field}: {reason}")

    if not isinstance(document, dict):
        raise InputError(f"checkpoint {path}: not a JSON object")
    unknown = sorted(set(document) - set(_FIELDS))
    if unknown:
        raise bad(unknown[0], "unknown field")
    for field in _FIELDS:
        if field not in document:
            raise bad(field, "missing")
    if document["format"] != CHECKPOINT_FORMAT:
        raise bad("format", f"{document['format']!r} is not {CHECKPOINT_FORMAT!r}")
    seq = document["seq"]
    if type(seq) is not int or seq < 1:
        raise bad("seq", "must be a whole number of at least 1")
    for field in ("hash", "key_id"):
        if not isinstance(document[field], str) or not _HEX64.fullmatch(document[field]):
            raise bad(field, "must be 64 lower-case hex digits")
    try:
        time = datetime.fromisoformat(document["time"])
    except (TypeError, ValueError) as err:
        raise bad("time", "must be an RFC 3339 date-time") from err
    if time.tzinfo is None:
        raise bad("time", "must carry a UTC offset")
    try:
        signature = base64.b64decode(document["signature"], validate=True)
    except (TypeError, ValueError, binascii.Error) as err:
        raise bad("signature", "must be base64") from err
    if len(signature) != 64:
        raise bad("signature", f"must be 64 bytes, not {len(signature)}")
    return Checkpoint(seq, document["hash"], time, document["key_id"], signature)


def checkpoint_head(
    ledger: Ledger, key: SigningKey | Path, time: datetime, progress: Progress | None = None
) -> Checkpoint:
    """Verify the whole chain, then sign a checkpoint of its last entry, made at ``time``.

    ``key`` is the signing key or its file, created (:meth:`SigningKey.create`) only
    once the chain verified. A chain that does not verify is never signed
    (:class:`IntegrityError`); an empty ledger has nothing to checkpoint (:class:`InputError`).
    """
    report = ledger.verify(progress)
    if report.entries == 0:
        raise InputError(f"ledger {ledger.url} is empty: nothing to checkpoint")
    signer = key if isinstance(key, SigningKey) else SigningKey.create(key)
    return signer.sign(report.entries, report.head_hash, time)


def verify_with_checkpoints(
    ledger: Ledger,
    kept: Sequence[tuple[str, Checkpoint]],
    progress: Progress | None = None,
) -> VerifyReport:
    """Verify the chain, then that each kept checkpoint's entry still has its hash.

    ``kept`` pairs a name (the file) with a checkpoint whose signature was already
    checked (:func:`read_checkpoint`). Raises :class:`IntegrityError` for the lowest
    checkpoint that fails, naming its file and entry: a chain that ends before the
    checkpoint's seq was truncated; another hash there means the chain was rewritten
    at or before that entry (after the highest checkpoint below it that still holds).
    """
    report = ledger.verify(progress)
    held: tuple[str, Checkpoint] | None = None
    for name, checkpoint in sorted(kept, key=lambda pair: pair[1].seq):
        since = "" if held is None else (
            f"; entries up to seq={held[1].seq} are unchanged (checkpoint {held[0]})"
        )
        signed = f"checkpoint {name} (signed {iso(checkpoint.time)})"
        if checkpoint.seq > report.entries:
            raise IntegrityError(
                report.entries + 1,
                f"entry missing: {signed} names seq={checkpoint.seq}, the chain ends at "
                f"seq={report.entries}: entries were removed{since}",
            )
        found = ledger.entry(checkpoint.seq).hash
        if found != checkpoint.hash:
            raise IntegrityError(
                checkpoint.seq,
                f"hash {found} is not {checkpoint.hash} as in {signed}: the chain was "
                f"rewritten at or before this entry{since}",
            )
        held = (name, checkpoint)
    return report
