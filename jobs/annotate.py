"""spark-submit entry point: `spark-submit jobs/annotate.py [args]` == `medcorpus annotate [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["annotate", *sys.argv[1:]]))
