"""What sharding by hospital on Citus needs from the schema (docs/sharding.md), read from the
migrated database's own catalog: a table with ``hospital_id`` can be distributed by it only if
every key and unique index includes it, and co-located joins need every foreign key between
such tables to carry it on both sides."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from hms.models.tables import TENANT_TABLES

#: Tables without hospital_id, replicated to every node as Citus reference tables.
REFERENCE = {"hospital", "persisted_document"}
#: The job queue (PgQueuer's tables, no hospital_id): Citus local tables on the coordinator, where
#: the workers take jobs; a job carries its hospital in its payload.
QUEUE = {"pgqueuer", "pgqueuer_log", "pgqueuer_statistics", "pgqueuer_schedules"}

UNIQUE_KEYS = """
SELECT c.relname AS table_name, i.relname AS index_name,
       array_agg(a.attname ORDER BY a.attnum) AS columns
FROM pg_index x
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(x.indkey)
WHERE x.indisunique OR x.indisexclusion
GROUP BY 1, 2
"""
FOREIGN_KEYS = """
SELECT con.conname, src.relname AS source, dst.relname AS target,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, i)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
             ORDER BY k.i) AS source_columns,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, i)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum
             ORDER BY k.i) AS target_columns
FROM pg_constraint con
JOIN pg_class src ON src.oid = con.conrelid
JOIN pg_class dst ON dst.oid = con.confrelid
JOIN pg_namespace n ON n.oid = src.relnamespace AND n.nspname = 'public'
WHERE con.contype = 'f'
"""
TABLES = """
SELECT c.relname, bool_or(a.attname = 'hospital_id') AS tenant
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
WHERE c.relkind = 'r' AND c.relname <> 'alembic_version'
GROUP BY 1
"""


async def test_every_table_is_distributed_by_hospital_or_a_reference_table(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        tables = {r["relname"]: r["tenant"] for r in await conn.fetch(TABLES)}
        keys = await conn.fetch(UNIQUE_KEYS)
        foreign = await conn.fetch(FOREIGN_KEYS)
    finally:
        await conn.close()
    distributed = {name for name, tenant in tables.items() if tenant}
    assert set(tables) == distributed | REFERENCE | QUEUE
    assert set(TENANT_TABLES) <= distributed | {"audit_head"}

    bad_keys = [
        (k["table_name"], k["index_name"])
        for k in keys
        if k["table_name"] in distributed and "hospital_id" not in k["columns"]
    ]
    assert bad_keys == [], "a key or unique index without hospital_id cannot be distributed"

    for fk in foreign:
        if fk["source"] in distributed and fk["target"] in distributed:
            # Co-located: both sides carry hospital_id, in the same position.
            pairs = dict(zip(fk["source_columns"], fk["target_columns"], strict=True))
            assert pairs.get("hospital_id") == "hospital_id", fk["conname"]
        else:
            assert fk["target"] in REFERENCE, fk["conname"]  # into a reference table only


TENANT_NAMES = ("patient", "practitioner", "appointment", "encounter")
DOCUMENTS = [
    "{ patients(first: 5) { edges { node { id mrn appointments(first: 2) { edges { node {"
    " id practitioner { id familyName } } } }"
    " encounters(first: 2) { edges { node { id } } } } } } }",
    "{ practitioners(first: 3) { edges { node { id appointments(first: 2) { edges { node {"
    " id patient { id } } } } } } } }",
    "{ appointments(first: 5) { edges { node { id patient { id } practitioner { id } } } } }",
    "{ encounters(first: 5) { edges { node { id patient { id } appointment { id } } } } }",
    "{ patientStats { total active } patients { totalCount } }",
]


async def test_every_statement_names_the_hospital_of_each_table_it_reads(
    app: Any, client: Any, interpreted_app: Any, interpreted_client: Any, dataset: Any
) -> None:
    """On either path, every statement that reads a tenant table filters it by the request's
    hospital: on Citus each is a router query on the hospital's node, never a cross-node join."""
    from tests.conftest import token
    from tests.statements import recorded

    for application, http in ((app, client), (interpreted_app, interpreted_client)):
        with recorded(application.state.database.primary) as statements:
            for query in DOCUMENTS:
                response = await http.post(
                    "/graphql",
                    json={"query": query},
                    headers={"Authorization": f"Bearer {token(dataset.alpha)}"},
                )
                assert "errors" not in response.json(), response.text
        assert statements
        for statement in statements:
            text = " ".join(statement.split())
            tables = sum(
                len(re.findall(rf"\b(?:FROM|JOIN)\s+{name}\b", text, flags=re.IGNORECASE))
                for name in TENANT_NAMES
            )
            bound = len(re.findall(r"hospital_id\s*=", text))
            assert bound >= tables, text[:400]
