#!/bin/sh
# tests/google/setup.sh - install what `make test-google` needs, and only
# what is missing: Java (the emulator's launcher checks `java -version`,
# 11 or later) and node/npm from Debian, then the pinned npm packages of
# package-lock.json under tests/google/node_modules (`npm ci`, no install
# scripts). Test tooling only: building nscollect downloads nothing.
set -e
cd "$(dirname "$0")"
missing=""
java -version >/dev/null 2>&1 || missing="$missing default-jre-headless"
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
if [ -n "$missing" ]; then
    echo "test-google: installing$missing (Debian)"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq || true
    $SUDO apt-get install -y -qq $missing
fi
# Reinstall only when the lock file changed since the last install.
if ! cmp -s package-lock.json node_modules/.nscollect-installed-lock 2>/dev/null; then
    echo "test-google: npm ci (firebase-tools, google-auth-library, jsonwebtoken)"
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
    cp package-lock.json node_modules/.nscollect-installed-lock
fi
