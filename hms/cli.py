"""The ``hms`` command: serve, db upgrade, seed, token, documents, export-schema.

This is the edge where settings are read from the environment (once) and the embedded defaults
(private PostgreSQL, dev token secret) are resolved before anything else starts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import gc
import json
import logging
import logging.config
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from hms.observability import logs
from hms.persistence import hospitals, migrate
from hms.persistence.urls import async_url, asyncpg_dsn
from hms.security import policy
from hms.settings import Settings, SettingsError, phi_keys

DEMO_HOSPITALS = 2
DEMO_PATIENTS = 300
#: A nested 50-patient page allocates ~10^5 short-lived objects; with CPython's default gen-0
#: threshold (700) the collector runs ~150 times per request and rescans survivors. Measured
#: in-process on the small bench profile: mean 63-75 ms -> 47 ms, p95 137-164 ms -> 76-78 ms.
GC_THRESHOLDS = (50_000, 50, 100)


def tune_gc() -> None:
    """Collect less often, and never rescan what exists at start-up (imports, the schema)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


#: Where ``hms serve`` says things once its logging is JSON lines: a logger, not plain text.
_notes: Callable[[str], None] | None = None


def _say(message: str) -> None:
    if _notes is not None:
        _notes(message)
        return
    print(message, file=sys.stderr, flush=True)


def _dev_secret(data_dir: Path) -> str:
    """A per-installation dev secret in the data dir, so ``hms token`` and the server agree."""
    path = data_dir / "jwt-secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def _dev_phi_key(data_dir: Path) -> bytes:
    """A per-installation key for national ids in the data dir, beside the embedded database
    whose values it encrypts (production sets ``HMS_PHI_KEY``, kept apart from the data)."""
    path = data_dir / "phi-key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
    return phi_keys(path.read_text().strip())[0]


def resolve(settings: Settings, *, announce: bool = False) -> Settings:
    """Fill in the embedded defaults: start the private PostgreSQL, find the dev secret."""
    changes: dict[str, object] = {}
    if settings.database_url is None:
        from hms.persistence import embedded

        url = embedded.start(settings.data_dir)
        if announce:
            _say(f"HMS_DATABASE_URL not set: using embedded PostgreSQL 18 in {settings.data_dir}")
        changes["database_url"] = url
    if settings.jwt_secret is None and settings.oidc_issuer is None:
        changes["jwt_secret"] = _dev_secret(settings.data_dir)
    if not settings.phi_keys and settings.is_dev:
        changes["phi_keys"] = (_dev_phi_key(settings.data_dir),)
    return settings.with_(**changes) if changes else settings


async def _ping(database_url: str, seconds: float) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(database_url), timeout=seconds)
    await conn.close()


def wait_for_database(database_url: str, timeout: float, connect_timeout: float) -> bool:
    """Wait (with backoff) until PostgreSQL accepts connections, for at most ``timeout`` s.

    A database that is still starting, or restarting with the app, is normal in a deployment:
    it gets one line while we wait, not a traceback. False when it never came.
    """
    where = make_url(database_url).render_as_string(hide_password=True)
    deadline = time.monotonic() + timeout
    delay = 0.25
    waiting = False
    while True:
        try:
            asyncio.run(_ping(database_url, connect_timeout))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            reason = type(error).__name__
            if time.monotonic() + delay > deadline:
                _say(
                    f"PostgreSQL at {where} is not reachable after {timeout:g} s ({reason});"
                    " HMS_DB_STARTUP_TIMEOUT sets how long to wait"
                )
                return False
            if not waiting:
                _say(f"waiting for PostgreSQL at {where} ({reason}) ...")
                waiting = True
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
            continue
        if waiting:
            _say("PostgreSQL is up")
        return True


async def _hospital_rows(database_url: str) -> list[tuple[str, uuid.UUID]]:
    engine = create_async_engine(async_url(database_url))
    try:
        return [(row.slug, row.id) for row in await hospitals.all_as_owner(engine)]
    finally:
        await engine.dispose()


def _seed(database_url: str, hospitals_n: int, patients: int, rng_seed: int) -> None:
    from hms.persistence import seed

    report = asyncio.run(
        seed.load(
            database_url,
            hospitals=hospitals_n,
            patients_per_hospital=patients,
            rng_seed=rng_seed,
            progress=sys.stderr.isatty() or bool(os.environ.get("HMS_PROGRESS")),
        )
    )
    _say(str(report))


class _Stop(BaseException):
    """SIGTERM or SIGINT while ``hms serve`` is still starting (a BaseException, as
    KeyboardInterrupt is, so no ``except Exception`` on the way swallows it)."""


def _stop_starting(number: int, frame: FrameType | None) -> None:
    from hms.http.serving import STOP_SIGNALS

    # Once: the stop is under way, and make sends its child a second SIGTERM of its own.
    for each in STOP_SIGNALS:
        signal.signal(each, _ignore)
    raise _Stop(number)


