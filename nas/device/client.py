"""Client of the device agent (:mod:`nas.device.agent`), standard library only.

    client = AgentClient("http://board:8765", token="SECRET")
    client.health()                                   # what the board is
    client.measure(onnx_bytes, (3, 224, 224), MeasureConfig(reference=True))   # -> Measurement
    client.profile(onnx_bytes, (3, 224, 224), MeasureConfig(), runs=50)      # -> per-kernel profile (dict)

Endpoints used: ``GET /health``, ``POST /measure`` and ``POST /profile`` (see :mod:`nas.device.agent`).

Errors: an unreachable agent, a refused token, an over-size model or a busy agent raise
:class:`~nas.errors.DeviceError` naming the URL and what to do; a model or option the agent rejects raises
the same error class the agent raised (:class:`~nas.errors.ModelError`, :class:`~nas.errors.ConfigError`).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from nas.device import DEFAULT_PORT, TOKEN_ENV
from nas.errors import ConfigError, DataError, DeviceError, ModelError
from nas.hardware.measure import MeasureConfig, Measurement
from nas.hardware.profiling import FORMAT, _check_runs
from nas.hardware.runtime import check_input_shape

_ERRORS_BY_KIND = {"ModelError": ModelError, "ConfigError": ConfigError, "DataError": DataError}


class AgentClient:
    """Talks to one device agent at ``url`` (``http://HOST:PORT``).

    ``token`` defaults to ``$HWNAS_AGENT_TOKEN``; ``timeout`` (seconds) bounds each request, including the
    wait for the agent's other measurements to finish.
    """

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 600.0) -> None:
        if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https") \
                or not urllib.parse.urlsplit(url).netloc:
            raise ConfigError(f"device agent URL must look like http://HOST:PORT, got {url!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigError(f"agent timeout must be a positive number of seconds, got {timeout!r}")
        if token is not None and not isinstance(token, str):
            raise ConfigError(f"agent token must be a string, got {type(token).__name__}")
        self.url = url.rstrip("/")
        self.token = token or os.environ.get(TOKEN_ENV) or None
        self.timeout = float(timeout)

    def __repr__(self) -> str:
        return f"AgentClient({self.url!r})"  # never the token

    def _how_to_start(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        port = parts.port or DEFAULT_PORT
        return (f"start it on the board with `python -m nas.device serve --host 0.0.0.0 --port {port} "
                f"--token SECRET` (or --host 127.0.0.1 when it runs on this machine) and check the address")

    def _request(self, method: str, path: str, *, body: bytes | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/octet-stream"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise self._http_error(err, path) from None
        except (urllib.error.URLError, OSError) as err:  # refused, unknown host, timeout, reset
            reason = getattr(err, "reason", err)
            raise DeviceError(f"cannot reach the device agent at {self.url} ({reason}); {self._how_to_start()}") \
                from None
        except json.JSONDecodeError:
            raise DeviceError(f"{self.url}{path} did not answer with JSON: is it an hwnas device agent?") from None

    def _http_error(self, err: urllib.error.HTTPError, path: str) -> Exception:
        try:
            payload = json.loads(err.read())
            message, kind = str(payload["error"]), str(payload.get("kind", ""))
        except (ValueError, KeyError, TypeError, OSError):
            message, kind = f"HTTP {err.code} {err.reason}", ""
        where = f"device agent {self.url}"
        if err.code == 401:
            return DeviceError(f"{where} refused the request: {message}. Set target.token (or ${TOKEN_ENV}) to "
                               f"the token the agent was started with")
        if err.code == 413:
            return DeviceError(f"{where} rejected the model as too large: {message}")
        if err.code == 503:
            return DeviceError(f"{where} is busy: {message}")
        if err.code == 400 and kind in _ERRORS_BY_KIND:
            return _ERRORS_BY_KIND[kind](f"{where}: {message}")
        return DeviceError(f"{where} failed on {path}: {message}")

    def health(self) -> dict[str, Any]:
        """The agent's ``/health`` answer: ok, device, runtime, onnxruntime, agent_version, providers ..."""
        return self._request("GET", "/health")

    def measure(
        self,
        onnx_bytes: bytes,
        input_shape: Sequence[int],
        config: MeasureConfig | None = None,
        *,
        reference_ms: float | None = None,
        seed: int = 0,
    ) -> Measurement:
        """Measure a serialized ONNX model on the agent's device with ``config``'s protocol."""
        if not isinstance(onnx_bytes, (bytes, bytearray)):
            raise ConfigError(f"measure() needs the ONNX model as bytes, got {type(onnx_bytes).__name__}")
        config = MeasureConfig() if config is None else config
        if not isinstance(config, MeasureConfig):
            raise ConfigError(f"config must be a MeasureConfig, got {type(config).__name__}")
        shape = check_input_shape(input_shape)
        query: dict[str, Any] = {
            "input_shape": ",".join(map(str, shape)),
            # the engine only when it is not the default, so agents older than engines keep working
            **{k: v for k, v in config.to_dict().items() if k not in ("stable_ci", "reference", "engine")},
            **({"engine": config.engine} if config.engine != "onnxruntime" else {}),
            "stable_ci": "none" if config.stable_ci is None else config.stable_ci,
            "reference": int(config.reference),
            "seed": seed,
        }
        if reference_ms is not None:
            query["reference_ms"] = reference_ms
        answer = self._request("POST", "/measure?" + urllib.parse.urlencode(query), body=bytes(onnx_bytes))
        try:
            return Measurement.from_dict(answer)
        except DataError as err:
            raise DeviceError(f"device agent {self.url} sent a malformed measurement: {err}") from None

    def profile(
        self,
        model: bytes,
        input_shape: Sequence[int],
        config: MeasureConfig | None = None,
        *,
        runs: int = 50,
        seed: int = 0,
    ) -> dict[str, Any]:
        """onnxruntime's per-kernel profile of a serialized ONNX model on the agent's device: the
        ``hwnas.profile-raw/1`` record of :func:`nas.hardware.profiling.profile_onnx`, run there with ``config``'s
        threads, provider and warm-up. :func:`nas.compress.profile.attribute` maps it to layers."""
        if not isinstance(model, (bytes, bytearray)):
            raise ConfigError(f"profile() needs the ONNX model as bytes, got {type(model).__name__}")
        config = MeasureConfig() if config is None else config
        if not isinstance(config, MeasureConfig):
            raise ConfigError(f"config must be a MeasureConfig, got {type(config).__name__}")
        shape = check_input_shape(input_shape)
        query = {"input_shape": ",".join(map(str, shape)), "runs": _check_runs(runs), "threads": config.threads,
                 "provider": config.provider, "warmup": config.warmup, "seed": seed}
        answer = self._request("POST", "/profile?" + urllib.parse.urlencode(query), body=bytes(model))
        if not isinstance(answer, dict) or answer.get("format") != FORMAT \
                or not isinstance(answer.get("kernels"), list):
            raise DeviceError(f"device agent {self.url} sent a malformed profile (expected format {FORMAT!r}); is it "
                              f"an hwnas agent new enough to have POST /profile?")
        return answer
