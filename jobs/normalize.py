"""spark-submit entry point: `spark-submit jobs/normalize.py [args]` == `medcorpus normalize [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["normalize", *sys.argv[1:]]))