def _ignore(number: int, frame: FrameType | None) -> None:
    pass


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Start, serve until SIGTERM or Ctrl-C, stop gracefully; exit 0 after either signal.

    A signal during the start stops it too (exit 0: stopping is what was asked). Exiting
    through Python, never by the default handlers, lets ``atexit`` stop the embedded
    PostgreSQL. Once stopping, later signals change nothing: ``make`` sends its child a second
    SIGTERM of its own, and a late one must not turn a clean stop into a traceback or an error
    status (for ``make run``, an ``Error 143`` line).
    """
    global _notes
    settings = settings.with_(
        **{
            name: value
            for name in ("host", "port", "workers")
            if (value := getattr(args, name, None)) is not None
        }
    )
    if args.verbose:
        settings = settings.with_(log_level="debug")
    if settings.log_format == "json":  # every line the server writes is then one JSON object
        logging.config.dictConfig(logs.config(settings.log_level, "json"))
        _notes = logging.getLogger("hms.serve").info
    from hms.http import serving

    taken = serving.address_in_use(settings.host, settings.port)
    if taken is not None:
        _say(
            f"cannot listen on {settings.host}:{settings.port} ({taken}): is another server"
            " running there? Choose another port with --port or HMS_PORT"
        )
        return 1
    # Only the main thread gets signals (and may set handlers): called from another (a test,
    # an embedding program), the server's own handling is all there is, as uvicorn's is.
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        for number in serving.STOP_SIGNALS:
            signal.signal(number, _stop_starting)
    listening = threading.Event()
    try:
        return _serve(settings, listening)
    except _Stop as stop:
        if not listening.is_set():
            _say(f"{signal.Signals(stop.args[0]).name}: stopped before serving")
        return 0
    finally:
        if main_thread:
            for number in serving.STOP_SIGNALS:
                signal.signal(number, _ignore)


def _reachable(settings: Settings) -> Settings | None:
    """Resolved settings once PostgreSQL answers; None (said why) if it never did."""
    settings = resolve(settings, announce=True)
    assert settings.database_url is not None
    if not wait_for_database(
        settings.database_url, settings.db_startup_timeout, settings.db_connect_timeout
    ):
        return None
    return settings


def _reachable_while_importing(settings: Settings) -> Settings | None:
    """``_reachable``; for the embedded default, in a helper thread while this one imports the
    app.

    Starting the embedded PostgreSQL is mostly waiting for ``pg_ctl`` (~0.3 s; ``initdb`` on a
    first start, ~1 s) and importing the app is ~0.5 s of CPU, so side by side a start takes
    the longer of the two, not their sum. The helper imports nothing (``embedded.load`` runs
    here first): two threads importing at once can meet in a circular import and see a module
    half initialised. A signal stops this thread only; leaving the ``with`` waits for the
    helper (seconds at most), so the server it started is stopped at exit like any other. A
    database of one's own is waited for here, where Ctrl-C ends the wait at once.
    """
    from concurrent.futures import ThreadPoolExecutor

    from hms.persistence import embedded

    if settings.database_url is not None:
        return _reachable(settings)
    embedded.load()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hms-database") as helper:
        reaching = helper.submit(_reachable, settings)
        import hms.app  # noqa: F401  (the import is the point: the app is built later)

        return reaching.result()


def _serve(settings: Settings, listening: threading.Event) -> int:
    """``hms serve`` up to its stop; ``listening`` is set once the socket is bound."""
    from hms.http import serving

    ready = _reachable_while_importing(settings)
    if ready is None:
        return 1
    settings = ready
    assert settings.database_url is not None
    if not _schema_ready(settings.database_url, settings.is_dev):
        return 1
    rows = asyncio.run(_hospital_rows(settings.database_url))
    if not rows and settings.is_dev:
        _say(f"First start: loading demo data ({DEMO_HOSPITALS} hospitals) ...")
        _seed(settings.database_url, DEMO_HOSPITALS, DEMO_PATIENTS, rng_seed=1)
        rows = asyncio.run(_hospital_rows(settings.database_url))
    workers = settings.workers
    if settings.redis_url is None:
        _say("HMS_REDIS_URL not set: caches live in process memory (single process only)")
        if workers > 1:
            _say(f"HMS_WORKERS={workers} needs Redis to share state; serving with 1 worker")
            workers = 1

    def announce() -> None:
        """Said once the socket is bound: everything here works the moment it is printed."""
        for line in _welcome(settings, rows):
            _say(line)
        listening.set()

    from hms.observability import tracing

    tracing.configure()
    if workers == 1:
        from hms.app import create_app

        app = create_app(settings)
        tune_gc()
        if serving.run(app, settings, on_listening=announce):
            return 0
        _say("the server did not start (the reason is above)")
        return 1
    assert settings.database_url is not None
    os.environ["HMS_DATABASE_URL"] = settings.database_url
    os.environ["HMS_LOG_LEVEL"] = settings.log_level
    if settings.jwt_secret is not None:
        os.environ["HMS_JWT_SECRET"] = settings.jwt_secret
    if settings.phi_keys:
        os.environ["HMS_PHI_KEY"] = ",".join(
            base64.urlsafe_b64encode(key).decode() for key in settings.phi_keys
        )
    # Every worker writes its metrics where /metrics, whichever worker answers, reads all.
    shared = tempfile.mkdtemp(prefix="hms-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
    try:
        serving.run_workers("hms.cli:app_factory", settings, workers, on_listening=announce)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    return 0


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _welcome(settings: Settings, rows: list[tuple[str, uuid.UUID]]) -> list[str]:
    """What ``hms serve`` says once it listens: where, and in dev a token per hospital."""
    from hms.security.tokens import issue

    base = _url(settings.host, settings.port)
    lines = [f"GraphQL: {base}/graphql"]
    if settings.is_dev and settings.jwt_secret is not None and settings.oidc_issuer is None:
        if settings.graphiql:
            lines[0] += "  (open it in a browser for GraphiQL, a demo token filled in)"
        for slug, hospital_id in rows:
            token = issue(
                settings.jwt_secret, subject="demo", hospital_id=hospital_id, roles=["clinician"]
            )
            lines.append(f"Demo token ({slug}, clinician): {token}")
    lines.append(f"listening on {base} (Ctrl-C to stop)")
    return lines


def app_factory() -> object:
    """For uvicorn workers (``--workers N``): the parent resolved everything into the env."""
    from hms.app import create_app
    from hms.http import serving
    from hms.observability import tracing

    settings = Settings.from_env()
    tracing.configure()
    app = create_app(settings)
    tune_gc()
    serving.drain_on_signals(app.state.lifecycle, settings.shutdown_delay)
    return app


def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    settings = resolve(settings)
    assert settings.database_url is not None
    migrate.upgrade(settings.database_url, args.revision)
    _say(f"database upgraded to {args.revision}")
    return 0


def cmd_seed(settings: Settings, args: argparse.Namespace) -> int:
    settings = resolve(settings)
    assert settings.database_url is not None
    migrate.upgrade(settings.database_url)
    _seed(settings.database_url, args.hospitals, args.patients, args.rng_seed)
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from hms.security.tokens import issue

    if settings.oidc_issuer is not None:
        _say(
            "HMS_OIDC_ISSUER is set: the server takes tokens from that provider only, and"
            " hms token prints development tokens signed with HMS_JWT_SECRET"
        )
        return 2
    settings = resolve(settings)
    assert settings.database_url is not None
    assert settings.jwt_secret is not None
    ttl = dt.timedelta(hours=args.ttl_hours)
    if ttl > settings.max_token_lifetime:
        hours = settings.max_token_lifetime.total_seconds() / 3600
        _say(
            f"--ttl-hours may be at most {hours:g} (HMS_MAX_TOKEN_LIFETIME_HOURS):"
            " the server refuses longer-lived tokens"
        )
        return 2
    found = dict(asyncio.run(_hospital_rows(settings.database_url)))
    if args.hospital not in found:
        known = ", ".join(sorted(found)) or "none (run hms seed)"
        _say(f"unknown hospital {args.hospital!r}; known: {known}")
        return 2
    try:
        token = issue(
            settings.jwt_secret,
            subject=args.subject,
            hospital_id=found[args.hospital],
            roles=args.role,
            ttl=ttl,
            client=args.client,
        )
    except ValueError as error:
        _say(str(error))
        return 2
    print(token)
    return 0


def _validator(settings: Settings) -> tuple[Any, Any]:
    from hms.documents import DocumentCache
    from hms.limits.inputs import InputLimitsRule
    from hms.schema import schema

    documents = DocumentCache(
        schema._schema,
        size=100_000,
        introspection=settings.introspection,
        max_tokens=settings.max_query_tokens,
        extra_rules=(InputLimitsRule,),
    )
    return schema._schema, documents


def cmd_documents_push(settings: Settings, args: argparse.Namespace) -> int:
    from hms.documents.manifest import check
    from hms.persistence import documents

    try:
        manifest = json.loads(Path(args.manifest).read_text())
        graphql_schema, validator = _validator(settings)
        checked = check(manifest, graphql_schema, validator)
    except (OSError, ValueError) as error:
        _say(f"cannot read {args.manifest}: {error}")
        return 2
    if checked.problems:
        _say(f"refused {args.manifest}: {len(checked.problems)} bad document(s), none pushed")
        for problem in checked.problems:
            _say(f"  {problem}")
        return 2
    settings = resolve(settings)
    assert settings.database_url is not None
    migrate.upgrade(settings.database_url)
    new = asyncio.run(
        _with_engine(
            settings.database_url,
            lambda engine: documents.push(engine, checked.entries, args.client, args.app_version),
        )
    )
    _say(f"pushed {len(checked.entries)} document(s) from {args.manifest}: {new} new")
    return 0


def cmd_documents_list(settings: Settings, args: argparse.Namespace) -> int:
    from hms.persistence import documents

    settings = resolve(settings)
    assert settings.database_url is not None
    rows = asyncio.run(_with_engine(settings.database_url, documents.listed))
    for row in rows:
        state = "retired" if row.retired_at else "active"
        clients = ",".join(row.client_names) or "-"
        versions = ",".join(row.app_versions) or "-"
        print(
            f"{row.id}  {state:7}  {row.operation_type:8}  {row.operation_name or '-'}"
            f"  clients={clients}  versions={versions}"
        )
    return 0


def cmd_documents_retire(settings: Settings, args: argparse.Namespace) -> int:
    from hms.documents.persisted import RECHECK_SECONDS, TRUSTED_TTL_SECONDS
    from hms.persistence import documents

    settings = resolve(settings)
    assert settings.database_url is not None
    when = dt.datetime.now(dt.UTC)
    found = asyncio.run(
        _with_engine(settings.database_url, lambda engine: documents.retire(engine, args.id, when))
    )
    if not found:
        _say(f"no active document {args.id}")
        return 2
    _say(f"retired {args.id}")
    if settings.redis_url is not None:
        try:
            asyncio.run(_forget_cached(settings.redis_url, args.id))
        except Exception as error:  # the copies expire on their own; say when
            _say(
                f"could not reach the cache ({type(error).__name__}): workers stop serving it"
                f" within {TRUSTED_TTL_SECONDS + RECHECK_SECONDS:.0f} s"
            )
            return 0
    _say(f"workers stop serving it within {RECHECK_SECONDS:.0f} s")
    return 0


async def _forget_cached(redis_url: str, document: str) -> None:
    from hms.cache import keys
    from hms.cache.backend import RedisCache
    from hms.documents.persisted import PREFIX

    cache = RedisCache.from_url(redis_url)
    try:
        await cache.delete(keys.trusted_document(document.removeprefix(PREFIX)))
    finally:
        await cache.close()


def cmd_documents_check(settings: Settings, args: argparse.Namespace) -> int:
    """Every active registered document still valid against this server's schema."""
    from hms.persistence import documents

    settings = resolve(settings)
    assert settings.database_url is not None
    rows = asyncio.run(_with_engine(settings.database_url, documents.listed))
    _, validator = _validator(settings)
    broken = []
    for row in rows:
        if row.retired_at is None:
            document = validator.get(row.body)
            if document.errors:
                broken.append(
                    f"  {row.id} ({row.operation_name or 'anonymous'}):"
                    f" {document.errors[0].message}"
                )
    if broken:
        _say(f"{len(broken)} registered document(s) no longer valid against the schema:")
        for line in broken:
            _say(line)
        return 2
    _say(f"{sum(row.retired_at is None for row in rows)} active document(s), all valid")
    return 0


