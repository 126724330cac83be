"""One Settings object, read from ``HMS_*`` environment variables once and passed down.

Nothing below this module reads the environment: the CLI builds ``Settings.from_env()`` at the
edge and every other piece receives it. Unset database or Redis URLs mean "use the embedded
default" (a private PostgreSQL and an in-process cache).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import platformdirs

Env = Literal["dev", "prod"]
Execution = Literal["compiled", "interpreted"]
#: What sits between the app and PostgreSQL: nothing, or PgBouncer in transaction mode (any
#: version), which lends a client a server connection for one transaction at a time.
Pooler = Literal["none", "pgbouncer"]
POOLERS: tuple[Pooler, ...] = ("none", "pgbouncer")
#: How a client application may send documents (see hms.documents.persisted.Mode).
DOCUMENT_MODES = ("open", "apq", "trusted", "audit")
#: RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32


#: Items in a page when the request gives neither ``first`` nor ``last`` (DESIGN §5).
DEFAULT_PAGE_SIZE = 20
#: Whether cost limits refuse (``enforce``) or only report (``measure``).
COST_MODES = ("measure", "enforce")
#: A cost budget: (capacity in points, points refilled a second).
Budget = tuple[float, float]


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def _pairs(env: Mapping[str, str], name: str, allowed: tuple[str, ...] | None) -> dict[str, str]:
    """``a=x,b=y`` as a dict; with ``allowed``, every value must be one of them."""
    pairs = {}
    for item in env.get(name, "").split(","):
        if not item.strip():
            continue
        key, _, value = item.partition("=")
        if not key.strip() or not value.strip() or (allowed and value.strip() not in allowed):
            expected = f" (values: {', '.join(allowed)})" if allowed else ""
            raise SettingsError(
                f"{name} must be name=value pairs separated by commas{expected},"
                f" got {item.strip()!r}"
            )
        pairs[key.strip()] = value.strip()
    return pairs


def _budget(name: str, raw: str, max_cost: int) -> Budget:
    """``capacity/per-second``, e.g. ``1000/50``; the capacity must fit the largest operation."""
    capacity, _, rate = raw.partition("/")
    try:
        budget = (float(capacity), float(rate))
    except ValueError:
        raise SettingsError(
            f"{name}: a budget is capacity/per-second, e.g. 1000/50, got {raw!r}"
        ) from None
    if not (budget[0] > 0 and budget[1] > 0):
        raise SettingsError(f"{name}: capacity and refill rate must be positive, got {raw!r}")
    if budget[0] < max_cost:
        raise SettingsError(
            f"{name}: a capacity of {budget[0]:g} is below HMS_MAX_COST ({max_cost}):"
            " such callers could never run their largest operations"
        )
    return budget


#: Signature algorithms an OIDC provider may use: asymmetric only (no ``none``, no HS*).
OIDC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

#: Where a front end in development runs (Vite's dev server).
DEV_ORIGINS = ("http://localhost:5173", "http://127.0.0.1:5173")


def _origins(env: Mapping[str, str], default: tuple[str, ...]) -> tuple[str, ...]:
    """``HMS_CORS_ORIGINS``: comma-separated ``scheme://host[:port]``; empty allows none."""
    raw = env.get("HMS_CORS_ORIGINS")
    if raw is None:
        return default
    origins = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        parsed = urllib.parse.urlsplit(item)
        if (
            parsed.scheme not in ("http", "https")
            or not parsed.hostname
            or parsed.path not in ("", "/")
            or parsed.query
            or parsed.fragment
            or parsed.username
        ):
            raise SettingsError(
                f"HMS_CORS_ORIGINS: {item!r} is not an origin like https://app.example.org"
                " (a wildcard is not accepted: list each origin)"
            )
        origins.append(f"{parsed.scheme}://{parsed.netloc}")
    return tuple(origins)


