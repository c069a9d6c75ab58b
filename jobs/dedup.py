"""spark-submit entry point: `spark-submit jobs/dedup.py [args]` == `medcorpus dedup [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["dedup", *sys.argv[1:]]))
