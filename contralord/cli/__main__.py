"""``python -m contralord.cli``: the ``contralord`` command, as ``python -m contralord`` and the console script."""

import sys

from contralord.cli.main import main

sys.exit(main())
