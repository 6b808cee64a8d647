"""`python -m flows.identity.build_native build|status`: the matcher's compiled modules.

See native.py (decision 63); `make native` runs the build.
"""

import sys

from flows.identity.native import main

raise SystemExit(main(sys.argv[1:]))
