import sys

from contralord.cli.main import main

sys.exit(main())
