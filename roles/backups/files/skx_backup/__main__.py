"""python3 -m skx_backup <command> ...: see the package docstring."""
import sys

from .cli import main

sys.exit(main())
