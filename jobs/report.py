"""spark-submit entry point: `spark-submit jobs/report.py [args]` == `medcorpus report [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["report", *sys.argv[1:]]))
