"""The moodsong web server: a page at ``/`` and a JSON API under ``/api``.

API (schema at ``/openapi.json``):

* ``POST /api/compose`` -- JSON body (:class:`ComposeBody`): compose from a prompt,
  valence/arousal or a quadrant. Answers ``202`` with ``{"id", "status", ...}``.
* ``POST /api/compose/voice`` -- multipart form: a WAV/FLAC/OGG recording in
  ``voice`` plus the same settings as form fields (and optionally a ``primer``).
* ``POST /api/compose/primer`` -- multipart form: a MIDI file to continue in
  ``primer`` plus the fields of the JSON body as form fields.
* ``GET /api/results/{id}`` -- status of a job (``queued``, ``running``, ``done``,
  ``failed``) with queue position and time estimate; when done, the emotion
  explanation, the plan (key, tempo, form, chords bar by bar), chords, key,
  tempo and file URLs.
* ``GET /api/results/{id}/{file}`` -- ``piece.mid``, ``piece.wav``, ``piece.png``
  or ``piece.musicxml`` (the lead sheet).
* ``GET /api/health`` -- queue and worker counts.

Safety: every input is validated (strict types, ranges, prompt length, upload
size, type and sample rate; keys, forms and instruments by the composer's own
parsers), bad input gets a 4xx with one clear ``detail``
message, result IDs are random and checked against a fixed pattern, files come
only from an allow-list, request bodies are size-capped and time-limited, each
client is rate-limited and has a bounded number of pending jobs, the ``Host``
header must be one this server answers to (DNS rebinding), state-changing
requests from a foreign ``Origin`` are refused, and CORS is off unless origins
are given. There is no authentication: this is a server for a local network
(docs/web.md, "Security model").
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import re
import shutil
import socket
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from moodsong.web.jobs import FILES, PRIMER_NAME, ComposerPool, Job, JobStore, MiB, own_results_dir

__all__ = ["create_app", "ComposeBody", "RateLimiter"]

log = logging.getLogger("moodsong.web")

MAX_PROMPT_CHARS = 500
MAX_BARS = 32
MAX_CANDIDATES = 8
MAX_JSON_BYTES = 16 * 1024
MAX_VOICE_SECONDS = 30.0
#: Longest texts of the song settings: a key ("F# minor"), a form ("A A' B A' C C' B A'"), two instrument names.
MAX_KEY_CHARS, MAX_FORM_CHARS, MAX_INSTRUMENT_CHARS = 16, 64, 100
#: Largest primer upload (bytes) and the longest primer (4/4 bars, notes); a 32-bar piano piece is ~20 KB.
MAX_PRIMER_BYTES = 256 * 1024
MAX_PRIMER_BARS, MAX_PRIMER_NOTES = 32, 20000
#: Sample rates (Hz) a recording may declare; anything else is refused before it is decoded.
MIN_VOICE_RATE, MAX_VOICE_RATE = 8000, 192000
#: Host names every server answers to; ``create_app(host=...)`` adds the address it is bound to.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
#: Bind addresses that mean "every interface": any IP literal and this machine's names are then valid hosts.
_WILDCARD_BINDS = ("", "0.0.0.0", "::")
_STATE_CHANGING = ("POST", "PUT", "PATCH", "DELETE")
#: Magic bytes of the recordings the voice endpoint takes.
_AUDIO_MAGIC = {b"RIFF": "wav", b"fLaC": "flac", b"OggS": "ogg"}
STATIC_DIR = Path(str(resources.files("moodsong") / "web" / "static"))


# -- request and response models ------------------------------------------------------


class Settings(BaseModel):
    """Settings shared by text/coordinate and voice requests.

    Types are strict: ``"bars": "4"`` and ``"bars": true`` are refused, not converted.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    bars: int = Field(16, ge=1, le=MAX_BARS, description="Length in 4/4 bars (new bars, after any primer).")
    tempo: float | None = Field(None, ge=40, le=220, allow_inf_nan=False,
                                description="Tempo in quarter notes per minute (default: chosen by the emotion).")
    instrument: int | str | None = Field(
        None, description="General MIDI names or program numbers, 'MELODY[,ACCOMPANIMENT]' (a program number "
                          "0..127 alone is accepted too; default: chosen by the emotion).",
        examples=["flute,acoustic grand piano", "40"])
    key: str | None = Field(None, min_length=1, max_length=MAX_KEY_CHARS,
                            description="Song model: the key, e.g. 'D minor', 'Bb major', 'F#m' (default: chosen by "
                                        "the emotion, or the primer's).", examples=["D minor"])
    form: str | None = Field(None, min_length=1, max_length=MAX_FORM_CHARS,
                             description="Song model: section letters, e.g. 'AABA' or \"A A' B A'\"; bars must split "
                                         "into equal phrases of 2-16 bars (default: by length).", examples=["AABA"])
    temperature: float | None = Field(None, ge=0.1, le=4.0, allow_inf_nan=False,
                                      description="Sampling temperature, where the composer supports it.")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Same seed and request, same piece.")
    candidates: int = Field(4, ge=1, le=MAX_CANDIDATES,
                            description="Pieces generated; the music-emotion estimator keeps the closest.")

    # The composer's own parsers check the song settings here, so a bad one is answered at once (422)
    # in the composer's words rather than failing the job later.

    @field_validator("instrument", mode="before")
    @classmethod
    def _instrument(cls, value):
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError("give General MIDI names or program numbers as text, e.g. 'flute,acoustic grand piano'")
        if isinstance(value, int) and not 0 <= value <= 127:
            raise ValueError("a General MIDI program is 0..127")
        text = str(value)
        if len(text) > MAX_INSTRUMENT_CHARS:
            raise ValueError(f"at most {MAX_INSTRUMENT_CHARS} characters")
        _composer_check(_parse_instruments, text)
        return text  # as text: the composer takes names and numbers alike

    @field_validator("key")
    @classmethod
    def _key(cls, value):
        if value is not None:
            from moodsong.song.model import parse_key

            _composer_check(parse_key, value)
        return value

    @model_validator(mode="after")
    def _form_fits(self):
        if self.form is not None:
            from moodsong.song.model import parse_form

            _composer_check(parse_form, self.form, self.bars)
        return self


