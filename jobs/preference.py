"""spark-submit entry point: `spark-submit jobs/preference.py [args]` == `medcorpus preference [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["preference", *sys.argv[1:]]))
