"""Settings from the environment: one place, every field with its variable, default and meaning.

Business code never reads ``os.environ``; it is handed a :class:`Settings`. Each field ``x`` is
read from ``CONVOY_X``, or from the file named by ``CONVOY_X_FILE`` (a mounted secret; trailing
whitespace stripped) when ``CONVOY_X`` is not set. ``convoy config`` prints the table that
README.md shows.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
from pathlib import Path
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

PREFIX = "CONVOY_"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # --- where things are --------------------------------------------------------------------
    data_dir: str = ".convoy-data"
    """Folder for the embedded PostgreSQL, NATS store, mail sink and generated secrets."""
    database_url: str = ""
    """PostgreSQL URL; empty: start the embedded PostgreSQL (pgserver) in the data folder."""
    nats_url: str = ""
    """NATS URL(s), comma separated; empty: start the embedded nats-server with JetStream."""
    nats_user: str = ""
    """This process's NATS user, its role (api, convoys, milestones, reminders, notifier, admin); set by `convoy up`."""
    nats_password: str = ""
    """Password of CONVOY_NATS_USER (CONVOY_NATS_PASSWORD_FILE: a mounted secret); `convoy up` generates its own."""
    nats_tls_ca: str = ""
    """CA file (PEM) the NATS servers' certificates are checked against (tls:// URLs); empty: the system's CAs."""
    nats_tls_cert: str = ""
    """Client certificate file (PEM) for NATS servers that verify clients (mutual TLS); empty: none."""
    nats_tls_key: str = ""
    """Private key file (PEM) of CONVOY_NATS_TLS_CERT."""
    smtp_url: str = ""
    """smtp://[user:pass@]host:port, upgraded by STARTTLS whenever the server offers it (?starttls=true: required;
    ?cafile=PATH: a private CA), smtps:// for implicit TLS; a password is never sent without TLS. Empty: the local
    mail sink."""
    namespace: str = "convoy"
    """Prefix of every NATS subject and stream; lets installations share a NATS cluster."""
    public_url: str = "http://127.0.0.1:8000"
    """Base URL people reach Convoy under, used in links in emails; unset: http://CONVOY_HTTP_HOST:CONVOY_HTTP_PORT."""

    # --- HTTP edge ---------------------------------------------------------------------------
    http_host: str = "127.0.0.1"
    """Interface the API listens on."""
    http_port: Annotated[int, Meta(ge=1, le=65535)] = 8000
    """Port the API listens on."""
    secret_key: str = ""
    """Key that signs links and reply addresses that work without signing in; empty: CONVOY_DATA_DIR/secret-key."""
    admin_token: str = ""
    """Bearer token of the centre's admin; empty: generated once into CONVOY_DATA_DIR/admin-token."""
    actor_signing_key: str = ""
    """Ed25519 private key (PEM or base64) signing whom a request acts for (the API and CLI only); empty: generated."""
    actor_public_key: str = ""
    """Ed25519 public key (PEM or base64) services check actor claims with; empty: from CONVOY_ACTOR_SIGNING_KEY."""
    reply_signing_key: str = ""
    """Ed25519 private key (PEM or base64) the notifier signs an emailed reply's sender with; empty: generated."""
    reply_public_key: str = ""
    """Ed25519 public key (PEM or base64) services check reply claims with; empty: from CONVOY_REPLY_SIGNING_KEY."""
    actor_claim_seconds: Annotated[float, Meta(ge=5, le=600)] = 60.0
    """How long a signed actor claim is valid; a service refuses a request for a person whose claim is older."""
    notifier_box_key: str = ""
    """The notifier's private X25519 key (base64): opens what producers seal for it on the bus (recipients and
    one-time links of emails); during a rotation NEW,OLD. Only the notifier needs it; empty:
    CONVOY_DATA_DIR/notifier-box-key (generated)."""
    notifier_box_public_key: str = ""
    """The notifier's public X25519 key (base64): services seal email recipients and links with it; empty:
    derived from CONVOY_NOTIFIER_BOX_KEY. Producers (services/convoys) need only this one."""
    ops_port: Annotated[int, Meta(ge=0, le=65535)] = 0
    """Every process answers /live and /metrics (back-end services /health too) over HTTP on this port; 0: none."""
    dev_mail_viewer: bool = False
    """Serve /dev/mail (mail the local sink kept); `convoy up` sets it with its sink; only on a loopback HTTP host."""

    # --- sign-in and sessions ----------------------------------------------------------------
    sign_in_link_minutes: Annotated[int, Meta(ge=1, le=60)] = 15
    """How long an emailed sign-in link works (once)."""
    invitation_days: Annotated[int, Meta(ge=1, le=90)] = 14
    """How long an invitation link works (once)."""
    session_days: Annotated[int, Meta(ge=1, le=90)] = 14
    """Lifetime of a browser session (cookie)."""
    access_token_minutes: Annotated[int, Meta(ge=5, le=1440)] = 60
    """Lifetime of the bearer access token a sign-in gives API clients."""
    max_sessions_per_person: Annotated[int, Meta(ge=1, le=1000)] = 20
    """Bound on live sessions per person; signing in beyond it ends the oldest."""
    sign_in_requests_per_hour: Annotated[int, Meta(ge=1, le=1000)] = 5
    """Sign-in links one address may ask for per hour."""
    invitations_per_day: Annotated[int, Meta(ge=1, le=1000)] = 5
    """Invitations one address may receive per day."""
    client_requests_per_minute: Annotated[int, Meta(ge=1, le=100000)] = 30
    """Sign-in, invitation and join requests one client (IP address) may make per minute."""
    anonymous_requests_per_client_per_day: Annotated[int, Meta(ge=1, le=100000)] = 20
    """Anonymous join requests and formation-pool requests one client (IP address) may send per day (per API
    process, like the per-minute limit); above it they are refused with 429."""
    pool_retention_days: Annotated[int, Meta(ge=1, le=3650)] = 180
    """How long a contact waits in the formation pool (from the check) before it is deleted unasked."""
    api_token_days: Annotated[int, Meta(ge=1, le=3650)] = 90
    """Default lifetime of a personal API token (its creator may choose another, up to CONVOY_API_TOKEN_MAX_DAYS)."""
    api_token_max_days: Annotated[int, Meta(ge=1, le=3650)] = 365
    """Longest lifetime a personal API token may be given."""
    token_cache_s: Annotated[float, Meta(ge=0, le=3600)] = 10.0
    """How long the API keeps a resolved token; a revoked token keeps working in another API replica this long."""
    version_max_age_s: Annotated[float, Meta(ge=0, le=3600)] = 30.0
    """How long the API answers 304 from a convoy version not heard of since (bounds a lost notice); 0: no 304s."""
    recipients_max_age_s: Annotated[float, Meta(ge=0, le=3600)] = 600.0
    """How long the notifier reuses a convoy's recipients unchanged (bounds a lost change notice); 0: never."""

    # --- embedded servers --------------------------------------------------------------------
    embedded_nats_port: Annotated[int, Meta(ge=1, le=65535)] = 14222
    """Port of the embedded nats-server (not 4222, so a system NATS is left alone)."""
    embedded_smtp_port: Annotated[int, Meta(ge=1, le=65535)] = 2525
    """Port of the embedded mail sink (messages kept as a Maildir in CONVOY_DATA_DIR/mail)."""

    # --- bounded waits (seconds) -------------------------------------------------------------
    db_pool_min: Annotated[int, Meta(ge=0)] = 1
    """Connections each service keeps open."""
    db_pool_max: Annotated[int, Meta(ge=1)] = 10
    """Upper bound of each service's connection pool."""
    db_acquire_timeout: Annotated[float, Meta(gt=0)] = 5.0
    """Longest wait for a pooled connection before the request fails with 503."""
    db_command_timeout: Annotated[float, Meta(gt=0)] = 10.0
    """Longest a single SQL statement may run."""
    nats_request_timeout: Annotated[float, Meta(gt=0)] = 5.0
    """Longest wait for a NATS request/reply answer or a JetStream publish ack."""
    smtp_timeout: Annotated[float, Meta(gt=0)] = 15.0
    """Longest wait for any SMTP step (connect, each command)."""
    shutdown_timeout: Annotated[float, Meta(gt=0)] = 10.0
    """How long a process may drain in-flight work after SIGTERM before it is killed."""

    # --- event processing --------------------------------------------------------------------
    consumer_max_deliver: Annotated[int, Meta(ge=1, le=100)] = 6
    """Attempts at one event before it goes to the dead-letter subject."""
    consumer_backoff: str = "1,5,30,120,600"
    """Seconds to wait before each redelivery after a failure (last value repeats)."""
    stream_replicas: Annotated[int, Meta(ge=1, le=5)] = 1
    """JetStream replicas of Convoy's streams (3 on a NATS cluster)."""
    dead_letter_days: Annotated[float, Meta(gt=0, le=3650)] = 14.0
    """How long the dead-letter stream keeps an event a consumer gave up on (it may hold an address or a link)."""

    # --- chat channels (Slack, Microsoft Teams) -----------------------------------------------
    slack_webhook_hosts: str = "hooks.slack.com"
    """Hosts a convoy's Slack webhook URL may point to (comma separated); anything else is refused."""
    teams_webhook_hosts: str = "*.logic.azure.com,*.powerplatform.com,*.webhook.office.com"
    """Hosts a convoy's Microsoft Teams (Workflows) webhook URL may point to (comma separated, `*.` for
    any subdomain); anything else is refused."""

    # --- scheduler (services/reminders) -------------------------------------------------------
    reminders_tick_seconds: Annotated[float, Meta(ge=0.5, le=300)] = 5.0
    """How often the leading reminders process looks for prompts, nudges and digests that are due."""
    reminders_manual_clock: bool = False
    """Tests only: no ticking by itself; ticks arrive over NATS with the time to assume."""

    # --- email -------------------------------------------------------------------------------
    mail_from: str = "Convoy <convoy@localhost>"
    """Sender of every email."""
    smtp_pool_size: Annotated[int, Meta(ge=1, le=64)] = 4
    """SMTP connections the notifier keeps and reuses."""
    inbound_smtp_host: str = "127.0.0.1"
    """Interface the notifier's inbound SMTP server (email replies to prompts and reports) listens on."""
    inbound_smtp_port: Annotated[int, Meta(ge=0, le=65535)] = 2526
    """Port of the inbound SMTP server for email replies; 0: no inbound server and no Reply-To addresses."""
    reply_domain: str = "reply.convoy.localhost"
    """Domain of the Reply-To addresses (reply+TOKEN@domain, signed); its MX must lead to the inbound server."""
    inbound_sender_auth: Literal["dkim", "trusted-relay", "dkim-or-relay", "off"] = "dkim"
    """Who may file a reply: dkim: a valid DKIM signature of the From domain (relaxed alignment); trusted-relay:
    dkim=pass or dmarc=pass for the From domain in the topmost Authentication-Results header of
    CONVOY_INBOUND_TRUSTED_AUTHSERV_ID; dkim-or-relay: either; off: the From header is believed (local
    development only: refused unless the inbound server listens on loopback). Anything else is refused with 550."""
    inbound_trusted_authserv_id: str = ""
    """The authserv-id your receiving mail server (MX) writes into Authentication-Results (e.g. mx.example.org);
    with it, the inbound server must be reachable from that relay only (it cannot tell a header forged by a
    direct sender)."""
    inbound_tls_cert_file: str = ""
    """PEM certificate (chain) the inbound SMTP server offers STARTTLS with; empty: no STARTTLS."""
    inbound_tls_key_file: str = ""
    """PEM private key of CONVOY_INBOUND_TLS_CERT_FILE."""
    inbound_require_starttls: bool = False
    """Refuse mail over a connection that did not STARTTLS first (needs a certificate)."""
    feedback_window_s: Annotated[float, Meta(ge=0.1, le=86400)] = 600.0
    """Comments, replies and kudos on a report are collected this long (from the first) into one email per person."""
    comment_edit_window_s: Annotated[float, Meta(ge=0, le=86400)] = 900.0
    """How long after posting a person may edit or delete their own comment (0: never)."""

    # --- first look --------------------------------------------------------------------------
    demo: bool = True
    """`convoy up` on a new data folder (with the local mail sink) loads a demo convoy with a few weeks of history."""

    # --- processes --------------------------------------------------------------------------
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    """Event loop of the API and service processes: uvloop (faster I/O) or the standard library's asyncio."""

    # --- logs --------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level that is logged."""
    log_format: Literal["json", "console"] = "json"
    """json: one JSON object per line (for machines); console: coloured, for people."""

    # --- metrics and traces ------------------------------------------------------------------
    metrics_sample_seconds: Annotated[float, Meta(ge=0.1, le=3600)] = 15.0
    """How often a service samples its consumers' lag (JetStream consumer info) and outbox backlog for /metrics."""
    otel_exporter: Literal["", "console", "otlp", "memory"] = ""
    """OpenTelemetry traces: empty: off (no-op tracer); console: print spans; otlp: OTLP/HTTP; memory: tests only."""
    otel_endpoint: str = ""
    """OTLP/HTTP traces URL (e.g. http://collector:4318/v1/traces); empty: OTEL_EXPORTER_OTLP_* or localhost:4318."""
    otel_sample_ratio: Annotated[float, Meta(ge=0, le=1)] = 1.0
    """Share of new traces recorded; a request that carries a sampled `traceparent` is always followed."""

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def backoff_seconds(self) -> list[float]:
        return [float(x) for x in self.consumer_backoff.split(",") if x.strip()] or [1.0]

    def with_(self, **changes: object) -> Settings:
        """A copy with ``changes``; a public URL that followed host and port keeps following them."""
        if "public_url" not in changes and self.public_url == default_public_url(self.http_host, self.http_port):
            host = str(changes.get("http_host", self.http_host))
            port = int(str(changes.get("http_port", self.http_port)))
            changes["public_url"] = default_public_url(host, port)
        return msgspec.structs.replace(self, **changes)


