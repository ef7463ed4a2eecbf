#!/usr/bin/env bash
# The main job: set up, then run the demo: a central and two simulated sites with synthetic
# cameras on loopback, on the embedded storage defaults. Ctrl-C stops it cleanly; run it
# again and it goes on with the same central, sites and recordings. Extra arguments go to
# `siteline demo` (for example --duration 60 or --port 9600).
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$repo_root/scripts/setup-env.sh"
exec siteline demo --data-dir "${SITELINE_DEMO_DIR:-$repo_root/demo-data}" "$@"
