#!/usr/bin/env bash
# The kernel driver build and its Wine tests: Debian's rustc-web (+ library source for
# -Zbuild-std=core), mingw-w64 (linker, dlltool, objdump, C compiler for the stand-in),
# wine64, and openssl for the real ClientHello the tests capture.
set -euo pipefail
apt_install rustc-web rust-web-src gcc-mingw-w64-x86-64-win32 binutils-mingw-w64-x86-64 wine64 openssl python3
