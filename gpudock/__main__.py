"""``python -m gpudock``: the same as the ``gpudock`` command."""

import sys

from gpudock.cli import main

sys.exit(main(sys.argv[1:]))
