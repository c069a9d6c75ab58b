"""spark-submit entry point: `spark-submit jobs/pretrain.py [args]` == `medcorpus pretrain [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["pretrain", *sys.argv[1:]]))
