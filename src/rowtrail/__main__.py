"""``python -m rowtrail`` is the ``rowtrail`` command."""

from rowtrail.cli.app import main

main()
