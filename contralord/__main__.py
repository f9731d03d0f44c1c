import sys

from contralord.cli import main

sys.exit(main())
