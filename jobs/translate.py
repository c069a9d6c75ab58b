"""spark-submit entry point: `spark-submit jobs/translate.py [args]` == `medcorpus translate [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["translate", *sys.argv[1:]]))
