"""The device agent: an HTTP server on the board that measures and profiles ONNX models (standard protocol).

Needs only the standard library, numpy and onnxruntime (``onnx`` is optional; it refines int8 detection),
so it runs on a board without torch. Endpoints (JSON responses; errors are ``{"error", "kind", "status"}``):

- ``GET /health``: ``ok``, ``device`` (:func:`~nas.hardware.measure.device_description`), ``runtime``,
  ``onnxruntime``, ``agent_version``, ``providers`` (available execution providers), ``engines`` (the inference
  engines installed here, name -> version: ``engine=`` picks one per request), ``threads`` (default),
  ``max_model_mb``, ``max_input_mb``.
- ``POST /measure?input_shape=C,H,W[&threads=..&warmup=..&min_repeats=..&max_repeats=..&max_seconds=..
  &stable_ci=..|none&provider=..&outlier_k=..&reference=0|1&reference_block=..&reference_ms=..&seed=..
  &engine=..]`` with the ONNX model
  bytes as the body: the :meth:`~nas.hardware.measure.Measurement.to_dict` of its measurement. Options not
  given take :class:`~nas.hardware.measure.MeasureConfig` defaults, except ``threads`` (the agent's
  ``--threads``).
- ``POST /profile?input_shape=C,H,W[&runs=N&threads=..&provider=..&warmup=..&seed=..]`` with the ONNX model
  bytes as the body: onnxruntime's per-kernel profile of it (:func:`~nas.hardware.profiling.profile_onnx`,
  format ``hwnas.profile-raw/1``), which :func:`nas.compress.profile.attribute` maps to layers on the client.
  ``runs`` defaults to 50 (at most 1000), ``warmup`` to the MeasureConfig default, ``threads`` to ``--threads``.

Safety: it binds to loopback unless told otherwise, and refuses to bind anywhere else without a token
(``--token`` or ``$HWNAS_AGENT_TOKEN``); with a token every request needs ``Authorization: Bearer <token>``
(401 otherwise). Bodies over ``--max-model-mb`` get 413 before they are read; malformed models get 400;
an ``input_shape`` whose batch-1 input tensor would be over ``--max-input-mb`` (default 32 MiB, counted at
8 bytes per element, the widest input type: a 3x1024x1024 image is 24 MiB) gets 400 before the model is even
loaded, and one the model's declared
input does not take (rank, fixed channels/height/width, a batch other than 1) gets 400 before the input is
allocated; the agent keeps serving after any failed request.

The same rules hold for /profile: token, size limit, shape checks, 400 on a bad model or option.

Concurrency: one model is measured or profiled at a time (timing two at once disturbs both). Further requests
wait for their turn (the client's timeout should cover the wait); at most ``--max-queue`` /measure and /profile
requests are in flight together (the one running included), more get 503 with ``Retry-After``.
"""

from __future__ import annotations

import argparse
import hmac
import ipaddress
import json
import os
import socket
import sys
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from nas.device import AGENT_VERSION, DEFAULT_PORT, TOKEN_ENV
from nas.errors import ConfigError, DataError, ModelError, UserError
from nas.hardware.measure import MeasureConfig, device_description, measure_onnx
from nas.hardware.profiling import _check_runs, profile_onnx
from nas.hardware.runtime import check_input_bytes, check_input_shape

# A body over the limit is drained (not kept) up to this size so the client can read the 413 cleanly;
# beyond it the connection is just closed.
_DRAIN_LIMIT = 1 << 30
_CHUNK = 1 << 20
_INT_OPTIONS = ("threads", "warmup", "min_repeats", "max_repeats", "reference_block")
_FLOAT_OPTIONS = ("max_seconds", "outlier_k")
_OPTIONS = (*_INT_OPTIONS, *_FLOAT_OPTIONS, "stable_ci", "provider", "reference", "reference_ms", "seed",
            "input_shape", "engine")
_PROFILE_OPTIONS = ("input_shape", "runs", "threads", "provider", "warmup", "seed")
_ENDPOINTS = "GET /health, POST /measure or POST /profile"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1); anything else counts as exposed."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to a public interface


