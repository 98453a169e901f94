#!/bin/sh
# Run a libFuzzer target with its output in a log file, and print what
# matters: on failure the last 100 lines (the sanitizer or libFuzzer report
# and the crashing input's file name), on success the final stats. A 30 s
# run prints thousands of progress lines; shown whole, CI logs cut them
# before the report.
#   run.sh LOG BINARY ARGS...
log=$1
shift
"$@" >"$log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
  echo "fuzzer failed (exit $rc); the end of $log:"
  tail -n 100 "$log"
else
  tail -n 3 "$log"
fi
exit $rc
