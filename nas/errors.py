"""Errors that reach the user as one clear message (no traceback).

Anything raised as a :class:`UserError` is caught by the command-line entry points, printed as
``error: <message>`` and turned into exit status 2. Every message should say what was wrong *and* how
to fix it (the valid choices, the expected format, the missing path).
"""


class UserError(Exception):
    """Bad input from the user: config, data, architecture or model."""


class ConfigError(UserError):
    """A configuration value is missing, unknown or inconsistent."""


class InvalidArchError(UserError):
    """An architecture is malformed or not a member of its search space."""


class DataError(UserError):
    """A dataset path is missing or its contents cannot be read."""


class ModelError(UserError):
    """A model file (ONNX, checkpoint, predictor) is malformed or incompatible."""


class DeviceError(UserError):
    """A measuring device (a remote device agent) cannot be reached or refused a request."""


def error_line(exc: BaseException) -> str:
    """``error: <message>`` on one line, as the entry points print it (a message spanning lines is joined)."""
    return "error: " + " ".join(str(exc).split())
