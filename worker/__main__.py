"""``python -m worker`` runs the command-line interface."""

from worker.cli import main

raise SystemExit(main())
