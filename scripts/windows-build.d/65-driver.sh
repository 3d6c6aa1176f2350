# shellcheck shell=bash
# Hook of scripts/windows-build: the kernel driver toktra-wfp.sys and its Wine test
# scaffolding (see scripts/windows-build-driver).
"$ROOT/scripts/windows-build-driver"
