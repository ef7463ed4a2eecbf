#!/usr/bin/env bash
# Set up, then run every check: lint, types and the test suite (real H.264, real LMDB, a real
# RTSP server). Extra arguments go to pytest.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SITELINE_APT_PACKAGES="ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly"
export SITELINE_PIP_EXTRAS="test"
source "$repo_root/scripts/setup-env.sh"
cd "$repo_root"

echo "== ruff"
ruff check .
echo "== mypy"
mypy shared agent central
echo "== pytest"
pytest "$@"
