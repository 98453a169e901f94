#!/bin/sh
# Run a libFuzzer target with its output in a log file, and print what
# matters: on failure the last 100 lines (the sanitizer or libFuzzer report)
# and the input that failed, as a hex dump, so a failure on a CI machine can
# be reproduced from its log alone; on success the final stats. A 30 s run
# prints thousands of progress lines; shown whole, CI logs cut them before
# the report.
#   run.sh LOG BINARY ARGS...
# Failing inputs are written next to LOG (LOG.crash-…, LOG.timeout-…).
log=$1
shift
bin=$1
shift
rm -f "$log".crash-* "$log".leak-* "$log".timeout-* "$log".oom-* "$log".slow-unit-*
"$bin" -artifact_prefix="$log." "$@" >"$log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
  echo "fuzzer failed (exit $rc); the end of $log:"
  tail -n 100 "$log"
  for f in "$log".crash-* "$log".leak-* "$log".timeout-* "$log".oom-*; do
    [ -f "$f" ] || continue
    echo "failing input $f ($(wc -c <"$f") bytes; reproduce: $bin FILE), first 4 KiB:"
    head -c 4096 "$f" | od -A x -t x1z -v
  done
else
  grep -F "Slowest unit" "$log" | tail -n 3
  tail -n 3 "$log"
fi
exit $rc