def _runtime() -> tuple[str, list[str]]:
    import onnxruntime as ort

    return ort.__version__, list(ort.get_available_providers())


def _query(query: str, options, endpoint: str) -> tuple[dict[str, str], tuple[int, int, int]]:
    """The last value of each option of an ``endpoint`` query (unknown ones refused) and its input shape."""
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(params) - set(options))
    if unknown:
        raise ConfigError(f"unknown {endpoint} option(s) {unknown}; valid options: {list(options)}")
    one = {k: v[-1] for k, v in params.items()}
    return one, _query_shape(one, endpoint)


def parse_measure_query(query: str, *, default_threads: int = 1) -> tuple[tuple[int, int, int], MeasureConfig, dict]:
    """Input shape, MeasureConfig and extra keyword arguments (reference_ms, seed) of a /measure query."""
    one, shape = _query(query, _OPTIONS, "/measure")
    kwargs: dict[str, Any] = {"threads": default_threads}
    extra: dict[str, Any] = {}
    try:
        for name in _INT_OPTIONS:
            if name in one:
                kwargs[name] = int(one[name])
        for name in _FLOAT_OPTIONS:
            if name in one:
                kwargs[name] = float(one[name])
        if "stable_ci" in one:
            kwargs["stable_ci"] = None if one["stable_ci"].lower() in ("", "none", "null") else float(one["stable_ci"])
        if "provider" in one:
            kwargs["provider"] = one["provider"]
        if "engine" in one:
            kwargs["engine"] = one["engine"]
            from nas.hardware.engines import get_engine

            get_engine(one["engine"]).require()  # an engine this board lacks: 400 now, not after the queue
        if "reference" in one:
            if one["reference"].lower() not in ("0", "1", "true", "false"):
                raise ValueError(f"reference must be 0 or 1, got {one['reference']!r}")
            kwargs["reference"] = one["reference"].lower() in ("1", "true")
        if "reference_ms" in one:
            extra["reference_ms"] = float(one["reference_ms"])
        if "seed" in one:
            extra["seed"] = int(one["seed"])
    except ValueError as err:
        raise ConfigError(f"bad /measure option: {err}") from None
    return shape, MeasureConfig(**kwargs), extra


def _query_shape(one: dict[str, str], endpoint: str) -> tuple[int, int, int]:
    """The ``input_shape`` option (popped from ``one``), or :class:`ConfigError`."""
    if "input_shape" not in one:
        raise ConfigError(f"{endpoint} needs input_shape=C,H,W (the model input without the batch dimension)")
    text = one.pop("input_shape")
    try:
        return check_input_shape([int(v) for v in text.split(",")])
    except ValueError:
        raise ConfigError(f"input_shape must be three comma-separated ints such as 3,224,224, got {text!r}") from None


def parse_profile_query(query: str, *, default_threads: int = 1) -> tuple[tuple[int, int, int], MeasureConfig,
                                                                          dict[str, int]]:
    """Input shape, MeasureConfig (threads, provider, warmup) and keyword arguments (runs, seed) of a /profile
    query. Everything is checked here, before the request waits for its turn."""
    one, shape = _query(query, _PROFILE_OPTIONS, "/profile")
    kwargs: dict[str, Any] = {"threads": default_threads}
    extra: dict[str, int] = {}
    try:
        for name in ("threads", "warmup"):
            if name in one:
                kwargs[name] = int(one[name])
        if "provider" in one:
            kwargs["provider"] = one["provider"]
        for name in ("runs", "seed"):
            if name in one:
                extra[name] = int(one[name])
    except ValueError as err:
        raise ConfigError(f"bad /profile option: {err}") from None
    _check_runs(extra.get("runs", 50))
    return shape, MeasureConfig(**kwargs), extra


