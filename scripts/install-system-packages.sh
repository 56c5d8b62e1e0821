#!/usr/bin/env bash
# Install the Debian packages payguard needs, if any is missing. Safe to run again.
# Runs apt-get as root, or through sudo for a user who has it.
set -euo pipefail

packages=(
  postgresql-15
  postgresql-15-pgtap
  postgresql-15-plpgsql-check
  postgresql-15-cron
  postgresql-15-pgaudit
  libtap-parser-sourcehandler-pgtap-perl
  python3
  python3-venv
  nodejs
  npm
)

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$package")
done

# A machine may already have node and npm from elsewhere: do not replace them.
if command -v node >/dev/null && command -v npm >/dev/null; then
  filtered=()
  for package in "${missing[@]}"; do
    [[ "$package" == nodejs || "$package" == npm ]] || filtered+=("$package")
  done
  missing=("${filtered[@]}")
fi

if ((${#missing[@]} == 0)); then
  exit 0
fi

if ((EUID == 0)); then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  echo "error: missing Debian packages ${missing[*]}, and no sudo to install them; ask an" \
    "administrator to run: apt-get install ${missing[*]}" >&2
  exit 1
fi

echo "installing Debian packages: ${missing[*]}"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends \
  "${missing[@]}"
