"""``python -m steplog``: the same as the ``steplog`` command."""

import sys

from .cli import main

sys.exit(main())
