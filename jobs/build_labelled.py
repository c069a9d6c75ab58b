"""spark-submit entry point: `spark-submit jobs/build_labelled.py [args]` == `medcorpus build-labelled [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["build-labelled", *sys.argv[1:]]))
