"""spark-submit entry point: `spark-submit jobs/export.py [args]` == `medcorpus export [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["export", *sys.argv[1:]]))
