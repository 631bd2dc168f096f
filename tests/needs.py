"""Skips that say what is missing and how to get it: a test needing an outside program never fails
or skips silently where that program is absent.

    needs.program("curl", "apt-get install curl")   # in a test, before using it
"""

import shutil

import pytest


def program(name: str, install: str) -> str:
    """The path of `name` on PATH, or a skip whose reason names it and the command that installs it."""
    path = shutil.which(name)
    if path is None:
        pytest.skip("%s not found on PATH: %s" % (name, install))
    return path
