"""Student (distillation) entrypoint for `ray job submit` (joins the cluster through RAY_ADDRESS).

  ray job submit --address http://127.0.0.1:8265 --working-dir . \
      --runtime-env jobs/runtime_env.yaml -- python jobs/distill.py --config jobs/configs/debian.yaml
"""

import sys

from gkd.cli import main

if __name__ == "__main__":
    sys.exit(main(["distill", *sys.argv[1:]]))
