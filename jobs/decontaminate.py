"""spark-submit entry point: `spark-submit jobs/decontaminate.py [args]` == `medcorpus decontaminate [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["decontaminate", *sys.argv[1:]]))
