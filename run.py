#!/usr/bin/env python3
"""tornado_grok entry point from a checkout: `python run.py [serve|mock|record|keys|usage|loadtest] ...`.

The commands live in tornado_grok/cli.py (installed with pip they are the `tornado-grok` console
script); `python run.py --help` and `python run.py COMMAND --help` describe them.
"""

import sys

from tornado_grok.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
