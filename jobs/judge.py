"""spark-submit entry point: `spark-submit jobs/judge.py [args]` == `medcorpus judge [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["judge", *sys.argv[1:]]))