def phi_keys(raw: str | None) -> tuple[bytes, ...]:
    """``HMS_PHI_KEY``: base64 AES-256 keys separated by commas; the first encrypts, every one
    decrypts (so a key is rotated by putting the new one first)."""
    keys = []
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        try:
            key = base64.b64decode(item.strip() + "=" * (-len(item.strip()) % 4), altchars=b"-_")
        except ValueError:
            key = b""
        if len(key) != 32:
            raise SettingsError(
                "HMS_PHI_KEY takes base64 keys of 32 bytes separated by commas"
                " (make one with: python -c 'import os,base64;"
                " print(base64.urlsafe_b64encode(os.urandom(32)).decode())')"
            )
        keys.append(key)
    return tuple(keys)


LOG_LEVELS = ("debug", "info", "warning", "error")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float, minimum: float = 0.1) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not value >= minimum:  # also refuses nan
        raise SettingsError(f"{name} must be at least {minimum} seconds, got {raw}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be a boolean (true/false), got {raw!r}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    env: Env = "dev"
    database_url: str | None = None
    database_replica_urls: tuple[str, ...] = ()
    #: Where a worker LISTENs for announcements (membership changes): a direct (or session-mode)
    #: connection when ``database_url`` names a transaction pooler, in which a LISTEN does not
    #: last. None: ``database_url``.
    database_listen_url: str | None = None
    #: ``pgbouncer``: the database URLs name a transaction pooler, so nothing may outlive a
    #: transaction on a server connection: no named prepared statements (statement caches off)
    #: and no startup parameter PgBouncer refuses (``jit`` is set per transaction instead).
    database_pooler: Pooler = "none"
    #: How often each worker checks its replicas, how far (WAL bytes) one may trail the primary
    #: and stay in rotation, and how long a user's reads follow their last write.
    replica_check_seconds: float = 1.0
    replica_max_lag_bytes: int = 16 * 1024 * 1024
    read_your_writes_seconds: float = 60.0
    redis_url: str | None = None
    jwt_secret: str | None = None
    #: Keys that encrypt national ids (``HMS_PHI_KEY``); none: national ids cannot be stored.
    phi_keys: tuple[bytes, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    data_dir: Path = dataclasses.field(
        default_factory=lambda: Path(platformdirs.user_data_dir("hms"))
    )
    db_pool_size: int = 20
    db_max_overflow: int = 10
    max_body_bytes: int = 1_048_576
    max_page_size: int = 100
    default_page_size: int = DEFAULT_PAGE_SIZE
    graphiql: bool = True
    introspection: bool = True
    #: Browser origins allowed to call the API (CORS); none by default in production.
    cors_origins: tuple[str, ...] = ()
    document_cache_size: int = 1024
    max_appointment_hours: int = 8
    max_query_tokens: int = 5000
    idempotency_ttl: dt.timedelta = dt.timedelta(hours=24)
    #: Deadlines of a whole request, enforced by the app and by PostgreSQL.
    read_timeout: float = 10.0
    write_timeout: float = 15.0
    db_connect_timeout: float = 5.0
    #: How long ``hms serve`` waits for PostgreSQL to accept connections at start.
    db_startup_timeout: float = 60.0
    #: On SIGTERM, ``hms serve`` first waits ``shutdown_delay`` seconds while still serving (only
    #: ``/readyz`` answers 503, so load balancers stop sending traffic), then stops accepting
    #: connections and gives in-flight requests up to ``shutdown_timeout`` whole seconds (uvicorn's
    #: unit) before cutting them. Both together stay below Kubernetes' default
    #: terminationGracePeriodSeconds (30).
    shutdown_delay: float = 0.0
    shutdown_timeout: int = 25
    #: Log level of every logger, and the lines' form: ``json`` (one object per line, for a log
    #: pipeline; the default in prod) or ``text`` (for a terminal; the default in dev).
    log_level: str = "info"
    #: Compress answers (brotli or gzip); off when an ingress in front compresses already.
    compression: bool = True
    #: Keep answers of reference-only documents (practitioners, the hospital) in the two-level
    #: cache for as long as their Cache-Control allows.
    response_cache: bool = True
    log_format: str = "text"
    #: Tokens whose ``exp`` is further than this after ``iat`` are refused.
    max_token_lifetime: dt.timedelta = dt.timedelta(hours=24)
    #: ``compiled``: queries the compiler covers run as one SQL statement; ``interpreted``: all
    #: run on graphql-core with DataLoaders (the compiled path falls back to it per request).
    execution: Execution = "compiled"
    #: Document mode of clients not named in ``document_modes`` (open in dev, apq in prod).
    document_mode: str = "open"
    #: Client application name (``apollographql-client-name``) -> its document mode.
    document_modes: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Automatic registrations one caller may make per minute (mode apq/audit), and the largest
    #: document registered automatically.
    apq_registrations_per_minute: int = 60
    apq_max_bytes: int = 32_768
    #: Caps on one operation, checked before it runs (hms.limits.gate).
    max_cost: int = 1000
    max_depth: int = 12
    max_aliases: int = 30
    #: Each root connection may scan its hospital's table once for its page and once for its
    #: count, whatever its cost (~65-75 ms on the medium bench profile); ten keep the most
    #: expensive admitted document under 1 s of database CPU (bench/cost.py).
    max_root_fields: int = 10
    #: ``enforce`` or ``measure``, for clients not named in ``cost_modes``.
    cost_mode: str = "enforce"
    cost_modes: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Role -> budget of each caller with it (the largest of a caller's roles; ``default`` for
    #: callers with none listed), and the budget of a whole hospital.
    cost_budgets: dict[str, Budget] = dataclasses.field(
        default_factory=lambda: {"default": (1000.0, 50.0)}
    )
    hospital_cost_budget: Budget = (20_000.0, 1000.0)
    #: Callers with one of these roles are admitted when the budget store is down.
    cost_fail_open_roles: frozenset[str] = frozenset({"clinician"})
    #: OpenID Connect: with issuer and audience set, tokens must come from that provider
    #: (hms.security.oidc) and roles from the hospital's memberships in the database.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_algorithms: tuple[str, ...] = ("RS256", "ES256")
    oidc_leeway: float = 30.0
    #: The least time between two fetches of the provider's keys (an unknown ``kid`` asks for
    #: one); a provider publishes new keys before it signs with them.
    oidc_jwks_cooldown: float = 30.0
    #: How long a worker trusts a membership it looked up (a change shows within this).
    membership_ttl: float = 30.0
    #: How often each worker seals new audit events into their hospital's hash chain.
    audit_seal_seconds: float = 1.0
    #: How long before a booked appointment's start its reminder is sent (hms.jobs); with
    #: ``reminders`` off, bookings enqueue none (a deployment that sends none elsewhere).
    reminder_lead: dt.timedelta = dt.timedelta(hours=24)
    reminders: bool = True
    #: ``hms worker``: jobs of each queue one worker process runs at once, the tries a job
    #: gets before it is held as failed (a dead letter, ``hms jobs retry``), and the port its
    #: Prometheus metrics are served on (0: none).
    job_concurrency: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"reminders": 8, "clinical": 4, "reports": 1}
    )
    job_max_attempts: int = 5
    #: Days a report (its CSV) is kept after it was asked for; 0 keeps reports for ever.
    report_retention_days: int = 30
    #: Jobs one worker process runs at once across its queues, highest priority first (0: only
    #: the queues' limits apply). PgQueuer takes jobs in batches of half this, so at least 2.
    worker_concurrency: int = 0
    #: Retry delay after a failed try: ``job_retry_base * 2**tries`` capped at ``job_retry_max``
    #: seconds, with jitter (half of it random); a job's database work must end within
    #: ``job_timeout`` seconds; a job whose worker stopped beating for ``job_heartbeat_timeout``
    #: seconds (killed, partitioned) is taken by another worker.
    job_retry_base: float = 10.0
    job_retry_max: float = 900.0
    job_timeout: float = 60.0
    job_heartbeat_timeout: float = 30.0
    #: A worker wakes on the queue's NOTIFY; it also looks for due jobs (a retry's backoff
    #: ending, a reminder's time coming) at least this often.
    job_poll_seconds: float = 2.0
    worker_metrics_port: int = 9464

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        mode = env.get("HMS_ENV", "dev") or "dev"
        if mode not in ("dev", "prod"):
            raise SettingsError(f"HMS_ENV must be 'dev' or 'prod', got {mode!r}")
        is_dev = mode == "dev"
        secret = env.get("HMS_JWT_SECRET") or None
        issuer = env.get("HMS_OIDC_ISSUER") or None
        audience = env.get("HMS_OIDC_AUDIENCE") or None
        if (issuer is None) != (audience is None):
            raise SettingsError("HMS_OIDC_ISSUER and HMS_OIDC_AUDIENCE go together")
        if not is_dev and not secret and issuer is None:
            raise SettingsError(
                "HMS_JWT_SECRET (or HMS_OIDC_ISSUER and HMS_OIDC_AUDIENCE) is required"
                " when HMS_ENV=prod"
            )
        algorithms = tuple(
            a.strip() for a in (env.get("HMS_OIDC_ALGORITHMS") or "RS256,ES256").split(",")
        )
        if not algorithms or not set(algorithms) <= OIDC_ALGORITHMS:
            raise SettingsError(
                "HMS_OIDC_ALGORITHMS takes asymmetric algorithms only: "
                + ", ".join(sorted(OIDC_ALGORITHMS))
            )
        leeway = _seconds(env, "HMS_OIDC_LEEWAY", 30.0, minimum=0)
        if leeway > 60:
            raise SettingsError("HMS_OIDC_LEEWAY must be at most 60 seconds")
        if secret is not None and len(secret.encode()) < MIN_SECRET_BYTES:
            raise SettingsError(
                f"HMS_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes (HS256 key length)"
            )
        replicas = tuple(
            url.strip()
            for url in env.get("HMS_DATABASE_REPLICA_URLS", "").split(",")
            if url.strip()
        )
        execution = env.get("HMS_EXECUTION", "compiled") or "compiled"
        if execution not in ("compiled", "interpreted"):
            raise SettingsError(
                f"HMS_EXECUTION must be 'compiled' or 'interpreted', got {execution!r}"
            )
        document_mode = env.get("HMS_DOCUMENT_MODE") or ("open" if is_dev else "apq")
        if document_mode not in DOCUMENT_MODES:
            raise SettingsError(
                f"HMS_DOCUMENT_MODE must be one of {', '.join(DOCUMENT_MODES)},"
                f" got {document_mode!r}"
            )
        document_modes = {}
        for item in env.get("HMS_DOCUMENT_MODES", "").split(","):
            if not item.strip():
                continue
            client, _, mode = item.partition("=")
            if not client.strip() or mode.strip() not in DOCUMENT_MODES:
                raise SettingsError(
                    "HMS_DOCUMENT_MODES must be client=mode pairs separated by commas"
                    f" (modes: {', '.join(DOCUMENT_MODES)}), got {item.strip()!r}"
                )
            document_modes[client.strip()] = mode.strip()
        data_dir = env.get("HMS_DATA_DIR")
        pooler = _choice(env, "HMS_DATABASE_POOLER", "none", POOLERS)
        max_cost = _int(env, "HMS_MAX_COST", 1000, minimum=1)
        worker_concurrency = _int(env, "HMS_WORKER_CONCURRENCY", 0)
        if worker_concurrency == 1:
            raise SettingsError("HMS_WORKER_CONCURRENCY must be 0 (no cap) or at least 2")
        concurrency = {"reminders": 8, "clinical": 4, "reports": 1}
        for queue, raw in _pairs(env, "HMS_JOB_CONCURRENCY", None).items():
            if queue not in concurrency or not raw.isdigit() or int(raw) < 1:
                raise SettingsError(
                    "HMS_JOB_CONCURRENCY takes queue=N pairs (queues: "
                    f"{', '.join(concurrency)}; N at least 1), got {queue}={raw}"
                )
            concurrency[queue] = int(raw)
        cost_mode = env.get("HMS_COST_MODE") or "enforce"
        if cost_mode not in COST_MODES:
            raise SettingsError(f"HMS_COST_MODE must be measure or enforce, got {cost_mode!r}")
        cost_modes = _pairs(env, "HMS_COST_MODES", COST_MODES)
        budgets = {"default": (1000.0, 50.0)}
        for role, raw in _pairs(env, "HMS_COST_BUDGETS", None).items():
            budgets[role] = _budget("HMS_COST_BUDGETS", raw, max_cost)
        hospital_budget = _budget(
            "HMS_HOSPITAL_COST_BUDGET",
            env.get("HMS_HOSPITAL_COST_BUDGET") or "20000/1000",
            max_cost,
        )
        if budgets["default"][0] < max_cost:
            raise SettingsError(
                f"the default cost budget ({budgets['default'][0]:g}) is below HMS_MAX_COST"
                f" ({max_cost}): such callers could never run their largest operations"
            )
        fail_open = env.get("HMS_COST_FAIL_OPEN_ROLES")
        return cls(
            env="dev" if is_dev else "prod",
            database_url=env.get("HMS_DATABASE_URL") or None,
            database_replica_urls=replicas,
            database_listen_url=env.get("HMS_DATABASE_LISTEN_URL") or None,
            database_pooler="pgbouncer" if pooler == "pgbouncer" else "none",
            replica_check_seconds=_seconds(env, "HMS_REPLICA_CHECK_SECONDS", 1.0),
            replica_max_lag_bytes=_int(env, "HMS_REPLICA_MAX_LAG_BYTES", 16 * 1024 * 1024),
            read_your_writes_seconds=_seconds(env, "HMS_READ_YOUR_WRITES_SECONDS", 60.0),
            redis_url=env.get("HMS_REDIS_URL") or None,
            jwt_secret=secret,
            phi_keys=phi_keys(env.get("HMS_PHI_KEY")),
            host=env.get("HMS_HOST", "127.0.0.1") or "127.0.0.1",
            port=_int(env, "HMS_PORT", 8000, minimum=1, maximum=65535),
            workers=_int(env, "HMS_WORKERS", 1, minimum=1),
            data_dir=Path(data_dir) if data_dir else Path(platformdirs.user_data_dir("hms")),
            db_pool_size=_int(env, "HMS_DB_POOL_SIZE", 20, minimum=1),
            db_max_overflow=_int(env, "HMS_DB_MAX_OVERFLOW", 10),
            max_body_bytes=_int(env, "HMS_MAX_BODY_BYTES", 1_048_576, minimum=1024),
            max_query_tokens=_int(env, "HMS_MAX_QUERY_TOKENS", 5000, minimum=100),
            graphiql=_bool(env, "HMS_GRAPHIQL", is_dev),
            introspection=_bool(env, "HMS_INTROSPECTION", is_dev),
            cors_origins=_origins(env, DEV_ORIGINS if is_dev else ()),
            oidc_issuer=issuer,
            oidc_audience=audience,
            oidc_jwks_url=env.get("HMS_OIDC_JWKS_URL") or None,
            oidc_algorithms=algorithms,
            oidc_leeway=leeway,
            oidc_jwks_cooldown=_seconds(env, "HMS_OIDC_JWKS_COOLDOWN", 30.0, minimum=0),
            membership_ttl=_seconds(env, "HMS_MEMBERSHIP_TTL", 30.0, minimum=0),
            audit_seal_seconds=_seconds(env, "HMS_AUDIT_SEAL_SECONDS", 1.0),
            max_appointment_hours=_int(env, "HMS_MAX_APPOINTMENT_HOURS", 8, minimum=1),
            read_timeout=_seconds(env, "HMS_READ_TIMEOUT", 10.0),
            write_timeout=_seconds(env, "HMS_WRITE_TIMEOUT", 15.0),
            db_connect_timeout=_seconds(env, "HMS_DB_CONNECT_TIMEOUT", 5.0),
            db_startup_timeout=_seconds(env, "HMS_DB_STARTUP_TIMEOUT", 60.0, minimum=0),
            shutdown_delay=_seconds(env, "HMS_SHUTDOWN_DELAY", 0.0, minimum=0),
            shutdown_timeout=_int(env, "HMS_SHUTDOWN_TIMEOUT", 25, minimum=1),
            compression=_bool(env, "HMS_COMPRESSION", True),
            response_cache=_bool(env, "HMS_RESPONSE_CACHE", True),
            log_level=_choice(env, "HMS_LOG_LEVEL", "info", LOG_LEVELS),
            log_format=_choice(
                env, "HMS_LOG_FORMAT", "text" if is_dev else "json", ("json", "text")
            ),
            execution="compiled" if execution == "compiled" else "interpreted",
            document_mode=document_mode,
            document_modes=document_modes,
            apq_registrations_per_minute=_int(env, "HMS_APQ_REGISTRATIONS_PER_MINUTE", 60),
            apq_max_bytes=_int(env, "HMS_APQ_MAX_BYTES", 32_768, minimum=100),
            max_token_lifetime=dt.timedelta(
                hours=_seconds(env, "HMS_MAX_TOKEN_LIFETIME_HOURS", 24.0, minimum=0.01)
            ),
            max_cost=max_cost,
            reminder_lead=dt.timedelta(
                hours=_seconds(env, "HMS_REMINDER_LEAD_HOURS", 24.0, minimum=0)
            ),
            reminders=_bool(env, "HMS_REMINDERS", True),
            job_concurrency=concurrency,
            job_max_attempts=_int(env, "HMS_JOB_MAX_ATTEMPTS", 5, minimum=1),
            report_retention_days=_int(env, "HMS_REPORT_RETENTION_DAYS", 30),
            worker_concurrency=worker_concurrency,
            job_retry_base=_seconds(env, "HMS_JOB_RETRY_BASE_SECONDS", 10.0, minimum=0.01),
            job_retry_max=_seconds(env, "HMS_JOB_RETRY_MAX_SECONDS", 900.0, minimum=0.01),
            job_timeout=_seconds(env, "HMS_JOB_TIMEOUT", 60.0),
            job_heartbeat_timeout=_seconds(env, "HMS_JOB_HEARTBEAT_TIMEOUT", 30.0, minimum=1.0),
            job_poll_seconds=_seconds(env, "HMS_JOB_POLL_SECONDS", 2.0, minimum=0.05),
            worker_metrics_port=_int(env, "HMS_WORKER_METRICS_PORT", 9464),
            max_depth=_int(env, "HMS_MAX_DEPTH", 12, minimum=1),
            max_aliases=_int(env, "HMS_MAX_ALIASES", 30),
            max_root_fields=_int(env, "HMS_MAX_ROOT_FIELDS", 10, minimum=1),
            cost_mode=cost_mode,
            cost_modes=cost_modes,
            cost_budgets=budgets,
            hospital_cost_budget=hospital_budget,
            cost_fail_open_roles=frozenset(
                {"clinician"}
                if fail_open is None
                else {r.strip() for r in fail_open.split(",") if r.strip()}
            ),
        )

    def with_(self, **changes: object) -> Settings:
        """A copy with some fields replaced (the CLI resolves embedded defaults this way)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