def _parse_instruments(text: str):
    from moodsong.pipeline import parse_instruments

    return parse_instruments(text)


def _composer_check(parse, *args) -> None:
    """Run one of the composer's parsers; its error (one line) becomes the validation error."""
    from moodsong.errors import MoodsongError

    try:
        parse(*args)
    except MoodsongError as exc:
        # The messages are written for the command line; the API's fields have no dashes.
        raise ValueError(re.sub(r"\(try --bars (\d+)\)", r"(try \1 bars)", str(exc))) from None


class ComposeBody(Settings):
    """A compose request: exactly one of ``prompt``, ``valence``/``arousal`` or ``quadrant``."""

    prompt: str | None = Field(None, min_length=1, max_length=MAX_PROMPT_CHARS,
                               description="The feeling in words (English or Chinese).",
                               examples=["a song of hope and wonder"])
    valence: float | None = Field(None, ge=-1, le=1, allow_inf_nan=False,
                                  description="Unpleasant (-1) .. pleasant (+1).")
    arousal: float | None = Field(None, ge=-1, le=1, allow_inf_nan=False, description="Calm (-1) .. excited (+1).")
    quadrant: Literal[1, 2, 3, 4] | None = Field(None, description="1 happy, 2 tense, 3 sad, 4 calm.")

    @field_validator("quadrant", mode="before")
    @classmethod
    def _no_bool_quadrant(cls, value):
        if isinstance(value, bool):  # True == 1 would otherwise pass the literal check
            raise ValueError("Input should be 1, 2, 3 or 4")
        return value

    @model_validator(mode="after")
    def _one_source(self):
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("prompt is empty")
        sources = [self.prompt is not None, self.valence is not None or self.arousal is not None,
                   self.quadrant is not None]
        if sum(sources) != 1:
            raise ValueError("give exactly one of: prompt, valence/arousal, quadrant")
        return self


class JobAccepted(BaseModel):
    id: str
    status: str
    position: int
    status_url: str


