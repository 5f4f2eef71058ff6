"""The store: migrations match the models, import/export keep the scenario, the audit log is append-only."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, select
from tests.service.conftest import SMALL_LAB

from fairshare.scenario import Request
from fairshare.scenario.files import load_scenario, loads_scenario
from fairshare.store import models as m
from fairshare.store.db import session_factory, upgrade
from fairshare.store.repo import export_scenario, import_scenario


def test_migrations_create_exactly_the_models_tables(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), m.Base.metadata)
    assert diff == [], f"models and migrations differ; add an Alembic revision: {diff}"


def test_upgrade_twice_changes_nothing(engine: Engine) -> None:
    upgrade(engine)
    upgrade(engine)
    with session_factory(engine)() as s:
        assert s.scalars(select(m.Node)).all() == []


def test_import_then_export_gives_back_the_scenario(engine: Engine) -> None:
    scenario = load_scenario("examples/meta-ai-2023.yaml")
    with session_factory(engine)() as s:
        import_scenario(s, scenario, "2023-03")
        s.commit()
        rnd = s.scalars(select(m.Round)).one()
        back = export_scenario(s, rnd)
    assert back.pools == scenario.pools and back.org == scenario.org and back.policy == scenario.policy
    assert back.requests == scenario.requests and back.reference_gpu == scenario.reference_gpu


def test_reimport_updates_by_name_and_keeps_nodes_missing_from_the_file(engine: Engine) -> None:
    with session_factory(engine)() as s:
        import_scenario(s, loads_scenario(SMALL_LAB))
        s.commit()
        smaller = SMALL_LAB.replace("gpus: 64", "gpus: 32").replace("children: [{name: genai}]", "children: []")
        import_scenario(s, loads_scenario(smaller))
        s.commit()
        pools = {p.name: p.gpus for p in s.scalars(select(m.Pool))}
        nodes = {n.name for n in s.scalars(select(m.Node))}
    assert pools == {"h100-east": 32, "a100-west": 128}
    assert "genai" in nodes  # requests and grants may still point at it


def test_downgrade_to_nothing_and_back(engine: Engine) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from fairshare.store.db import alembic_config

    command.downgrade(alembic_config(engine), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert "rounds" in inspect(engine).get_table_names()


def test_the_database_refuses_to_change_or_delete_audit_entries(engine: Engine) -> None:
    import pytest
    from sqlalchemy import delete, update
    from sqlalchemy.exc import DBAPIError

    from fairshare.store.repo import audit

    with session_factory(engine)() as s:
        audit(s, "chair", "round.publish", "round", 1, None, {"state": "published"})
        s.commit()
        for stmt in (update(m.AuditEntry).values(actor="someone else"), delete(m.AuditEntry)):
            with pytest.raises(DBAPIError, match="append-only"):
                s.execute(stmt)
                s.flush()
            s.rollback()
        assert [e.actor for e in s.scalars(select(m.AuditEntry))] == ["chair"]


def test_an_import_that_would_break_a_live_round_is_refused_and_changes_nothing(engine: Engine) -> None:
    """Pools and nodes are upserted by name, so a re-import can change a pool's GPU type under
    a round's requests.  The round could then not be proposed, exported or appealed: the import
    is refused, naming the round and the request, and nothing of it is kept."""
    import pytest

    from fairshare.scenario import ScenarioError

    lab = loads_scenario(SMALL_LAB, "lab.yaml")
    asks = lab.model_copy(update={"requests": [Request(id="pre", team="llama", gpus=8, speed={"H100": 2.0})]})
    sessions = session_factory(engine)
    with sessions() as s:
        import_scenario(s, asks, "2026-12")
        s.commit()
    renamed = lab.model_copy(
        update={"pools": [p.model_copy(update={"gpu": "B200"}) if p.gpu == "H100" else p for p in lab.pools]}
    )
    with sessions() as s, pytest.raises(ScenarioError) as info:
        import_scenario(s, renamed)
    assert "round '2026-12'" in str(info.value) and "'H100'" in str(info.value)
    with sessions() as s:
        assert sorted(p.gpu for p in s.scalars(select(m.Pool))) == ["A100", "H100"]
        rnd = s.scalars(select(m.Round)).one()
        assert [r.id for r in export_scenario(s, rnd).requests] == ["pre"]


def test_a_round_created_by_an_import_is_in_the_audit_log(engine: Engine) -> None:
    with session_factory(engine)() as s:
        import_scenario(s, load_scenario("examples/meta-ai-2023.yaml"), "2023-03", actor="cli")
        s.commit()
        rnd = s.scalars(select(m.Round)).one()
        entries = s.scalars(select(m.AuditEntry).where(m.AuditEntry.action == "round.create")).all()
    assert [(e.actor, e.entity_id, e.after["name"]) for e in entries] == [("cli", str(rnd.id), "2023-03")]
