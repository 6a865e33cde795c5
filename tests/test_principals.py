"""Principals: keys issued once and stored hashed, roles and accreditations, revocation, audit."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tests.governance import put_in_force
from trustledger.cli import app
from trustledger.errors import InputError, NotFoundError
from trustledger.principals import (
    ADDED,
    REVOKED,
    AuthenticationError,
    Role,
    ServiceLedger,
    add_principal,
    authenticate,
    get_principal,
    key_hash,
    list_principals,
    principals,
    revoke_principal,
)

runner = CliRunner()


@pytest.fixture
def ledger(database_url: str) -> Iterator[ServiceLedger]:
    with ServiceLedger.open(database_url) as opened:
        yield opened


def test_key_is_shown_once_and_stored_only_as_its_hash(ledger: ServiceLedger) -> None:
    put_in_force(ledger)  # a source's accreditation is checked against the register
    issued = add_principal(ledger, "bank-a", Role.SOURCE, accreditations=("bill_paid",),
                           domains=("finance",))
    assert re.fullmatch(r"tl_[A-Za-z0-9_\-]{43}", issued.key)
    with ledger.reading() as conn:
        rows = conn.execute(sa.select(principals).where(principals.c.name == "bank-a")).all()
    assert len(rows) == 1
    assert rows[0].key_hash == key_hash(issued.key)
    stored = " ".join(str(v) for v in rows[0])
    assert issued.key not in stored and issued.key[3:] not in stored
    found = authenticate(ledger, issued.key)
    assert (found.name, found.role, found.accreditations, found.domains) == (
        "bank-a", Role.SOURCE, ("bill_paid",), ("finance",))


def test_every_change_is_audited_in_the_ledger_without_key_material(
        ledger: ServiceLedger) -> None:
    issued = add_principal(ledger, "alice", Role.SUBJECT, subject="alice")
    revoke_principal(ledger, issued.principal.id)
    records = list(ledger.records())
    assert [r.kind for r in records] == [ADDED, REVOKED]
    assert records[0].payload == {"id": issued.principal.id, "name": "alice",
                                  "role": "subject", "accreditations": [], "domains": [],
                                  "subject": "alice", "rate_limit": None}
    assert records[0].subject == "alice"  # the subject sees that a key for them exists
    for record in records:
        text = str(record.payload)
        assert issued.key not in text and key_hash(issued.key) not in text
    ledger.verify()


def test_revoked_key_is_refused_and_revoking_twice_changes_nothing(
        ledger: ServiceLedger) -> None:
    issued = add_principal(ledger, "op", Role.OPERATOR)
    revoked = revoke_principal(ledger, issued.principal.id)
    assert revoked.revoked_at is not None and not revoked.active
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticate(ledger, issued.key)
    again = revoke_principal(ledger, issued.principal.id)
    assert again.revoked_at == revoked.revoked_at
    assert [r.kind for r in ledger.records()] == [ADDED, REVOKED]
    assert list_principals(ledger) == []
    assert [p.id for p in list_principals(ledger, include_revoked=True)] == [
        issued.principal.id]


@pytest.mark.parametrize("key", ["", "tl_short", "x" * 46, "tl_" + "!" * 43])
def test_malformed_keys_are_refused_before_any_lookup(ledger: ServiceLedger, key: str) -> None:
    with pytest.raises(AuthenticationError, match="malformed"):
        authenticate(ledger, key)


def test_unknown_key_is_refused(ledger: ServiceLedger) -> None:
    with pytest.raises(AuthenticationError, match="not known"):
        authenticate(ledger, "tl_" + "A" * 43)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": " bad", "role": Role.OPERATOR}, "name"),
    ({"name": "src", "role": Role.SOURCE}, "at least one event type"),
    ({"name": "rp", "role": Role.RELYING_PARTY}, "at least one purpose"),
    ({"name": "op", "role": Role.OPERATOR, "accreditations": ("x",)}, "only sources"),
    ({"name": "src", "role": Role.SOURCE, "accreditations": ("Bad-Type",)}, "identifier"),
    ({"name": "src", "role": Role.SOURCE, "accreditations": ("a", "a")}, "twice"),
    ({"name": "alice", "role": Role.SUBJECT}, "subject id"),
    ({"name": "op", "role": Role.OPERATOR, "subject": "alice"}, "only a subject principal"),
    ({"name": "op", "role": Role.OPERATOR, "rate_limit": 0.0}, "rate_limit"),
])
def test_invalid_principals_are_refused_naming_the_field(
        ledger: ServiceLedger, kwargs: dict[str, object], message: str) -> None:
    kwargs = dict(kwargs)
    name = kwargs.pop("name")
    role = kwargs.pop("role")
    with pytest.raises(InputError, match=message):
        add_principal(ledger, name, role, **kwargs)  # type: ignore[arg-type]
    assert list(ledger.records()) == []


def test_a_name_stands_for_one_identity(ledger: ServiceLedger) -> None:
    put_in_force(ledger)
    add_principal(ledger, "bank-a", Role.SOURCE, accreditations=("bill_paid",),
                  domains=("finance",))
    rotated = add_principal(ledger, "bank-a", Role.SOURCE, accreditations=("bill_paid",),
                            domains=("finance",))
    assert rotated.principal.name == "bank-a"  # key rotation: same role, new key
    with pytest.raises(InputError, match="already an active source"):
        add_principal(ledger, "bank-a", Role.RELYING_PARTY, accreditations=("x",))
    add_principal(ledger, "alice", Role.SUBJECT, subject="alice")
    with pytest.raises(InputError, match="for subject 'alice'"):
        add_principal(ledger, "alice", Role.SUBJECT, subject="bob")


def test_unknown_principal(ledger: ServiceLedger) -> None:
    with pytest.raises(NotFoundError):
        revoke_principal(ledger, "pr_nothing")
    with pytest.raises(NotFoundError):
        get_principal(ledger, "pr_nothing")


def test_cli_add_list_revoke(database_url: str) -> None:
    with ServiceLedger.open(database_url) as ledger:
        put_in_force(ledger)
    outside = runner.invoke(app, ["principal", "add", "bank-a", "--role", "source", "--accredit",
                                  "bill_paid", "--domain", "rental",
                                  "--database-url", database_url])
    assert outside.exit_code != 0
    assert "event type 'bill_paid' is in domain 'finance'" in str(outside.exception)
    added = runner.invoke(app, ["principal", "add", "bank-a", "--role", "source", "--accredit",
                                "bill_paid", "--accredit", "repayment_late", "--domain",
                                "finance", "--database-url", database_url])
    assert added.exit_code == 0, added.output
    key = re.search(r"tl_[A-Za-z0-9_\-]{43}", added.output)
    principal_id = re.search(r"pr_[0-9a-f]{16}", added.output)
    assert key and principal_id
    listed = runner.invoke(app, ["principal", "list", "--database-url", database_url])
    assert listed.exit_code == 0 and "finance" in listed.output
    assert key.group() not in listed.output
    shown = runner.invoke(app, ["principal", "list", "--json", "--database-url", database_url])
    (source,) = [p for p in json.loads(shown.output) if p["name"] == "bank-a"]
    assert (source["accreditations"], source["domains"]) == (["bill_paid", "repayment_late"],
                                                             ["finance"])
    revoked = runner.invoke(app, ["principal", "revoke", principal_id.group(),
                                  "--database-url", database_url])
    assert revoked.exit_code == 0 and "revoked source 'bank-a'" in revoked.output
    assert "bank-a" not in runner.invoke(
        app, ["principal", "list", "--json", "--database-url", database_url]).output
    assert "bank-a" in runner.invoke(
        app, ["principal", "list", "--all", "--json", "--database-url", database_url]).output


def test_cli_failures_exit_2_with_a_message(database_url: str) -> None:
    from trustledger.cli import main

    for args in (["principal", "add", "x", "--role", "source"],
                 ["principal", "revoke", "pr_none"]):
        result = runner.invoke(app, [*args, "--database-url", database_url])
        assert result.exit_code != 0
        assert isinstance(result.exception, InputError | NotFoundError)
    assert callable(main)


def test_schema_has_the_principals_table(database_url: str) -> None:
    with ServiceLedger.open(database_url) as ledger, ledger.reading() as conn:
        names = sa.inspect(conn).get_table_names()
    assert "principals" in names


def test_revision_0004_gives_earlier_principals_no_domains(empty_database_url: str) -> None:
    """A principal issued before the register keeps working; a source gets no domains."""
    from importlib import resources

    from alembic import command
    from alembic.config import Config

    from trustledger.ledger import database

    config = Config()
    config.set_main_option("script_location",
                           str(resources.files("trustledger.ledger") / "migrations"))
    engine = database.create_engine(empty_database_url)
    try:
        with database.writing(engine) as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0003")
        with database.writing(engine) as conn:
            conn.execute(sa.text(
                "INSERT INTO principals (id, name, role, key_hash, accreditations, subject, "
                "rate_limit, created_at_us, revoked_at_us) VALUES ('pr_old', 'bank', 'source', "
                "'" + "0" * 64 + "', '[\"bill_paid\"]', NULL, NULL, 0, NULL)"))
    finally:
        engine.dispose()
    with ServiceLedger.open(empty_database_url) as ledger:  # migrates to the newest revision
        (old,) = list_principals(ledger)
    assert (old.name, old.accreditations, old.domains) == ("bank", ("bill_paid",), ())
