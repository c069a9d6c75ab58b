"""spark-submit entry point: `spark-submit jobs/filter.py [args]` == `medcorpus filter [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["filter", *sys.argv[1:]]))
