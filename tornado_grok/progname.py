"""How the user ran a command (`run.py`, `tornado-grok`, `grok-loadtest`), for usage lines."""

import os
import sys


def prog(command: str = "") -> str:
    """`run.py record` or `tornado-grok record`: how the user ran this, for usage lines."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "run.py"
    if name in ("", "-c", "__main__.py", "cli.py"):
        name = "run.py"
    return f"{name} {command}".strip()
