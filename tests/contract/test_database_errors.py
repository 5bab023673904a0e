"""A wrong or unreachable database fails at once, with a message that names it safely."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from dynflow import ConfigurationError, DynflowError, PersistenceError, World
from dynflow.persistence import open_persistence
from tests.conftest import server_url

MakeWorld = Callable[..., World]


def dynflow_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("dynflow")}


def failing_world(url: str, expected: type[DynflowError]) -> str:
    """The message of the error ``World(url)`` raises, checking it came fast and clean."""
    threads = dynflow_threads()
    started = time.monotonic()
    with pytest.raises(expected) as raised:
        World(url)
    assert time.monotonic() - started < 5
    assert dynflow_threads() <= threads  # nothing new left running
    return str(raised.value)


def test_a_string_that_is_no_url_is_a_configuration_error() -> None:
    message = failing_world("not a url", ConfigurationError)
    assert "not a url" in message
    assert "sqlite:///" in message  # says what a URL looks like


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://user:secret@127.0.0.1:1/nope",
        "mysql+pymysql://user:secret@127.0.0.1:1/nope",
    ],
)
def test_an_unreachable_server_fails_fast_without_showing_the_password(url: str) -> None:
    message = failing_world(url, PersistenceError)
    assert "secret" not in message
    assert url.replace("secret", "***") in message
    assert "cannot connect" in message


def test_an_unparsable_url_never_shows_its_password() -> None:
    message = failing_world("postgresql+psycopg://user:secret@host:notaport/db", ConfigurationError)
    assert "secret" not in message
    assert "postgresql+psycopg" in message


@pytest.mark.parametrize(
    "url",
    ["mongodb://user:secret@localhost/db", "oracle://user:secret@db.example/orcl"],
)
def test_an_unsupported_database_is_named_with_the_supported_ones(url: str) -> None:
    message = failing_world(url, ConfigurationError)
    assert "unsupported database" in message
    assert url.replace("secret", "***") in message
    assert "secret" not in message
    for supported in ("sqlite://", "postgresql+psycopg://", "mysql+pymysql://"):
        assert supported in message


def test_an_unknown_driver_is_a_configuration_error() -> None:
    message = failing_world(
        "postgresql+nosuchdriver://user:secret@db.example/db", ConfigurationError
    )
    assert "secret" not in message
    assert "postgresql+nosuchdriver://user:***@db.example/db" in message
    assert "nosuchdriver" in message


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_missing_database_on_a_live_server_names_it(kind: str) -> None:
    url = sa.make_url(server_url(kind)).set(database="dynflow_no_such_database")
    message = failing_world(url.render_as_string(hide_password=False), PersistenceError)
    assert "dynflow_no_such_database" in message


def test_persistence_errors_name_the_url_without_password() -> None:
    persistence = open_persistence("postgresql+psycopg://user:secret@127.0.0.1:1/nope")
    try:
        assert persistence.url == "postgresql+psycopg://user:***@127.0.0.1:1/nope"
        with pytest.raises(PersistenceError) as raised:
            persistence.find_execution_plans()
    finally:
        persistence.close()
    assert "secret" not in str(raised.value)
    assert "user:***@127.0.0.1:1/nope" in str(raised.value)


def test_a_working_world_never_shows_its_password(make_world: MakeWorld) -> None:
    # the test server trusts local connections: any password is accepted
    url = sa.make_url(server_url("postgresql")).set(password="secret")
    world = make_world(url.render_as_string(hide_password=False))
    assert "secret" not in repr(world)
    assert "secret" not in world.persistence.url
    assert "***" in world.persistence.url