class AgentServer(ThreadingHTTPServer):
    """The HTTP server with the agent's settings (token, size limit, default threads, queue)."""

    daemon_threads = True  # a hung client must not keep the agent from exiting

    def __init__(self, address: tuple[str, int], *, token: str | None, max_model_bytes: int, threads: int,
                 max_queue: int, max_input_bytes: int = 32 * 2**20) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, AgentHandler)
        self.token = token
        self.max_model_bytes = max_model_bytes
        self.max_input_bytes = max_input_bytes
        self.default_threads = threads
        self.max_queue = max_queue
        self.pending = 0
        self.pending_lock = threading.Lock()
        self.version, self.providers = _runtime()
        self.device = device_description()
        from nas.hardware.engines import installed_engines

        self.engines = installed_engines()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"


class AgentHandler(BaseHTTPRequestHandler):
    server: AgentServer
    server_version = f"hwnas-agent/{AGENT_VERSION}"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def _json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "DeviceError",
               headers: dict[str, str] | None = None) -> None:
        self._json(status, {"error": message, "kind": kind, "status": status}, headers)

    def _authorized(self) -> bool:
        token = self.server.token
        if token is None:
            return True
        given = self.headers.get("Authorization", "")
        # constant-time comparison: response timing must not reveal how much of a guessed token was right
        if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return True
        # Drain a (bounded) body first so the client can read the 401 instead of a reset connection.
        self._drain(self.server.max_model_bytes)
        self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong token: send 'Authorization: Bearer <token>' with "
                    "the token the agent was started with (--token or $HWNAS_AGENT_TOKEN)",
                    headers={"WWW-Authenticate": "Bearer"})
        return False

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if not self._authorized():
            return
        if urllib.parse.urlsplit(self.path).path != "/health":
            self._error(HTTPStatus.NOT_FOUND, f"no endpoint GET {self.path}; use {_ENDPOINTS}")
            return
        server = self.server
        self._json(HTTPStatus.OK, {
            "ok": True, "agent_version": AGENT_VERSION, "device": server.device,
            "runtime": f"onnxruntime {server.version}", "onnxruntime": server.version, "providers": server.providers,
            "engines": server.engines,
            "threads": server.default_threads, "max_model_mb": server.max_model_bytes / 2**20,
            "max_input_mb": server.max_input_bytes / 2**20,
        })

    def _drain(self, limit: int) -> None:
        """Read and drop the request body if it is at most ``limit`` bytes; otherwise close after replying."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        self.close_connection = True
        if not 0 <= length <= limit:
            return
        while length > 0:
            chunk = self.rfile.read(min(_CHUNK, length))
            if not chunk:
                break
            length -= len(chunk)

    def _read_body(self, endpoint: str = "/measure") -> bytes | None:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self._error(HTTPStatus.LENGTH_REQUIRED, f"POST {endpoint} needs a Content-Length header")
            return None
        try:
            length = int(length_text)
            if length < 0:
                raise ValueError
        except ValueError:
            self._error(HTTPStatus.BAD_REQUEST, f"bad Content-Length {length_text!r}")
            return None
        limit = self.server.max_model_bytes
        if length > limit:
            self._drain(_DRAIN_LIMIT)
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                        f"model is {length / 2**20:.2f} MiB, over this agent's limit of {limit / 2**20:.2f} MiB; "
                        f"restart the agent with a larger --max-model-mb")
            return None
        body = self.rfile.read(length)
        if len(body) != length:
            self._error(HTTPStatus.BAD_REQUEST, f"body ended after {len(body)} of {length} bytes")
            return None
        return body

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        parts = urllib.parse.urlsplit(self.path)
        if parts.path not in ("/measure", "/profile"):
            self._error(HTTPStatus.NOT_FOUND, f"no endpoint POST {parts.path}; use {_ENDPOINTS}")
            return
        body = self._read_body(parts.path)  # first, so that an error reply below never meets an unread body
        if body is None:
            return
        server = self.server
        try:
            if parts.path == "/measure":
                shape, config, extra = parse_measure_query(parts.query, default_threads=server.default_threads)

                def work() -> dict[str, Any]:
                    return measure_onnx(body, shape, config, **extra).to_dict()
            else:
                shape, config, extra = parse_profile_query(parts.query, default_threads=server.default_threads)

                def work() -> dict[str, Any]:
                    return profile_onnx(body, shape, config, **extra)
            # The largest element type a model input may have (float64) bounds the allocation; the model's own
            # declared input is checked against the shape once it is parsed (before the feed is allocated).
            check_input_bytes(shape, server.max_input_bytes, itemsize=8)
        except UserError as err:
            self._error(HTTPStatus.BAD_REQUEST, str(err), type(err).__name__)
            return
        with server.pending_lock:
            if server.pending >= server.max_queue:
                self._error(HTTPStatus.SERVICE_UNAVAILABLE,
                            f"agent busy: {server.pending} measurements queued (--max-queue {server.max_queue}); "
                            f"retry later", headers={"Retry-After": "5"})
                return
            server.pending += 1
        try:
            # measure_onnx and profile_onnx hold the machine-wide serial lock while timing: queued requests wait.
            result = work()
        except (ModelError, ConfigError, DataError) as err:
            self._error(HTTPStatus.BAD_REQUEST, str(err), type(err).__name__)
            return
        except Exception as err:  # keep serving whatever one model does; report it to the client
            what = "measurement" if parts.path == "/measure" else "profile"
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{what} failed: {type(err).__name__}: {err}")
            return
        finally:
            with server.pending_lock:
                server.pending -= 1
        self._json(HTTPStatus.OK, result)


def make_server(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    token: str | None = None,
    max_model_mb: float = 64.0,
    threads: int = 1,
    max_queue: int = 8,
    max_input_mb: float = 32.0,
) -> AgentServer:
    """A bound (not yet serving) agent; raises :class:`ConfigError` for an exposed bind without a token."""
    token = token or None
    if not is_loopback(host) and token is None:
        raise ConfigError(
            f"refusing to serve on {host!r} without a token: anyone who can reach it could run models on this "
            f"board. Pass --token SECRET (or set {TOKEN_ENV}), or bind to 127.0.0.1"
        )
    if not (isinstance(max_model_mb, (int, float)) and max_model_mb > 0):
        raise ConfigError(f"--max-model-mb must be a positive number, got {max_model_mb!r}")
    if not (isinstance(max_input_mb, (int, float)) and not isinstance(max_input_mb, bool) and max_input_mb > 0):
        raise ConfigError(f"--max-input-mb must be a positive number, got {max_input_mb!r}")
    if not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"--threads must be a positive int, got {threads!r}")
    if not isinstance(max_queue, int) or max_queue < 1:
        raise ConfigError(f"--max-queue must be a positive int, got {max_queue!r}")
    try:
        return AgentServer((host, port), token=token, max_model_bytes=int(max_model_mb * 2**20), threads=threads,
                           max_queue=max_queue, max_input_bytes=int(max_input_mb * 2**20))
    except OSError as err:
        raise ConfigError(f"cannot listen on {host}:{port}: {err}; pick another --port or --host") from err


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nas.device", description="hwnas device agent")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="measure and profile ONNX models sent over HTTP")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port; 0 picks a free one")
    serve.add_argument("--token", default=None, help=f"bearer token required from clients (default ${TOKEN_ENV})")
    serve.add_argument("--max-model-mb", type=float, default=64.0, help="largest model accepted, MiB")
    serve.add_argument("--max-input-mb", type=float, default=32.0,
                       help="largest batch-1 input tensor a request's input_shape may ask for, MiB (counted at 8 "
                            "bytes per element); larger shapes get 400 before anything is allocated")
    serve.add_argument("--threads", type=int, default=1, help="default onnxruntime intra-op threads")
    serve.add_argument("--max-queue", type=int, default=8,
                       help="measure/profile requests in flight at once (one runs, the rest wait); more get 503")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    try:
        server = make_server(args.host, args.port, token=token, max_model_mb=args.max_model_mb,
                             threads=args.threads, max_queue=args.max_queue, max_input_mb=args.max_input_mb)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"hwnas device agent {AGENT_VERSION} serving on {server.url} (onnxruntime {server.version}, "
          f"token {'required' if server.token else 'off'})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
