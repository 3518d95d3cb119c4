"""`python -m gateway_apiserver`."""

import sys

from .cli import main

sys.exit(main())
