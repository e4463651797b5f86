"""`python -m flussfs.cli`: the same as the `flussfs` console script."""
import sys

from .app import main

sys.exit(main())
