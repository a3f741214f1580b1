"""``python -m waferscale.cli``: the ``wafer`` command."""

import sys

from . import main

sys.exit(main())
