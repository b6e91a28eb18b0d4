#!/usr/bin/env bash
# Instructions per operation of one case, counted with callgrind (valgrind):
#
#   bash benchmarks/callgrind.sh PYTHON CASE [N]
#
# Runs benchmarks/callgrind_cases.py CASE with 0 and with N (default 2000)
# repetitions under callgrind and prints (Ir(N) - Ir(0)) / N: start-up and
# imports cancel out.  PYTHONHASHSEED is fixed so both runs hash alike.
set -euo pipefail
PYTHON=$1
if [[ $PYTHON == */* ]]; then
    PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
fi
cd "$(dirname "$0")"
CASE=$2
N=${3:-2000}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
count() {
    PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file="$OUT/$1.out" \
        "$PYTHON" callgrind_cases.py "$CASE" "$1" 2>&1 | awk '/Collected/ {print $4}'
}
zero=$(count 0) || { echo "$0: valgrind failed (is it installed? apt-get install valgrind)" >&2; exit 1; }
many=$(count "$N")
"$PYTHON" -c "print('$CASE', round(($many - $zero) / $N))"
