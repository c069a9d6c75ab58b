"""spark-submit entry point: `spark-submit jobs/train_classifier.py [args]` == `medcorpus train-classifier [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-classifier", *sys.argv[1:]]))
