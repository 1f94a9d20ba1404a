"""``python -m gpumlp`` is the ``gpumlp`` command."""

import sys

from .cli import main

sys.exit(main())
