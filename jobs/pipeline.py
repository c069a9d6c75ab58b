"""spark-submit entry point: `spark-submit jobs/pipeline.py [args]` == `medcorpus run [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
