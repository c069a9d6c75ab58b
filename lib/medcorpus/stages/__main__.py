"""``python -m medcorpus.stages jobs``: (re)write ``jobs/<stage>.py`` for every registered stage."""

from __future__ import annotations

import sys

from medcorpus.core.config import REPO_ROOT
from medcorpus.stages import STAGES, job_script


def write_jobs() -> list[str]:
    written = []
    for name in STAGES:
        path = REPO_ROOT / "jobs" / f"{name.replace('-', '_')}.py"
        path.write_text(job_script(name), encoding="utf-8")
        written.append(str(path))
    return written


if __name__ == "__main__":
    if sys.argv[1:] != ["jobs"]:
        sys.exit("usage: python -m medcorpus.stages jobs")
    print("\n".join(write_jobs()))
