#!/bin/sh
# isol's benchmark (see bench/README.md): bench/run.sh [--quick] [--only SECTION] [--runs N] [--json FILE]
exec python3 "$(dirname "$0")/bench.py" "$@"