class JobStatus(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    position: int = Field(description="Queued jobs ahead of this one.")
    elapsed_s: float = Field(description="Seconds since the job started running (0 while queued).")
    estimate_s: float = Field(description="Expected running time in seconds.")
    error: str | None = None
    result: dict | None = Field(None, description="When done: explanation, target, plan (song model: key, tempo_qpm, "
                                                  "form, sections, chords, bar_chords, instruments, primer_bars), "
                                                  "plan_followed, chords, key, tempo_qpm, duration_s, candidates, "
                                                  "and files (URLs of MIDI, audio, PNG and the MusicXML lead sheet).")


# -- rate limiting ---------------------------------------------------------------------


class RateLimiter:
    """Token bucket per client: ``per_minute`` requests, refilled smoothly; ``0`` turns it off."""

    def __init__(self, per_minute: float, burst: float | None = None, max_clients: int = 10000):
        self.rate = float(per_minute) / 60.0
        self.burst = float(burst if burst is not None else max(per_minute, 1))
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, client: str, now: float | None = None) -> float:
        """Take one token; returns 0 when allowed, else the seconds until the next token."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate
        if len(self._buckets) >= self.max_clients and client not in self._buckets:
            # Forget full buckets (clients idle long enough to be back at the burst).
            self._buckets = {k: v for k, v in self._buckets.items() if v[0] + (now - v[1]) * self.rate < self.burst}
        self._buckets[client] = (tokens - 1.0, now)
        return 0.0


# -- the guard: body caps, time limits, rate limits, headers ---------------------------


def _json_response(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _host_name(value: str) -> str:
    """The host part of a ``Host`` header or URL authority, lower case, without port or IPv6 brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostPolicy:
    """Which ``Host`` headers and ``Origin`` headers this server accepts.

    ``Host`` (DNS-rebinding defence): a page on ``evil.example`` whose name is
    re-pointed to this machine sends ``Host: evil.example``; only the names in
    ``allowed`` (plus every IP literal and this machine's own names when bound
    to all interfaces, which a rebinding attacker cannot use) are answered.
    ``"*"`` turns the check off.

    ``Origin`` (cross-site requests): a state-changing request that carries an
    ``Origin`` must come from this server's own origin (the same authority as
    its ``Host``), from a CORS origin, or from a host the operator named
    explicitly. Requests without ``Origin`` (curl, scripts) are not browsers'
    cross-site requests and pass; a browser that marks one ``Sec-Fetch-Site:
    cross-site`` is refused.
    """

    def __init__(self, allowed: list[str] | tuple[str, ...] = (), *, bind_host: str | None = None,
                 cors_origins: list[str] | tuple[str, ...] = ()):
        self.any_host = "*" in allowed
        self.explicit = {_host_name(h) for h in allowed if h != "*"}
        self.names = set(LOCAL_HOSTS) | self.explicit
        self.any_ip = False
        if bind_host is not None:
            if bind_host in _WILDCARD_BINDS:
                self.any_ip = True
                with contextlib.suppress(OSError):  # (no getfqdn: a DNS lookup could stall start-up)
                    me = socket.gethostname().lower()
                    self.names |= {me, f"{me}.local"}
            else:
                self.names.add(_host_name(bind_host))
        self.cors_origins = {o.rstrip("/").lower() for o in cors_origins}

    def host_ok(self, host: str | None) -> bool:
        if self.any_host:
            return True
        if not host:
            return False
        name = _host_name(host)
        return name in self.names or (self.any_ip and _is_ip(name))

    def origin_ok(self, origin: str | None, host: str | None, fetch_site: str | None) -> bool:
        if origin is None:
            return fetch_site not in ("cross-site", "same-site")
        origin = origin.strip().lower().rstrip("/")
        if origin in self.cors_origins:
            return True
        scheme, _, authority = origin.partition("://")
        if scheme not in ("http", "https") or not authority:
            return False  # "null" (sandboxed frames, file: pages) and anything odd
        if host and authority == host.strip().lower():
            return True
        return _host_name(authority) in self.explicit


