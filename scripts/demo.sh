#!/usr/bin/env bash
# The main job: set up, then run a site agent with synthetic cameras recording into its
# embedded store. Ctrl-C stops it cleanly; run it again and it goes on with the same site.
set -euo pipefail
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$repo_root/scripts/setup-env.sh"

site_dir="${SITELINE_DEMO_DIR:-$repo_root/demo-data/site-1}"
if [ ! -f "$site_dir/agent.toml" ]; then
  siteline agent init --dir "$site_dir" --name "Demo shop" --admin-password "${SITELINE_DEMO_PASSWORD:-demo-admin}"
fi
exec siteline agent run --config "$site_dir/agent.toml" "$@"
