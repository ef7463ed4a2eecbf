#!/usr/bin/env bash
# Sourced by demo.sh and test.sh: installs what Siteline needs on a Debian machine and makes
# the project's virtual environment. Safe to run any number of times: it installs only what
# is missing.
#   SITELINE_APT_PACKAGES  extra Debian packages to install (space separated)
#   SITELINE_PIP_EXTRAS    extras of the siteline package to install (e.g. "test")
set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo_root/.venv"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_packages="python3 python3-venv python3-pip ${SITELINE_APT_PACKAGES:-}"
missing=()
for pkg in $apt_packages; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "siteline: installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "siteline: please install these packages with your system's package manager: ${missing[*]}" >&2
    exit 1
  fi
fi

python=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    python=$(command -v "$candidate"); break
  fi
done
if [ -z "$python" ]; then
  echo "siteline: Python 3.11 or newer is needed" >&2
  exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "siteline: making the virtual environment in $venv"
  "$python" -m venv "$venv"
fi

extras=${SITELINE_PIP_EXTRAS:-}
spec="$repo_root"
[ -n "$extras" ] && spec="$repo_root[$extras]"
stamp="$venv/.siteline-installed"
want="$(cat "$repo_root/pyproject.toml" | sha256sum | cut -c1-16) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$venv/bin/python" -c 'import agent, central, shared' 2>/dev/null; then
  echo "siteline: installing Python packages into $venv"
  "$venv/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$venv/bin/python" -m pip install -q -e "$spec"
  echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
