"""Refinement entrypoint for `ray job submit` (joins the cluster through RAY_ADDRESS): temperature, class
prior and Correct & Smooth on the student's predictions, then GLNN on Ray Train.

  ray job submit --address http://127.0.0.1:8265 --working-dir . \
      --runtime-env jobs/runtime_env.yaml -- python jobs/refine.py --config jobs/configs/debian.yaml
"""

import sys

from gkd.cli import main

if __name__ == "__main__":
    sys.exit(main(["refine", *sys.argv[1:]]))
