"""spark-submit entry point: `spark-submit jobs/validate.py [args]` == `medcorpus validate [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", *sys.argv[1:]]))
