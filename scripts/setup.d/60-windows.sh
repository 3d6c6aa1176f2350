#!/usr/bin/env bash
# The Windows parts are cross-built on Linux and tested under Wine:
# Debian's rustc-web + rust-web-src (std for x86_64-pc-windows-gnu is built from source)
# and rust-web-clippy (the clippy of that rustc, for scripts/windows-lint),
# mingw-w64 (linker and C compiler), wine64, and Xvfb + xwd + netpbm for the tray
# screenshot. msitools/wixl are for the MSI.
set -euo pipefail
apt_install rustc-web rust-web-src gcc-mingw-w64-x86-64-win32 binutils-mingw-w64-x86-64 \
  wine64 msitools wixl xvfb xauth x11-apps netpbm jq rust-web-clippy

