#!/bin/sh
# The images' entrypoint: `docker run IMAGE [PROGRAM] [--flags...]`.
# PROGRAM is one of the harness programs below; without one, `bench` runs.
set -eu
case "${1:-}" in
  bench|gate|report|validate|merge|diverge|scan|bench_speed|tune|reeval|compare_configs)
    program="$1"
    shift
    ;;
  *)
    program=bench
    ;;
esac
exec python -m "harness.${program}" "$@"
