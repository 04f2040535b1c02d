# Shared by scripts/serve and scripts/test: make .venv and install kunjung into it when needed.
# Usage: source scripts/_bootstrap.sh; bootstrap [extra]

find_python() {
  for candidate in "${KUNJUNG_PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "kunjung needs Python 3.11 or newer (set KUNJUNG_PYTHON to its path)" >&2
  return 1
}

bootstrap() {
  local extra="${1:-}" python stamp want
  if [ ! -x .venv/bin/python ]; then
    python=$(find_python) || exit 1
    echo "==> creating .venv with $($python --version)"
    "$python" -m venv .venv
  fi
  # Reinstall only when the package metadata changed, so a second run starts at once.
  want="$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)-${extra:-base}"
  stamp=.venv/.kunjung-installed
  if [ ! -f "$stamp" ] || ! grep -qx -- "$want" "$stamp"; then
    echo "==> installing kunjung${extra:+ with [$extra]} into .venv"
    .venv/bin/python -m pip install --quiet --upgrade pip >/dev/null 2>&1 || true
    .venv/bin/python -m pip install --quiet -e ".${extra:+[$extra]}"
    echo "$want" > "$stamp"
    # a [test] install also satisfies a plain one
    [ -n "$extra" ] && echo "$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)-base" >> "$stamp"
  fi
  [ "$extra" = test ] && ensure_chromium
  mkdir -p var
  # The tests load kunjung's XForms in ODK's own form engine (npm, run by Node): installed from the
  # committed lockfile into an ignored folder, only for the test set-up and only when missing.
  if [ "$extra" = "test" ] && [ ! -d tests/odk/node_modules/@getodk/xforms-engine ] && command -v npm >/dev/null 2>&1; then
    echo "==> installing ODK's form engine for the tests (tests/odk, npm ci)"
    (cd tests/odk && npm ci --no-audit --no-fund --loglevel=error) || echo "(ODK engine not installed: the tests that drive it will fail)"
  fi
}

# The web pages' browser tests (tests/web/test_browser.py) drive Debian's chromium through Playwright's
# Python package, so no browser is downloaded; install it when it is missing and apt can.
ensure_chromium() {
  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 && return 0
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "==> installing chromium for the browser tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 ||
      echo "==> could not install chromium; the browser tests will fail" >&2
  fi
  return 0
}
