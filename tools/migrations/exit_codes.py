"""Exit codes of `python -m tools.migrations`, shared by the CLI and the commands it runs.

A module of its own so that the commands (generate, fleet) and the argument parser import it
without importing each other.
"""

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNSAFE = 3