async def _with_engine(database_url: str, work: Any) -> Any:
    engine = create_async_engine(async_url(database_url))
    try:
        return await work(engine)
    finally:
        await engine.dispose()


def _in_hospital(settings: Settings, slug: str) -> tuple[str, uuid.UUID] | None:
    """The resolved database URL and the id of hospital ``slug``; None (said why) if unknown."""
    url = resolve(settings).database_url
    assert url is not None
    found = dict(asyncio.run(_hospital_rows(url)))
    if slug not in found:
        known = ", ".join(sorted(found)) or "none (run hms seed)"
        _say(f"unknown hospital {slug!r}; known: {known}")
        return None
    return url, found[slug]


_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{1,62}")


def cmd_hospitals_add(settings: Settings, args: argparse.Namespace) -> int:
    """Create a hospital (a tenant): how a production database gets its first one."""
    import zoneinfo

    if not _SLUG.fullmatch(args.slug):
        _say("--slug must be 2 to 63 lowercase letters, digits and dashes, starting alphanumeric")
        return 2
    name = args.name.strip()
    if not 0 < len(name) <= 200:
        _say("--name must be 1 to 200 characters")
        return 2
    try:
        zoneinfo.ZoneInfo(args.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        _say(f"--timezone must be an IANA time zone such as Europe/Berlin, got {args.timezone!r}")
        return 2
    url = resolve(settings).database_url
    assert url is not None
    row = asyncio.run(
        _with_engine(
            url, lambda engine: hospitals.create_as_owner(engine, args.slug, name, args.timezone)
        )
    )
    if row is None:
        _say(f"a hospital with the slug {args.slug!r} exists already")
        return 1
    print(row.id)
    _say(f"hospital {row.slug} created; give people roles in it with: hms members add")
    return 0


def cmd_hospitals_list(settings: Settings, args: argparse.Namespace) -> int:
    url = resolve(settings).database_url
    assert url is not None
    engine_rows = asyncio.run(_with_engine(url, hospitals.all_as_owner))
    for row in engine_rows:
        print(f"{row.slug}\t{row.id}\t{row.timezone}\t{row.name}")
    return 0


def cmd_members_add(settings: Settings, args: argparse.Namespace) -> int:
    from hms.persistence import memberships

    found = _in_hospital(settings, args.hospital)
    if found is None:
        return 2
    url, hospital_id = found
    if not 0 < len(args.subject) <= 255:
        _say("--subject must be 1 to 255 characters (the token's sub claim)")
        return 2
    asyncio.run(
        _with_engine(
            url,
            lambda engine: memberships.put_as_owner(engine, hospital_id, args.subject, args.role),
        )
    )
    _say(
        f"{args.subject} acts in {args.hospital} as {', '.join(sorted(set(args.role)))}"
        " (running servers see it at their next request; at most"
        f" {settings.membership_ttl:g} s while one cannot hear the database)"
    )
    return 0


def cmd_members_remove(settings: Settings, args: argparse.Namespace) -> int:
    from hms.persistence import memberships

    found = _in_hospital(settings, args.hospital)
    if found is None:
        return 2
    url, hospital_id = found
    removed = asyncio.run(
        _with_engine(
            url,
            lambda engine: memberships.remove_as_owner(engine, hospital_id, args.subject),
        )
    )
    if not removed:
        _say(f"{args.subject} is not a member of {args.hospital}")
        return 1
    _say(
        f"{args.subject} no longer acts in {args.hospital}"
        " (running servers refuse it at their next request; at most"
        f" {settings.membership_ttl:g} s while one cannot hear the database)"
    )
    return 0


def cmd_members_list(settings: Settings, args: argparse.Namespace) -> int:
    from hms.persistence import memberships

    found = _in_hospital(settings, args.hospital)
    if found is None:
        return 2
    url, hospital_id = found
    rows = asyncio.run(
        _with_engine(
            url,
            lambda engine: memberships.all_as_owner(engine, hospital_id),
        )
    )
    for row in rows:
        print(f"{row.subject}\t{','.join(row.roles)}")
    return 0


def cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    from hms.persistence import audit

    settings = resolve(settings)
    assert settings.database_url is not None
    rows = asyncio.run(_hospital_rows(settings.database_url))
    if args.hospital is not None:
        rows = [(slug, pk) for slug, pk in rows if slug == args.hospital]
        if not rows:
            _say(f"unknown hospital {args.hospital!r}")
            return 2

    anchors: dict[uuid.UUID, list[tuple[int, bytes]]] = {}
    if args.anchors is not None:
        try:
            anchors = _read_anchors(Path(args.anchors))
        except (OSError, ValueError) as error:
            _say(f"cannot read anchors from {args.anchors}: {error}")
            return 2

    async def check(engine: Any) -> list[tuple[str, int, list[str]]]:
        await audit.seal(engine)  # events of the last moment join the chain first
        results = []
        for slug, hospital_id in rows:
            checked, problems = await audit.verify(
                engine, hospital_id, anchors.get(hospital_id, [])
            )
            results.append((slug, checked, problems))
        return results

    broken = 0
    for slug, checked, problems in asyncio.run(_with_engine(settings.database_url, check)):
        if problems:
            broken += 1
            _say(f"{slug}: {checked} events, the chain is BROKEN:")
            for problem in problems:
                _say(f"  {problem}")
        else:
            _say(f"{slug}: {checked} events, chain intact")
    return 1 if broken else 0


def _read_anchors(path: Path) -> dict[uuid.UUID, list[tuple[int, bytes]]]:
    """The anchors of a file ``hms audit anchor`` wrote (JSON lines), by hospital id."""
    anchors: dict[uuid.UUID, list[tuple[int, bytes]]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            hospital_id = uuid.UUID(item["hospitalId"])
            seq, digest = int(item["seq"]), bytes.fromhex(item["hash"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"line {number} is not an anchor ({type(error).__name__})") from None
        if seq > 0:
            anchors.setdefault(hospital_id, []).append((seq, digest))
    return anchors


def cmd_audit_anchor(settings: Settings, args: argparse.Namespace) -> int:
    from hms.persistence import audit

    settings = resolve(settings)
    assert settings.database_url is not None
    slugs = {pk: slug for slug, pk in asyncio.run(_hospital_rows(settings.database_url))}
    if args.hospital is not None and args.hospital not in slugs.values():
        _say(f"unknown hospital {args.hospital!r}")
        return 2

    async def take(engine: Any) -> list[tuple[uuid.UUID, int, bytes]]:
        await audit.seal(engine)
        return await audit.heads(engine)

    at = dt.datetime.now(dt.UTC).isoformat()
    for hospital_id, seq, digest in asyncio.run(_with_engine(settings.database_url, take)):
        slug = slugs.get(hospital_id)
        if slug is None or args.hospital not in (None, slug):
            continue
        anchor = {"hospital": slug, "hospitalId": str(hospital_id), "seq": seq}
        print(json.dumps(anchor | {"hash": digest.hex(), "at": at}))
    return 0


def cmd_export_schema(settings: Settings, args: argparse.Namespace) -> int:
    from hms.schema import schema

    text = schema.as_str() + "\n"
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        _say(f"wrote {args.output}")
    return 0


def cmd_policy(settings: Settings, args: argparse.Namespace) -> int:
    from hms.schema import schema

    sys.stdout.write(policy.markdown(policy.classes_from_sdl(schema.as_str())))
    return 0


def _schema_ready(database_url: str, dev: bool) -> bool:
    """In dev bring the schema up to date; in production refuse an older one (said why): there
    the schema moves in its own step (the deploy's migration Job), never as a side effect of a
    pod starting, and no process runs against a schema older than its release."""
    if dev:
        migrate.upgrade(database_url)
        return True
    if migrate.pending(database_url):
        _say("The database is not at this release's schema: run 'hms db upgrade' first")
        return False
    return True


def _ready_database(settings: Settings) -> Settings | None:
    """``_reachable``, then ``_schema_ready``; None (said why) when it cannot be used."""
    ready = _reachable(settings)
    if ready is None or ready.database_url is None:
        return None
    return ready if _schema_ready(ready.database_url, ready.is_dev) else None


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Run background jobs until SIGTERM or Ctrl-C (then finish or release running ones)."""
    from hms.jobs import worker

    if args.verbose:
        settings = settings.with_(log_level="debug")
    logging.config.dictConfig(logs.config(settings.log_level, settings.log_format))
    ready = _ready_database(settings)
    if ready is None:
        return 1

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await worker.run(ready, stop)

    asyncio.run(main())
    return 0


async def _on_queue(settings: Settings, work: Any) -> Any:
    """One connection for ``hms jobs``: the direct URL when there is one; past a transaction
    pooler, without prepared statements that would outlive their transaction."""
    url = settings.database_listen_url or settings.database_url
    assert url is not None
    pooled = settings.database_pooler != "none" and settings.database_listen_url is None
    conn = await asyncpg.connect(asyncpg_dsn(url), statement_cache_size=0 if pooled else 100)
    try:
        return await work(conn)
    finally:
        await conn.close()


def cmd_jobs_list(settings: Settings, args: argparse.Namespace) -> int:
    from hms.jobs import admin

    rows = asyncio.run(
        _on_queue(
            resolve(settings), lambda conn: admin.listing(conn, args.status, args.queue, args.limit)
        )
    )
    print("id\tqueue\tstatus\tpriority\tretries\trun_after\thospital\tlast_error")
    for row in rows:
        print(
            f"{row['id']}\t{row['queue']}\t{row['status']}\t{row['priority']}\t"
            f"{row['attempts']}\t{row['execute_after'].isoformat(timespec='seconds')}\t"
            f"{row['hospital']}\t{row['last_error'] or ''}"
        )
    return 0


def cmd_jobs_stats(settings: Settings, args: argparse.Namespace) -> int:
    from hms.jobs import admin

    table = asyncio.run(
        _on_queue(resolve(settings), lambda conn: admin.stats(conn, args.window * 60))
    )
    if args.json:
        print(json.dumps(table))
        return 0
    columns = list(table[0])
    print("\t".join(columns))
    for entry in table:
        print("\t".join(str(entry[c]) for c in columns))
    return 0


def cmd_jobs_retry(settings: Settings, args: argparse.Namespace) -> int:
    from hms.jobs import admin

    requeued, refused = asyncio.run(
        _on_queue(resolve(settings), lambda conn: admin.retry(conn, args.ids))
    )
    for job_id in requeued:
        print(f"job {job_id} queued again")
    for job_id in refused:
        _say(f"job {job_id} is not a dead letter (missing, waiting or running): left as it is")
    return 1 if refused else 0


def cmd_hospitals_webhook(settings: Settings, args: argparse.Namespace) -> int:
    """Where a hospital's reminders are POSTed; prints the signing secret when it is new."""
    from hms.jobs import notify
    from hms.persistence import jobs

    if not re.fullmatch(r"https?://[^\s]+", args.url) or len(args.url) > 2000:
        _say("--url must be an http:// or https:// URL")
        return 2
    found = _in_hospital(settings, args.hospital)
    if found is None:
        return 1
    url, hospital_id = found

    async def work(engine: Any) -> str:
        current = await jobs.webhook_of(engine, hospital_id)
        secret = (
            current.secret
            if current is not None and not args.rotate_secret
            else notify.new_secret()
        )
        await jobs.set_webhook(engine, hospital_id, args.url, secret)
        return "" if current is not None and not args.rotate_secret else secret

    new_secret = asyncio.run(_with_engine(url, work))
    if new_secret:
        print(new_secret)
        _say("the signing secret above is shown once: give it to the receiver")
    else:
        _say("webhook URL updated; the signing secret is unchanged (--rotate-secret for a new one)")
    return 0


def _number(text: str, low: int, high: int, what: str) -> int:
    """An argparse type: an integer in ``[low, high]``, else an error naming ``what`` it is."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{what}, got {text!r}")
    return value


def _port(text: str) -> int:
    return _number(text, 1, 65535, "a port is a number from 1 to 65535")


def _workers(text: str) -> int:
    return _number(text, 1, 1024, "a number of processes from 1 to 1024")


def _host(text: str) -> str:
    if not text or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"an IP address or host name, got {text!r}")
    return text


def _command(
    commands: Any, name: str, summary: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand: ``summary`` is its line in the parent's --help, ``description`` (default:
    the summary) heads its own."""
    command: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=description or summary[:1].upper() + summary[1:] + "."
    )
    return command


def _verbose(command: argparse.ArgumentParser) -> None:
    # SUPPRESS: unless given here, the top-level -v (or its default) stands.
    command.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log at debug level (HMS_LOG_LEVEL=debug)",
    )


def parser() -> argparse.ArgumentParser:
    """The ``hms`` command line. Every command and argument has a help text
    (tests/unit/test_cli_help.py walks them all)."""
    root = argparse.ArgumentParser(
        prog="hms",
        description="HMS, a GraphQL hospital data platform. Settings come from HMS_*"
        " environment variables (README: Configuration); without HMS_DATABASE_URL every command"
        " uses the embedded PostgreSQL in HMS_DATA_DIR.",
        epilog="'hms COMMAND --help' describes a command and its arguments.",
    )
    root.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _command(
        commands,
        "serve",
        "run the GraphQL server",
        "Run the GraphQL server: migrate (dev), load demo data into an empty database (dev),"
        " then serve until SIGTERM or Ctrl-C, which stop it gracefully (exit status 0). The"
        " URL, the demo tokens and 'listening on' are printed once the socket is bound. Flags"
        " override the HMS_* variables.",
    )
    serve.add_argument(
        "--host",
        type=_host,
        metavar="ADDRESS",
        help="listen address (default: HMS_HOST, else 127.0.0.1)",
    )
    serve.add_argument(
        "--port", type=_port, help="listen port, 1-65535 (default: HMS_PORT, else 8000)"
    )
    serve.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help="server processes (default: HMS_WORKERS, else 1); more than one needs HMS_REDIS_URL",
    )
    _verbose(serve)
    serve.set_defaults(run=cmd_serve)

    db = _command(commands, "db", "the database schema (migrations)")
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = _command(db_commands, "upgrade", "apply migrations")
    upgrade.add_argument(
        "revision", nargs="?", default="head", help="the revision to reach (default: head)"
    )
    upgrade.set_defaults(run=cmd_db_upgrade)

    seed = _command(
        commands,
        "seed",
        "generate and load synthetic data with COPY",
        "Add hospitals of synthetic patients, practitioners, appointments and encounters"
        " (binary COPY; needs a role that bypasses row-level security, e.g. a superuser).",
    )
    seed.add_argument(
        "--hospitals", type=int, default=DEMO_HOSPITALS, help="hospitals to add (default: 2)"
    )
    seed.add_argument(
        "--patients", type=int, default=DEMO_PATIENTS, help="patients per hospital (default: 300)"
    )
    seed.add_argument("--rng-seed", type=int, default=1, help="same seed, same data (default: 1)")
    seed.set_defaults(run=cmd_seed)

    token = _command(
        commands,
        "token",
        "print a signed demo token",
        "Print a token signed with the dev secret the server uses (HMS_JWT_SECRET, else the"
        " per-install one in HMS_DATA_DIR), to send as 'Authorization: Bearer TOKEN'.",
    )
    token.add_argument("--hospital", required=True, help="hospital slug (hms hospitals list)")
    token.add_argument(
        "--role",
        action="append",
        required=True,
        choices=policy.ROLES,
        help="repeat for more roles (SECURITY.md: what each reads and writes)",
    )
    token.add_argument("--subject", default="demo", help="the user id, sub claim (default: demo)")
    token.add_argument(
        "--ttl-hours",
        type=float,
        default=12.0,
        help="lifetime in hours (default: 12; at most HMS_MAX_TOKEN_LIFETIME_HOURS)",
    )
    token.add_argument(
        "--client", help="the client application (azp claim): its HMS_DOCUMENT_MODES entry applies"
    )
    token.set_defaults(run=cmd_token)

    docs = _command(commands, "documents", "the registry of trusted documents")
    doc_commands = docs.add_subparsers(dest="documents_command", required=True, metavar="COMMAND")
    push = _command(
        doc_commands,
        "push",
        "register an Apollo or Relay manifest",
        "Register the documents of an Apollo persisted-query manifest or a Relay"
        " persisted_queries.json: every hash recomputed, every document validated, all or"
        " nothing.",
    )
    push.add_argument("manifest", help="Apollo persisted query manifest or Relay map (JSON)")
    push.add_argument("--client", help="client application name (apollographql-client-name)")
    push.add_argument("--app-version", help="the app version that ships these documents")
    push.set_defaults(run=cmd_documents_push)
    _command(doc_commands, "list", "every registered document").set_defaults(run=cmd_documents_list)
    retire = _command(
        doc_commands,
        "retire",
        "stop serving a document by id",
        "Stop serving a registered document, everywhere within 60 s.",
    )
    retire.add_argument("id", help="the document id, sha256:<hex>")
    retire.set_defaults(run=cmd_documents_retire)
    _command(
        doc_commands, "check", "fail if an active document no longer validates against the schema"
    ).set_defaults(run=cmd_documents_check)

    export = _command(commands, "export-schema", "write the GraphQL SDL")
    export.add_argument(
        "output",
        nargs="?",
        default="schema.graphql",
        help="path, or - for stdout (default: schema.graphql)",
    )
    export.set_defaults(run=cmd_export_schema)

    _command(
        commands, "policy", "print which role reads which field class and runs which mutation"
    ).set_defaults(run=cmd_policy)

    audit_parser = _command(commands, "audit", "the audit trail's hash chains")
    audit_commands = audit_parser.add_subparsers(
        dest="audit_command", required=True, metavar="COMMAND"
    )
    verify = _command(
        audit_commands,
        "verify",
        "recompute each hospital's hash chain; exit 1 if any was tampered with",
    )
    verify.add_argument("--hospital", help="one hospital's slug (default: every hospital)")
    verify.add_argument(
        "--anchors",
        metavar="FILE",
        help="heads recorded earlier by 'hms audit anchor': each chain must still pass them",
    )
    verify.set_defaults(run=cmd_audit_verify)
    anchor = _command(
        audit_commands,
        "anchor",
        "print each hospital's chain head as a JSON line, to keep outside the database",
    )
    anchor.add_argument("--hospital", help="one hospital's slug (default: every hospital)")
    anchor.set_defaults(run=cmd_audit_anchor)

    hospital_parser = _command(commands, "hospitals", "the hospitals (tenants)")
    hospital_commands = hospital_parser.add_subparsers(
        dest="hospitals_command", required=True, metavar="COMMAND"
    )
    create = _command(hospital_commands, "add", "create a hospital; prints its id")
    create.add_argument("--slug", required=True, help="short unique name, e.g. st-mary")
    create.add_argument("--name", required=True, help="the hospital's name")
    create.add_argument("--timezone", default="UTC", help="IANA time zone (default UTC)")
    create.set_defaults(run=cmd_hospitals_add)
    _command(hospital_commands, "list", "every hospital: slug, id, time zone, name").set_defaults(
        run=cmd_hospitals_list
    )
    webhook = _command(
        hospital_commands,
        "webhook",
        "where the hospital's reminders are delivered (signed webhooks)",
        "Set the URL the hospital's appointment reminders are POSTed to (Standard Webhooks"
        " signatures). A new signing secret is printed once.",
    )
    webhook.add_argument("--hospital", required=True, help="hospital slug")
    webhook.add_argument("--url", required=True, help="the receiver's http(s) URL")
    webhook.add_argument(
        "--rotate-secret", action="store_true", help="make a new signing secret and print it"
    )
    webhook.set_defaults(run=cmd_hospitals_webhook)

    worker = _command(
        commands,
        "worker",
        "run background jobs (reminders, clinical processing, reports)",
        "Run background jobs until SIGTERM or Ctrl-C, then finish or release the running ones"
        " (docs/jobs.md). Settings: the HMS_JOB_* and HMS_WORKER_* variables.",
    )
    _verbose(worker)
    worker.set_defaults(run=cmd_worker)
    jobs_parser = _command(commands, "jobs", "the background job queue")
    jobs_commands = jobs_parser.add_subparsers(
        dest="jobs_command", required=True, metavar="COMMAND"
    )
    jobs_list = _command(jobs_commands, "list", "jobs in the queue, highest priority first")
    jobs_list.add_argument(
        "--status", choices=("queued", "picked", "failed"), help="only jobs in this state"
    )
    jobs_list.add_argument(
        "--queue", choices=("reminders", "clinical", "reports"), help="only this queue's jobs"
    )
    jobs_list.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    jobs_list.set_defaults(run=cmd_jobs_list)
    jobs_stats = _command(
        jobs_commands,
        "stats",
        "per queue: waiting, scheduled, running, dead, oldest wait, recent outcomes",
    )
    jobs_stats.add_argument(
        "--window", type=float, default=60.0, help="minutes of outcomes to count (default 60)"
    )
    jobs_stats.add_argument("--json", action="store_true", help="one JSON array, not a table")
    jobs_stats.set_defaults(run=cmd_jobs_stats)
    jobs_retry = _command(jobs_commands, "retry", "put dead-letter jobs back in their queue")
    jobs_retry.add_argument(
        "ids", type=int, nargs="+", metavar="ID", help="dead-letter job ids (hms jobs list)"
    )
    jobs_retry.set_defaults(run=cmd_jobs_retry)

    members = _command(
        commands, "members", "who acts in a hospital with which roles (for OIDC tokens)"
    )
    member_commands = members.add_subparsers(
        dest="members_command", required=True, metavar="COMMAND"
    )
    add = _command(member_commands, "add", "grant a user roles in a hospital (replaces)")
    add.add_argument("--hospital", required=True, help="hospital slug")
    add.add_argument("--subject", required=True, help="the user's sub claim")
    add.add_argument(
        "--role",
        action="append",
        required=True,
        choices=policy.ROLES,
        help="repeat for more roles; the set replaces the user's roles here",
    )
    add.set_defaults(run=cmd_members_add)
    remove = _command(member_commands, "remove", "end a user's membership")
    remove.add_argument("--hospital", required=True, help="hospital slug")
    remove.add_argument("--subject", required=True, help="the user's sub claim")
    remove.set_defaults(run=cmd_members_remove)
    listing = _command(member_commands, "list", "a hospital's members and their roles")
    listing.add_argument("--hospital", required=True, help="hospital slug")
    listing.set_defaults(run=cmd_members_list)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        _say(f"configuration error: {error}")
        return 2
    code: int = args.run(settings, args)
    return code


if __name__ == "__main__":
    sys.exit(main())