def default_public_url(host: str, port: int) -> str:
    """Where the API listens, as a browser would address it (a wildcard interface: this machine)."""
    if host in ("", "0.0.0.0", "::", "[::]"):  # noqa: S104 — not binding, naming
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def is_loopback(host: str) -> bool:
    """Whether a server listening on ``host`` is reachable from this machine only."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SettingsError(ValueError):
    pass


def refuse_open_edge(settings: Settings) -> None:
    """Refuse settings that open the edge: the mail viewer shows everyone's sign-in links, unauthenticated;
    email replies believed on their From header alone could be filed by anyone who can reach the server."""
    if (
        settings.inbound_smtp_port
        and settings.inbound_sender_auth == "off"
        and not is_loopback(settings.inbound_smtp_host)
    ):
        raise SettingsError(
            f"CONVOY_INBOUND_SENDER_AUTH=off but CONVOY_INBOUND_SMTP_HOST={settings.inbound_smtp_host} is not a"
            " loopback address: anyone who can reach the server could file replies as anyone. Use dkim,"
            " trusted-relay or dkim-or-relay, or listen on 127.0.0.1."
        )
    if settings.inbound_sender_auth in ("trusted-relay", "dkim-or-relay") and not settings.inbound_trusted_authserv_id:
        raise SettingsError(
            f"CONVOY_INBOUND_SENDER_AUTH={settings.inbound_sender_auth} needs CONVOY_INBOUND_TRUSTED_AUTHSERV_ID (the"
            " authserv-id your receiving mail server writes into Authentication-Results)."
        )
    if bool(settings.inbound_tls_cert_file) != bool(settings.inbound_tls_key_file):
        raise SettingsError("CONVOY_INBOUND_TLS_CERT_FILE and CONVOY_INBOUND_TLS_KEY_FILE go together")
    if settings.inbound_require_starttls and not settings.inbound_tls_cert_file:
        raise SettingsError("CONVOY_INBOUND_REQUIRE_STARTTLS needs CONVOY_INBOUND_TLS_CERT_FILE and _KEY_FILE")
    if settings.dev_mail_viewer and not is_loopback(settings.http_host):
        raise SettingsError(
            f"CONVOY_DEV_MAIL_VIEWER is on but CONVOY_HTTP_HOST={settings.http_host} is not a loopback "
            "address: /dev/mail would show every sign-in link to anyone who can reach the API. Listen on "
            "127.0.0.1, or turn the mail viewer off (CONVOY_DEV_MAIL_VIEWER=false)."
        )


def load(environ: dict[str, str] | None = None) -> Settings:
    """Read settings from ``environ`` (default: the process environment); bad values name the variable."""
    env = os.environ if environ is None else environ
    raw: dict[str, str] = {}
    for name in Settings.__struct_fields__:
        variable = PREFIX + name.upper()
        if variable in env:
            raw[name] = env[variable]
        elif variable + "_FILE" in env:
            try:
                raw[name] = Path(env[variable + "_FILE"]).read_text(encoding="utf-8").rstrip()
            except OSError as exc:
                raise SettingsError(f"{variable}_FILE: cannot read {env[variable + '_FILE']}: {exc.strerror}") from exc
    try:
        settings = msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        field = str(exc).rsplit("`$.", 1)[-1].rstrip("`")
        raise SettingsError(f"{PREFIX}{field.upper()}: {exc}") from exc
    if not raw.get("public_url"):  # unset or empty: links in emails point where the API listens
        settings = msgspec.structs.replace(
            settings, public_url=default_public_url(settings.http_host, settings.http_port)
        )
    refuse_open_edge(settings)
    return settings


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) for every setting, read from the field docstrings."""
    import ast
    import inspect

    source = inspect.getsource(Settings)
    tree = ast.parse(source)
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            docs[node.target.id] = str(nxt.value.value)
    defaults = Settings()
    return [
        (PREFIX + name.upper(), repr(getattr(defaults, name)), docs.get(name, ""))
        for name in Settings.__struct_fields__
    ]
