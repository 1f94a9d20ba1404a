"""Compare training on two backends or dtypes step by step; see :mod:`gpumlp.parity`."""

import sys

from gpumlp.parity import main

if __name__ == "__main__":
    sys.exit(main())
