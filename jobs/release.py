"""spark-submit entry point: `spark-submit jobs/release.py [args]` == `medcorpus release [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["release", *sys.argv[1:]]))
