"""spark-submit entry point: `spark-submit jobs/generate_qa.py [args]` == `medcorpus generate-qa [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate-qa", *sys.argv[1:]]))
