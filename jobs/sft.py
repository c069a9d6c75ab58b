"""spark-submit entry point: `spark-submit jobs/sft.py [args]` == `medcorpus sft [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["sft", *sys.argv[1:]]))
