"""``hms serve`` skips Alembic when the database is at ``migrate.head()``, which is read from
the migration file names: it must be the head Alembic itself finds, and the only one."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from hms.persistence import migrate


def test_head_from_file_names_is_alembics_only_head() -> None:
    scripts = ScriptDirectory.from_config(migrate.alembic_config("postgresql://unused/x"))
    assert scripts.get_heads() == [migrate.head()]


def test_every_migration_file_is_numbered_like_its_revision() -> None:
    """A file outside the NNNN_ pattern would be invisible to ``head()``."""
    scripts = ScriptDirectory.from_config(migrate.alembic_config("postgresql://unused/x"))
    for script in scripts.walk_revisions():
        assert script.path is not None
        name = script.path.rsplit("/", 1)[-1]
        assert name.startswith(f"{script.revision}_"), name
