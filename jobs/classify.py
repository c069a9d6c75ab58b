"""spark-submit entry point: `spark-submit jobs/classify.py [args]` == `medcorpus classify [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["classify", *sys.argv[1:]]))
