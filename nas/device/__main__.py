"""``python -m nas.device serve ...``: run the device agent (see :mod:`nas.device.agent`)."""

from nas.device.agent import main

if __name__ == "__main__":
    raise SystemExit(main())
