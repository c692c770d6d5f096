"""The device agent: measure ONNX models on a board over HTTP, and the client the search uses to call it.

On the board (needs only onnxruntime and numpy)::

    python -m nas.device serve --host 0.0.0.0 --port 8765 --token SECRET

On the search machine: ``+target=cpu target.agent=http://BOARD:8765 target.token=SECRET`` (or the
``HWNAS_AGENT_TOKEN`` environment variable). See :mod:`nas.device.agent` and :mod:`nas.device.client`.
"""

AGENT_VERSION = "1"
TOKEN_ENV = "HWNAS_AGENT_TOKEN"
DEFAULT_PORT = 8765
