# Sourced by scripts/test, scripts/check and scripts/demo: a virtualenv with bmhub installed, and the Debian packages the
# tests need. Safe to run again: it reinstalls only when pyproject.toml changed.

BMHUB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BMHUB_VENV:-$BMHUB_ROOT/.venv}"

bmhub_python() {
  local py
  for py in python3.13 python3.12 python3.11 python3; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "$py"; return 0
    fi
  done
  echo "bmhub needs Python >= 3.11 with venv; none found on PATH" >&2
  return 1
}

bmhub_venv() {  # $1: extras, e.g. "test" or ""
  local extras="$1" stamp want have py
  stamp="$VENV/.bmhub-installed"
  want="$(sha256sum "$BMHUB_ROOT/pyproject.toml" | cut -c1-16) extras=$extras"
  have="$(cat "$stamp" 2>/dev/null || true)"
  # An install with the test extras also serves a plain run: do not reinstall back and forth.
  [ -z "$extras" ] && [ "${have%% *}" = "${want%% *}" ] && want="$have"
  if [ ! -x "$VENV/bin/python" ]; then
    py="$(bmhub_python)" || return 1
    echo "==> creating virtualenv $VENV ($("$py" --version))"
    "$py" -m venv "$VENV" || { echo "python venv failed: on Debian, apt-get install python3-venv" >&2; return 1; }
  fi
  if [ "$have" != "$want" ] || [ ! -x "$VENV/bin/bmhub" ]; then
    echo "==> installing bmhub${extras:+[$extras]} into $VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
    "$VENV/bin/python" -m pip install -q -e "$BMHUB_ROOT${extras:+[$extras]}" 2>&1 | grep -v "^WARNING: Location"
    [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "pip install failed" >&2; return 1; }
    echo "$want" > "$stamp"
  fi
}

# Debian packages that provide the real servers the tests talk to: binary → package.
BMHUB_DEBIAN_SERVERS=(
  "mosquitto:mosquitto"
  "influxd:influxdb"
  "victoria-metrics:victoria-metrics"
  "upsd:nut-server"
  "upsc:nut-client"
  "openssl:openssl"
)

_have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

bmhub_debian_servers() {
  local entry missing=() sudo=""
  for entry in "${BMHUB_DEBIAN_SERVERS[@]}"; do
    _have "${entry%%:*}" || missing+=("${entry#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo="sudo -n"
    else
      echo "!! missing servers for the tests: ${missing[*]}" >&2
      echo "!! not root and no password-less sudo, so they cannot be installed here. Install them with:" >&2
      echo "!!   sudo apt-get install -y ${missing[*]}" >&2
      echo "!! tests that need them will fail and say so." >&2
      return 0
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "!! missing ${missing[*]} and this is not a Debian-like system; install them by hand" >&2
    return 0
  fi
  echo "==> installing Debian packages: ${missing[*]}"
  # Tests start their own servers on free loopback ports; do not let the packages start system services.
  local policy=/usr/sbin/policy-rc.d created=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod +x "$policy" && created=1
  fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  local rc=$?
  [ "$created" -eq 1 ] && $sudo rm -f "$policy"
  [ $rc -eq 0 ] || echo "!! apt-get install ${missing[*]} failed (exit $rc); tests that need them will fail" >&2
  return 0
}
