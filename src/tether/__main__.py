"""``python -m tether``."""

import sys

from .cli import main

sys.exit(main())
