"""``python -m codeintel.cli``: the same as the ``codeintel`` console script."""

import sys

from codeintel.cli import main

sys.exit(main())
