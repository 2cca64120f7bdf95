#!/bin/sh
# The images' entrypoint: `docker run IMAGE [PROGRAM] [--flags...]`.
# PROGRAM is one of the harness programs below; without one, `bench` runs.
set -eu
case "${1:-}" in
  bench|bench_speed|compare_configs|diverge|doctor|gate|isolation_cost|merge|reeval|report|rerun|scan|tune|validate)
    program="$1"
    shift
    ;;
  *)
    program=bench
    ;;
esac
exec python -m "harness.${program}" "$@"
