"""``python -m bot`` runs the clipbot command line."""

from bot.cli import main

raise SystemExit(main())
