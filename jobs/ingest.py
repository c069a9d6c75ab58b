"""spark-submit entry point: `spark-submit jobs/ingest.py [args]` == `medcorpus ingest [args]`."""

import sys

from medcorpus.cli import main

if __name__ == "__main__":
    sys.exit(main(["ingest", *sys.argv[1:]]))
