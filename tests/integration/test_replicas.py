"""Read-only requests go to a replica when one is configured; writes stay on the primary."""

from __future__ import annotations

import httpx

from hms.app import create_app
from hms.settings import Settings
from tests import fixtures
from tests.api.writes import CREATE_PATIENT, make_hospital
from tests.conftest import token, without_cost
from tests.statements import recorded


async def test_queries_use_the_replica_and_mutations_the_primary(
    settings: Settings, database_url: str, dataset: fixtures.Dataset
) -> None:
    ward = await make_hospital(database_url, practitioners=1)
    # The "replica" is the same database under another engine: what matters is which engine runs.
    app = create_app(settings.with_(database_replica_urls=(database_url,)))
    headers = {"Authorization": f"Bearer {token(ward)}"}
    async with app.router.lifespan_context(app):
        primary = app.state.database.primary
        (replica,) = app.state.database.replicas
        # The tenant lookup (on the primary, once per hospital) is not what is measured.
        assert await app.state.pipeline.authenticator.tenants.exists(ward.id)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://hms.test") as client:
            with recorded(primary) as on_primary, recorded(replica) as on_replica:
                read = await client.post(
                    "/graphql", json={"query": "{ patientStats { total } }"}, headers=headers
                )
            assert without_cost(read.json()) == {"data": {"patientStats": {"total": 2}}}
            assert (len(on_primary), len(on_replica)) == (0, 1)

            variables = {"input": {"mrn": "R-1", "givenName": "Rea", "familyName": "Plica"}}
            with recorded(primary) as on_primary, recorded(replica) as on_replica:
                write = await client.post(
                    "/graphql",
                    json={"query": CREATE_PATIENT, "variables": variables},
                    headers=headers,
                )
            assert write.json()["data"]["createPatient"]["userErrors"] == []
            assert len(on_primary) >= 1
            assert on_replica == []
