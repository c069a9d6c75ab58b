"""spark-submit entry point: `spark-submit jobs/train_rater.py [args]` == `medcorpus train-rater [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-rater", *sys.argv[1:]]))