class _Guard:
    """Pure ASGI middleware in front of every route.

    Checks ``Host`` and ``Origin``, applies the per-client API rate limit (every
    ``/api`` request and every state-changing request anywhere), checks the
    content type of the compose routes, reads the whole request body first
    (at most the route's cap, each chunk within ``body_timeout_s`` and all of it
    within ``body_deadline_s``), bounds the handling time, and adds security
    headers to every response. The compose rate limit is taken by the routes,
    once a request has passed validation.
    """

    def __init__(self, app, *, upload_caps: dict[str, int], json_cap: int, body_timeout_s: float,
                 body_deadline_s: float, request_timeout_s: float, api_limiter: RateLimiter, hosts: HostPolicy):
        self.app = app
        self.upload_caps, self.json_cap = upload_caps, json_cap
        self.body_timeout_s, self.body_deadline_s = body_timeout_s, body_deadline_s
        self.request_timeout_s = request_timeout_s
        self.api_limiter, self.hosts = api_limiter, hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope.get("path", ""), scope.get("method", "GET")
        client = (scope.get("client") or ("unknown", 0))[0]
        started = False

        async def send_with_headers(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers += [
                    (b"x-content-type-options", b"nosniff"),
                    (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"content-security-policy",
                     b"default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
                     b"style-src 'self'; script-src 'self'; object-src 'none'; frame-ancestors 'none'"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        async def reply(status: int, detail: str, headers: dict | None = None):
            await _json_response(status, detail, headers)(scope, receive, send_with_headers)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in (scope.get("headers") or [])}
        host = headers.get("host")
        if not self.hosts.host_ok(host):
            return await reply(400, "this server does not answer to that host name (see moodsong serve --allowed-host)")
        if method in _STATE_CHANGING and not self.hosts.origin_ok(headers.get("origin"), host,
                                                                   headers.get("sec-fetch-site")):
            return await reply(403, "requests from other sites are not accepted (see moodsong serve --cors-origin)")

        if path.startswith("/api/") or method not in ("GET", "HEAD", "OPTIONS"):
            wait = self.api_limiter.check(client)
            if wait:
                return await reply(429, f"too many requests; try again in {math.ceil(wait)} s",
                                   {"Retry-After": str(math.ceil(wait))})

        cap = self.upload_caps.get(path, self.json_cap)
        declared = headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > cap:
                    return await reply(413, f"request body too large (limit {cap} bytes)")
            except ValueError:
                return await reply(400, "bad Content-Length header")
        if method == "POST" and path in _CONTENT_TYPES:
            media = headers.get("content-type", "").split(";")[0].strip().lower()
            if media != _CONTENT_TYPES[path]:
                return await reply(415, f"Content-Type must be {_CONTENT_TYPES[path]}")

        # Buffer the body (bounded in size, per chunk and in total time), then hand it on in one piece.
        body = bytearray()
        if method in ("POST", "PUT", "PATCH"):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.body_deadline_s
            while True:
                left = deadline - loop.time()
                try:
                    if left <= 0:
                        raise asyncio.TimeoutError
                    message = await asyncio.wait_for(receive(), min(self.body_timeout_s, left))
                except asyncio.TimeoutError:
                    return await reply(408, "request body arrived too slowly")
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                if len(body) > cap:
                    return await reply(413, f"request body too large (limit {cap} bytes)")
                if not message.get("more_body", False):
                    break
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        if method == "GET":  # downloads may be slow on a phone; everything else answers at once
            return await self.app(scope, replay, send_with_headers)
        try:
            await asyncio.wait_for(self.app(scope, replay, send_with_headers), self.request_timeout_s)
        except asyncio.TimeoutError:
            if not started:
                await reply(504, "the server took too long to answer this request")


#: The media type each compose route takes; anything else is refused with 415 before the body is read.
_CONTENT_TYPES = {"/api/compose": "application/json", "/api/compose/voice": "multipart/form-data",
                  "/api/compose/primer": "multipart/form-data"}


# -- the application -------------------------------------------------------------------


def _validation_message(exc: RequestValidationError | ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body",))
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


def create_app(
    results_dir: str | Path | None = None,
    workers: int = 1,
    rate_limit: float = 12.0,
    *,
    api_rate_limit: float = 1200.0,
    max_age_s: float = 3600.0,
    max_queue: int = 64,
    max_pending_per_client: int = 4,
    job_timeout_s: float = 180.0,
    request_timeout_s: float = 30.0,
    body_timeout_s: float = 15.0,
    body_deadline_s: float = 30.0,
    max_upload_bytes: int = 4 * 1024 * 1024,
    max_disk_bytes: int = 2048 * MiB,
    min_free_bytes: int = 256 * MiB,
    cors_origins: list[str] | tuple[str, ...] = (),
    allowed_hosts: list[str] | tuple[str, ...] = (),
    host: str | None = None,
    model: str | None = None,
    warm_start: bool = True,
) -> FastAPI:
    """Build the moodsong web app.

    Parameters
    ----------
    results_dir : path, optional
        Where results are written (one folder per random ID); a fresh folder under
        ``<tmp>/moodsong-web-<uid>/`` when None (removed at shutdown, or by the next
        server's start-up after a crash). Nothing is written anywhere else.
    workers : int
        Composer processes; at most this many pieces are composed at once.
    rate_limit : float
        Compose requests per minute per client address (0: no limit).
    api_rate_limit : float
        All ``/api`` requests (status polls, downloads) per minute per client (0: no limit).
    max_age_s : float
        Seconds a finished result stays available.
    max_queue : int
        Jobs queued or running at once; more get ``503``.
    max_pending_per_client : int
        Jobs one client address may have queued or running (0: no own limit). The default, 4,
        takes 16 addresses to fill the default queue of 64.
    job_timeout_s : float
        Longest one composition may run, in seconds.
    request_timeout_s, body_timeout_s, body_deadline_s : float
        Limits in seconds: handling one request, each chunk of its body, and the whole body.
    max_upload_bytes : int
        Largest voice recording accepted.
    max_disk_bytes, min_free_bytes : int
        Disk budget of all results and free space to leave on their disk, in bytes
        (see :class:`~moodsong.web.jobs.JobStore`).
    cors_origins : list of str
        Origins allowed to call the API from other sites (empty: CORS off).
    allowed_hosts : list of str
        Extra ``Host`` names to answer to, besides localhost, 127.0.0.1, ::1 and ``host``
        (``"*"``: any). A name given here is also accepted as the ``Origin`` of requests.
    host : str, optional
        The address the server is bound to; with ``0.0.0.0`` or ``::`` any IP address and this
        machine's own names are accepted as ``Host``.
    model : str, optional
        An emotion-conditional model (checkpoint path without suffix) instead of the shipped one.
    warm_start : bool
        Start the workers with the server and let each compose a tiny warm-up
        piece, so the first request is fast; False starts each worker on first
        need and loads the models during its first job.
    """
    own_dir = results_dir is None  # a temporary folder of our own is removed at shutdown
    results_dir = Path(results_dir) if results_dir is not None else own_results_dir()
    store = JobStore(results_dir, max_age_s=max_age_s, max_disk_bytes=max_disk_bytes, min_free_bytes=min_free_bytes)
    pool = ComposerPool(workers=workers, timeout_s=job_timeout_s, model=model, warmup=warm_start,
                        scratch_dir=store.root)
    compose_limiter = RateLimiter(rate_limit)
    tasks: set[asyncio.Task] = set()
    song_composer: list[bool] = []  # whether the model is the song model, once known

    def composer_is_song() -> bool:
        if not song_composer:
            song_composer.append(_is_song_model(model))
        return song_composer[0]

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        store.lock()  # again, when the same app is started a second time
        store.sweep_disk()
        _load_parsers()
        composer_is_song()
        await pool.start(eager=warm_start)

        async def sweeper():
            while True:
                await asyncio.sleep(min(60.0, max(1.0, max_age_s / 4)))
                store.sweep()

        sweep_task = asyncio.create_task(sweeper())
        try:
            yield
        finally:
            sweep_task.cancel()
            for t in list(tasks):
                t.cancel()
            pool.stop()
            if own_dir:
                shutil.rmtree(results_dir, ignore_errors=True)
            store.close()

    app = FastAPI(
        title="moodsong",
        summary="Tell it a feeling; it composes a piece that fits.",
        description=__doc__,
        version=_version(),
        lifespan=lifespan,
        docs_url=None,  # the interactive docs pull scripts from a CDN; the page must work offline
        redoc_url=None,
    )
    app.state.store, app.state.pool, app.state.results_dir = store, pool, results_dir

    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"])
    form_room = 64 * 1024  # the form's other fields and multipart framing
    app.add_middleware(
        _Guard, upload_caps={"/api/compose/voice": max_upload_bytes + MAX_PRIMER_BYTES + form_room,
                             "/api/compose/primer": MAX_PRIMER_BYTES + form_room},
        json_cap=MAX_JSON_BYTES, body_timeout_s=body_timeout_s,
        body_deadline_s=body_deadline_s, request_timeout_s=request_timeout_s, api_limiter=RateLimiter(api_rate_limit),
        hosts=HostPolicy(allowed_hosts, bind_host=host, cors_origins=cors_origins),
    )

    # -- errors: one clear line, never a traceback --

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _json_response(422, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _json_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.exception("unexpected error on %s", request.url.path)
        return _json_response(500, "internal server error")

    # -- jobs --

    def song_settings_ok(params: dict, primer: bool) -> None:
        # key, form and primer shape the song model's plan; a piano model has none to shape.
        asked = [name for name in ("key", "form") if params.get(name) is not None] + (["primer"] if primer else [])
        if asked and not composer_is_song():
            raise StarletteHTTPException(422, f"{', '.join(asked)}: this server composes with a piano model, which "
                                              f"takes no key, form or primer (they need the song model)")

    def submit(params: dict, client: str, voice: bytes | None = None, voice_kind: str = "wav",
               primer: bytes | None = None) -> JobAccepted:
        # Only a valid request gets here, so invalid ones never use up the compose limit.
        song_settings_ok(params, primer is not None)
        if store.pending() >= max_queue:
            raise StarletteHTTPException(503, "the composer is busy; try again in a minute", {"Retry-After": "30"})
        if max_pending_per_client and store.pending_for(client) >= max_pending_per_client:
            raise StarletteHTTPException(429, f"you already have {max_pending_per_client} pieces being composed; "
                                              f"wait for them first", {"Retry-After": "10"})
        wait = compose_limiter.check(client)
        if wait:
            raise StarletteHTTPException(429, f"too many requests; try again in {math.ceil(wait)} s",
                                         {"Retry-After": str(math.ceil(wait))})
        if not store.make_room(params):
            raise StarletteHTTPException(503, "the server is short of disk space for results; try again later",
                                         {"Retry-After": "60"})
        job = store.create(params, client)
        if voice is not None:
            path = job.voice_path(voice_kind)
            path.write_bytes(voice)
            params["voice"] = path.name
        if primer is not None:
            job.primer_path().write_bytes(primer)
            params["primer"] = PRIMER_NAME

        async def execute():
            try:
                outcome = await pool.run(str(job.dir), params, on_start=lambda: store.mark_running(job))
            except Exception:  # noqa: BLE001 - a job must always end, or it would hold a queue place
                log.exception("job %s", job.id)
                outcome = {"ok": False, "error": "internal error while composing; please try again"}
            store.mark_finished(job, outcome)

        task = asyncio.create_task(execute())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return JobAccepted(id=job.id, status=job.status, position=store.position(job),
                           status_url=f"/api/results/{job.id}")

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    async def read_primer(upload: UploadFile | None, tempo: float | None) -> tuple[bytes, int] | None:
        """The uploaded primer's bytes and its length in bars, or None; a bad upload gets its 4xx."""
        if upload is None:
            return None
        data = await upload.read(MAX_PRIMER_BYTES + 1)
        if len(data) > MAX_PRIMER_BYTES:
            raise StarletteHTTPException(413, f"primer too large (limit {MAX_PRIMER_BYTES} bytes)")
        if data[:4] != b"MThd":
            raise StarletteHTTPException(415, "primer must be a standard MIDI file (.mid)")
        return data, _check_primer(data, tempo)

    compose_responses = {403: {"description": "Request from another site"}, 422: {"description": "Invalid request"},
                         429: {"description": "Rate limited"}, 503: {"description": "Queue full"}}

    @app.post("/api/compose", status_code=202, response_model=JobAccepted, tags=["compose"],
              responses={**compose_responses, 415: {"description": "Not JSON"}})
    async def compose_json(body: ComposeBody, request: Request) -> JobAccepted:
        """Compose from a prompt, valence/arousal or a quadrant; poll ``status_url`` for the result."""
        return submit(body.model_dump(), client_of(request))

    @app.post("/api/compose/voice", status_code=202, response_model=JobAccepted, tags=["compose"],
              responses={**compose_responses, 413: {"description": "Recording or primer too large"},
                         415: {"description": "Not multipart/form-data, not a WAV/FLAC/OGG recording, "
                                              "or a primer that is not MIDI"}})
    async def compose_voice(
        request: Request,
        voice: Annotated[UploadFile, File(description="A spoken request: WAV (FLAC, OGG also), "
                                                      f"at most {MAX_VOICE_SECONDS:g} s.")],
        settings: Annotated[dict, Depends(_settings_form)],
        primer: Annotated[UploadFile | None, File(description=_PRIMER_HELP)] = None,
    ) -> JobAccepted:
        """Compose from a recording of someone saying what they want (multipart form),
        optionally continuing a MIDI file."""
        await _strict_form(request, _VOICE_FIELDS)
        data = await voice.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise StarletteHTTPException(413, f"recording too large (limit {max_upload_bytes} bytes)")
        kind = _AUDIO_MAGIC.get(data[:4])
        if kind is None or (kind == "wav" and data[8:12] != b"WAVE"):
            raise StarletteHTTPException(415, "voice must be a WAV, FLAC or OGG recording")
        _check_recording(data)
        checked = _validated(Settings, settings)
        uploaded = await read_primer(primer, checked.tempo)
        params = checked.model_dump()
        if uploaded is not None:
            params["primer_bars"] = uploaded[1]
        return submit(params, client_of(request), voice=data, voice_kind=kind,
                      primer=uploaded[0] if uploaded else None)

    @app.post("/api/compose/primer", status_code=202, response_model=JobAccepted, tags=["compose"],
              responses={**compose_responses, 413: {"description": "Primer too large"},
                         415: {"description": "Not multipart/form-data, or a primer that is not MIDI"}})
    async def compose_primer(
        request: Request,
        primer: Annotated[UploadFile, File(description=_PRIMER_HELP)],
        settings: Annotated[dict, Depends(_settings_form)],
        prompt: Annotated[str | None, Form(max_length=MAX_PROMPT_CHARS)] = None,
        valence: Annotated[float | None, Form(ge=-1, le=1, allow_inf_nan=False)] = None,
        arousal: Annotated[float | None, Form(ge=-1, le=1, allow_inf_nan=False)] = None,
        quadrant: Annotated[int | None, Form(ge=1, le=4)] = None,
    ) -> JobAccepted:
        """Continue a MIDI file (multipart form): the fields of ``POST /api/compose`` as form fields,
        plus ``primer``."""
        await _strict_form(request, _PRIMER_FIELDS)
        body = _validated(ComposeBody, {**settings, "prompt": prompt, "valence": valence, "arousal": arousal,
                                        "quadrant": quadrant})
        data, primer_bars = await read_primer(primer, body.tempo)
        return submit({**body.model_dump(), "primer_bars": primer_bars}, client_of(request), primer=data)

    @app.get("/api/results/{job_id}", response_model=JobStatus, tags=["results"],
             responses={404: {"description": "Unknown or expired ID"}})
    async def result_status(job_id: str) -> JobStatus:
        """Where a job stands; when done, what was understood and made, with file URLs."""
        job = _job_or_404(store, job_id)
        now = time.monotonic()
        elapsed = (job.finished or now) - job.started if job.started else 0.0
        result = None
        if job.status == "done":
            files = {"midi": "piece.mid", "audio": "piece.wav", "png": "piece.png", "musicxml": "piece.musicxml"}
            result = {**job.result, "files": {
                kind: f"/api/results/{job.id}/{name}" for kind, name in files.items()
                if kind != "musicxml" or store.file(job, name) is not None  # a lead sheet comes from songs only
            }}
        return JobStatus(id=job.id, status=job.status, position=store.position(job), elapsed_s=round(elapsed, 2),
                         estimate_s=store.estimate_s(job), error=job.error, result=result)

    @app.get("/api/results/{job_id}/{name}", tags=["results"],
             responses={200: {"content": {t: {} for t in FILES.values()}}, 404: {"description": "Unknown file"}})
    async def result_file(job_id: str, name: str) -> FileResponse:
        """One file of a finished result: ``piece.mid``, ``piece.wav``, ``piece.png`` or ``piece.musicxml``."""
        job = _job_or_404(store, job_id)
        path = store.file(job, name)
        if path is None:
            raise StarletteHTTPException(404, f"no file {name!r} in this result (files: {', '.join(FILES)})")
        disposition = "attachment" if name.endswith((".mid", ".musicxml")) else "inline"
        return FileResponse(path, media_type=FILES[name], filename=f"moodsong-{job.id[:8]}{Path(name).suffix}",
                            content_disposition_type=disposition)

    @app.get("/api/health", tags=["results"])
    async def health() -> dict:
        """Queue length and worker count."""
        jobs = store.jobs.values()
        return {"status": "ok", "workers": pool.workers, "queued": sum(j.status == "queued" for j in jobs),
                "running": sum(j.status == "running" for j in jobs), "stored": len(store.jobs)}

    # -- the page --

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


def _job_or_404(store: JobStore, job_id: str) -> Job:
    job = store.get(job_id)
    if job is None:
        raise StarletteHTTPException(404, "no result with this ID (it may have expired)")
    return job


_PRIMER_HELP = (f"Song model: a MIDI file to continue (at most {MAX_PRIMER_BYTES // 1024} KiB and {MAX_PRIMER_BARS} "
                "bars); its notes are kept as the first bars, its key and tempo unless key/tempo say otherwise.")


async def _settings_form(
    bars: Annotated[int, Form(ge=1, le=MAX_BARS)] = 16,
    tempo: Annotated[float | None, Form(ge=40, le=220, allow_inf_nan=False)] = None,
    instrument: Annotated[str | None, Form(max_length=MAX_INSTRUMENT_CHARS)] = None,
    key: Annotated[str | None, Form(max_length=MAX_KEY_CHARS)] = None,
    form: Annotated[str | None, Form(max_length=MAX_FORM_CHARS)] = None,
    temperature: Annotated[float | None, Form(ge=0.1, le=4.0, allow_inf_nan=False)] = None,
    seed: Annotated[int | None, Form(ge=0, le=2**31 - 1)] = None,
    candidates: Annotated[int, Form(ge=1, le=MAX_CANDIDATES)] = 4,
) -> dict:
    """The settings of :class:`Settings` as multipart form fields (both upload routes take them)."""
    return {"bars": bars, "tempo": tempo, "instrument": instrument, "key": key, "form": form,
            "temperature": temperature, "seed": seed, "candidates": candidates}


#: The fields of the upload forms; anything else is refused (422), like unknown JSON fields.
_VOICE_FIELDS = frozenset({"voice", "primer", *Settings.model_fields})
_PRIMER_FIELDS = frozenset({"primer", *ComposeBody.model_fields})


async def _strict_form(request: Request, allowed: frozenset[str]) -> None:
    """Refuse (422) form fields the route does not know and fields given more than once."""
    fields = await request.form()  # already parsed for the parameters; cached
    unknown = sorted({k for k in fields.keys() if k not in allowed})
    if unknown:
        raise StarletteHTTPException(422, f"{', '.join(unknown)}: Extra inputs are not permitted")
    repeated = sorted({k for k in fields.keys() if len(fields.getlist(k)) > 1})
    if repeated:
        raise StarletteHTTPException(422, f"{', '.join(repeated)}: given more than once")


def _validated(model: type[BaseModel], values: dict):
    """``model(**values)``, or a 422 with the same one-line message as a bad JSON body."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise StarletteHTTPException(422, _validation_message(exc)) from None


def _check_primer(data: bytes, tempo: float | None) -> int:
    """The length in 4/4 bars of a primer upload (MIDI bytes); 422 for what the composer could not continue.

    Its bars are composed and rendered on top of the requested ones, so they are bounded like
    ``bars``; without a ``tempo`` the primer's own tempo is kept, so it must lie in the API's range
    (one at 1 qpm would make an hours-long WAV).
    """
    import symusic

    try:
        score = symusic.Score.from_midi(data)
    except Exception:  # noqa: BLE001 - any parser complaint means a bad upload
        raise StarletteHTTPException(422, "primer: the file could not be read as MIDI") from None
    tpq = int(score.ticks_per_quarter)
    pitched = [t for t in score.tracks if not t.is_drum and len(t.notes)]
    if not pitched or tpq <= 0:
        raise StarletteHTTPException(422, "primer: the file has no pitched notes (empty or drums only)")
    notes = sum(len(t.notes) for t in score.tracks)
    if notes > MAX_PRIMER_NOTES:
        raise StarletteHTTPException(422, f"primer: {notes} notes; the limit is {MAX_PRIMER_NOTES}")
    end_ticks = max(int((n["time"] + n["duration"]).max()) for n in (t.notes.numpy() for t in pitched))
    bars = max(1, math.ceil(end_ticks / (4 * tpq)))
    if bars > MAX_PRIMER_BARS:
        raise StarletteHTTPException(422, f"primer: it is {bars} bars long; the limit is {MAX_PRIMER_BARS} bars")
    if tempo is None:
        qpm = float(score.tempos[0].qpm) if len(score.tempos) else 120.0
        if not 40 <= qpm <= 220:
            raise StarletteHTTPException(422, f"primer: its tempo ({qpm:.4g} qpm) is outside 40-220; give a tempo")
    return bars


def _is_song_model(model: str | None) -> bool:
    """Whether the server's ``model`` is a song model (the default), which takes key, form and primer."""
    from moodsong.errors import MoodsongError
    from moodsong.pipeline import is_song_model

    try:
        return is_song_model(model)
    except MoodsongError:
        return True  # an unreadable model fails each job with its own message


def _load_parsers() -> None:
    """Import what request validation uses (the composer's parsers, the MIDI reader) before the first request."""
    import symusic  # noqa: F401
    from pretty_midi import constants  # noqa: F401

    from moodsong import pipeline  # noqa: F401
    from moodsong.song import model  # noqa: F401


def _check_recording(data: bytes) -> None:
    """Reject recordings libsndfile cannot read, with an implausible sample rate, or that run too long (422)."""
    import io

    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - any decoder complaint means a bad upload
        raise StarletteHTTPException(422, "voice: the recording could not be read as audio") from None
    if info.frames <= 0 or info.samplerate <= 0:
        raise StarletteHTTPException(422, "voice: the recording is empty")
    if not MIN_VOICE_RATE <= info.samplerate <= MAX_VOICE_RATE:  # a hostile header would make resampling huge
        raise StarletteHTTPException(422, f"voice: sample rate {info.samplerate} Hz is not supported "
                                          f"({MIN_VOICE_RATE}-{MAX_VOICE_RATE} Hz)")
    seconds = info.frames / info.samplerate
    if seconds > MAX_VOICE_SECONDS:
        raise StarletteHTTPException(422, f"voice: the recording is {seconds:.0f} s long; "
                                          f"the limit is {MAX_VOICE_SECONDS:g} s")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("moodsong")
    except PackageNotFoundError:
        return "0"
