"""Run the service named by SERVICE_NAME, so one image serves all four."""
import importlib
import os
import sys

from . import SERVICES


def main():
    name = os.environ.get("SERVICE_NAME", "")
    if name not in SERVICES:
        sys.stderr.write(
            f"SERVICE_NAME must be one of {', '.join(SERVICES)} (got {name!r})\n")
        return 2
    return importlib.import_module(f"skx_apps.{name}").main()


if __name__ == "__main__":
    sys.exit(main())
