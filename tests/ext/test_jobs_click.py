"""A Click CLI whose commands run in ``in_scope``: one SQLAlchemy session per command.

The commands are wired with ``container.wire()`` on this module and run through
Click's ``CliRunner`` against a SQLite file; rows are read back through a
separate ``sqlite3`` connection.
"""

from __future__ import annotations

import pathlib
import sqlite3
import sys
from collections.abc import Iterator

import pytest
from dependency_injector.wiring import Provide, inject
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from dependency_injector_scoped import containers, providers
from dependency_injector_scoped.ext.jobs import in_scope
from support import require_module

click = require_module("click")
from click.testing import CliRunner  # noqa: E402


def open_session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as session:
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        session.commit()


class Users:
    def __init__(self, session: Session) -> None:
        self.session = session

    def add(self, name: str) -> None:
        self.session.execute(text("insert into users (name) values (:name)"), {"name": name})


class Audit:
    def __init__(self, session: Session) -> None:
        self.session = session

    def record(self, what: str) -> None:
        self.session.execute(text("insert into audit (what) values (:what)"), {"what": what})


class Container(containers.DeclarativeContainer):
    engine = providers.Dependency(instance_of=Engine)
    session = providers.ScopedResource(open_session, engine)
    users = providers.ScopedFactory(Users, session=session)
    audit = providers.ScopedFactory(Audit, session=session)


container = Container()


@click.group()
def cli() -> None:
    """Manage users."""


@cli.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--fail", is_flag=True, help="Fail after adding the users.")
@in_scope(container)
@inject
def add(
    names: tuple[str, ...],
    fail: bool,
    users: Users = Provide[Container.users],
    audit: Audit = Provide[Container.audit],
) -> None:
    """Add users, and one audit row, in one transaction."""
    assert users.session is audit.session
    for name in names:
        users.add(name)
    audit.record(f"added {len(names)}")
    if fail:
        raise click.ClickException("refusing to finish")
    click.echo(f"added {', '.join(names)}")


@cli.command()
@click.pass_context
@in_scope(container)
@inject
def report(ctx: click.Context, session: Session = Provide[Container.session]) -> None:
    """Print the users, from the command's own session."""
    assert ctx.command.name == "report"
    rows = session.execute(text("select name from users order by name")).scalars().all()
    click.echo(" ".join(rows) or "nobody")


@pytest.fixture
def database(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A SQLite file with the tables, the container using it and this module wired."""
    path = tmp_path / "users.db"
    with sqlite3.connect(path) as connection:
        connection.execute("create table users (name text primary key)")
        connection.execute("create table audit (what text not null)")
    connection.close()
    engine = create_engine(f"sqlite:///{path}")
    container.engine.override(providers.Object(engine))
    container.wire(modules=[sys.modules[__name__]])
    try:
        yield path
    finally:
        container.unwire()
        container.engine.reset_override()
        engine.dispose()


def rows(path: pathlib.Path, table: str) -> list[str]:
    connection = sqlite3.connect(path)
    try:
        return [row[0] for row in connection.execute(f"select * from {table} order by 1")]
    finally:
        connection.close()


def test_command_commits_its_session(database: pathlib.Path) -> None:
    """A command that returns commits everything its repositories wrote, in one session."""
    result = CliRunner().invoke(cli, ["add", "ada", "grace"])
    assert result.exit_code == 0, result.output
    assert result.output == "added ada, grace\n"
    assert rows(database, "users") == ["ada", "grace"]
    assert rows(database, "audit") == ["added 2"]


def test_failing_command_rolls_back(database: pathlib.Path) -> None:
    """A command raising ClickException rolls back all its writes and exits with status 1."""
    result = CliRunner().invoke(cli, ["add", "ada", "--fail"])
    assert result.exit_code == 1
    assert "refusing to finish" in result.output
    assert rows(database, "users") == []
    assert rows(database, "audit") == []


def test_database_error_rolls_back_and_reaches_the_runner(database: pathlib.Path) -> None:
    """A constraint violation inside the command rolls back the rows before it and propagates."""
    result = CliRunner().invoke(cli, ["add", "ada", "ada"])
    assert result.exit_code == 1
    assert result.exception is not None and "UNIQUE" in str(result.exception)
    assert rows(database, "users") == []


def test_each_invocation_gets_a_fresh_session(database: pathlib.Path) -> None:
    """A later command sees what an earlier one committed, through its own new session."""
    runner = CliRunner()
    assert runner.invoke(cli, ["report"]).output == "nobody\n"
    assert runner.invoke(cli, ["add", "ada"]).exit_code == 0
    assert runner.invoke(cli, ["add", "linus", "--fail"]).exit_code == 1
    result = runner.invoke(cli, ["report"])
    assert result.exit_code == 0, result.output
    assert result.output == "ada\n"
