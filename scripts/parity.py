"""Compare training on two backends or dtypes step by step: ``gpumlp parity`` (see its --help)."""

import sys

from gpumlp.cli import main

if __name__ == "__main__":
    sys.exit(main(["parity", *sys.argv[1:]]))
