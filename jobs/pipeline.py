"""The whole pipeline for `ray job submit` (joins the cluster through RAY_ADDRESS):
ingest -> rationale -> teacher -> distill -> refine -> register, finished stages reused (config hashes).

  export RAY_AUTH_MODE=token          # Ray 2.60 clusters protect the jobs API with a token
  ray job submit --address http://127.0.0.1:8265 --working-dir . \
      --runtime-env jobs/runtime_env.yaml -- python jobs/pipeline.py --config jobs/configs/debian.yaml

Arguments are those of `gkd run`: --config, --set KEY=VALUE, --out, --stages, --no-track.
"""

import sys

from gkd.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
