"""``python -m graphgpo`` = the ``graphgpo`` command."""

import sys

from graphgpo.cli import main

sys.exit(main())
