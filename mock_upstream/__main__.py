"""`python -m mock_upstream`: see cli.py."""

from mock_upstream.cli import main

if __name__ == "__main__":
    main()
