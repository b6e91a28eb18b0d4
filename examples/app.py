"""A notes service: FastAPI and SQLAlchemy async, one session per request.

Run it with ``python -m examples.app``: it serves on 127.0.0.1:8000 (``PORT``
changes the port) with SQLite in ``./example.db`` (``DATABASE_URL`` changes
the database).

``ScopeMiddleware`` runs every request in its own scope and checks the
container when the app starts.  The session is lazy: a request that resolves
nothing scoped (``/health``) opens none.  The repositories and the service of
one request share that request's session, which commits when the response is
a success (status below 400), before the client receives it, and rolls back
otherwise: after an unhandled error (500) and after an ``HTTPException``
(4xx) alike.  A commit that fails turns the response into a 500, also through
the ``@app.middleware("http")`` below, which re-sends every response.

Providers are resolved by injection (``Provide[Container.service]``) or
directly; the session is asynchronous, so everything built on it is awaited:
``notes = await container.notes()``.

Endpoints:

- ``POST /notes`` ``{"title": ...}``: create a note and its audit event (the
  INSERTs run at commit, so a duplicate title answers 500, never 201);
- ``GET /notes``: list the notes;
- ``POST /notes/fail``: write a note, then fail with an unhandled error (500);
- ``POST /notes/reject``: write a note, then answer 400 (``HTTPException``);
- ``GET /debug/session``: which session the service and both repositories got;
- ``GET /health``: answers without touching the database.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from dependency_injector.wiring import Provide, inject
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response
from pydantic import BaseModel
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from dependency_injector_scoped import containers, providers
from dependency_injector_scoped.ext.starlette import ScopeMiddleware

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./example.db"


class Base(DeclarativeBase):
    """Declarative base of the example's tables."""


class Note(Base):
    """A note; titles are unique."""

    __tablename__ = "notes"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    title: Mapped[str] = mapped_column(String(200), unique=True)


class Event(Base):
    """An audit record, written in the same transaction as the change it records."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    note_id: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(20))
    path: Mapped[str] = mapped_column(String(200))


async def open_session(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """Yield the scope's session: commit when the scope succeeds, else roll back; then close."""
    async with AsyncSession(engine, expire_on_commit=False) as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


class NoteRepository:
    """Notes, read and written through the request's session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, title: str) -> Note:
        """Add a note; it is inserted when the session flushes or commits."""
        note = Note(id=uuid.uuid4().hex, title=title)
        self.session.add(note)
        return note

    async def all(self) -> list[Note]:
        """Every note, by title."""
        return list(await self.session.scalars(select(Note).order_by(Note.title)))


class EventRepository:
    """Audit events, recorded with the path of the request that caused them."""

    def __init__(self, session: AsyncSession, request: Request) -> None:
        self.session = session
        self.request = request

    def record(self, note: Note, action: str) -> None:
        """Record ``action`` on ``note``."""
        self.session.add(Event(note_id=note.id, action=action, path=self.request.url.path))


class NoteService:
    """Creates notes together with their audit events."""

    def __init__(self, notes: NoteRepository, events: EventRepository) -> None:
        self.notes = notes
        self.events = events

    def create(self, title: str) -> Note:
        """Create a note and its "created" event, in one transaction."""
        note = self.notes.add(title)
        self.events.record(note, "created")
        return note

    async def write_now(self) -> None:
        """Send the pending INSERTs to the database, inside the open transaction."""
        await self.notes.session.flush()


class Container(containers.DeclarativeContainer):
    """The application's providers: the engine lives as long as the app, the rest per request."""

    wiring_config = containers.WiringConfiguration(modules=[__name__])

    config = providers.Configuration()
    engine = providers.Singleton(create_async_engine, config.database_url)
    session = providers.ScopedResource(open_session, engine)
    request = providers.ScopedValue("request")
    notes = providers.ScopedFactory(NoteRepository, session=session)
    events = providers.ScopedFactory(EventRepository, session=session, request=request)
    service = providers.ScopedFactory(NoteService, notes=notes, events=events)


class NoteIn(BaseModel):
    """The body of ``POST /notes``."""

    title: str


def note_json(note: Note) -> dict[str, str]:
    """A note as JSON."""
    return {"id": note.id, "title": note.title}


def session_key(session: AsyncSession) -> int:
    """A number that identifies a session for the life of the process."""
    return session.sync_session.hash_key


router = APIRouter()


@router.post("/notes", status_code=201)
@inject
async def create_note(
    body: NoteIn, service: NoteService = Depends(Provide[Container.service])
) -> dict[str, str]:
    """Create a note; it is committed before the 201 is sent."""
    return note_json(service.create(body.title))


@router.get("/notes")
async def list_notes(request: Request) -> list[dict[str, str]]:
    """List the notes, resolving the repository directly from the container."""
    container: Container = request.app.state.container
    notes = await container.notes()
    return [note_json(note) for note in await notes.all()]


@router.post("/notes/fail")
@inject
async def create_note_then_fail(
    body: NoteIn, service: NoteService = Depends(Provide[Container.service])
) -> dict[str, str]:
    """Write a note, then fail: the scope closes with the error and the write is rolled back."""
    service.create(body.title)
    await service.write_now()
    raise RuntimeError("the note was written, then the request failed")


@router.post("/notes/reject")
@inject
async def create_note_then_reject(
    body: NoteIn, service: NoteService = Depends(Provide[Container.service])
) -> dict[str, str]:
    """Write a note, then answer 400: an error status rolls the write back."""
    service.create(body.title)
    await service.write_now()
    raise HTTPException(status_code=400, detail="rejected after writing")


@router.get("/debug/session")
@inject
async def debug_session(
    service: NoteService = Depends(Provide[Container.service]),
    notes: NoteRepository = Depends(Provide[Container.notes]),
    events: EventRepository = Depends(Provide[Container.events]),
) -> dict[str, Any]:
    """The session each injected object got, and the request's path."""
    return {
        "service": session_key(service.notes.session),
        "notes": session_key(notes.session),
        "events": session_key(events.session),
        "path": events.request.url.path,
    }


@router.get("/health")
async def health() -> dict[str, str]:
    """Answer at once: nothing scoped is resolved, so no session is opened."""
    return {"status": "ok"}


async def add_process_time(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Time each request into an ``X-Process-Time`` header (FastAPI's middleware example)."""
    started = time.perf_counter()
    response = await call_next(request)
    response.headers["X-Process-Time"] = f"{time.perf_counter() - started:.6f}"
    return response


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Create the tables on start-up; dispose of the engine on shutdown."""
    engine = app.state.container.engine()
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    yield
    await engine.dispose()


def create_app(database_url: str | None = None) -> FastAPI:
    """Build the app and its container; ``database_url`` defaults to ``$DATABASE_URL``."""
    container = Container()
    container.config.database_url.from_value(
        database_url or os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    )
    app = FastAPI(title="Notes", lifespan=lifespan)
    app.state.container = container
    app.include_router(router)
    app.middleware("http")(add_process_time)
    # Added last, so it is the outermost: the request's scope encloses every
    # other middleware, and the commit happens before any of them can answer.
    app.add_middleware(ScopeMiddleware, container=container)
    return app


app = create_app()


def main() -> None:
    """Serve the app on 127.0.0.1, port ``$PORT`` (8000)."""
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))


if __name__ == "__main__":
    main()
