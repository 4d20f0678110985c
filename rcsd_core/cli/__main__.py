"""`python -m rcsd_core.cli ...` is `rcsd ...`."""

import sys

from rcsd_core.cli import main

sys.exit(main())
