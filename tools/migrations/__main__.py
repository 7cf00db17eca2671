"""`python -m tools.migrations`: see `tools.migrations.cli`."""

import sys

from tools.migrations.cli import main

sys.exit(main())
