"""``python -m bot`` is the ``opsflow`` command."""

from bot.cli import main

main()
