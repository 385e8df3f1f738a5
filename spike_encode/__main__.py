"""``python -m spike_encode``: the ``spike-encode`` command line."""

from .cli import main

raise SystemExit(main())
