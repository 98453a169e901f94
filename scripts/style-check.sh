#!/usr/bin/env bash
# The project's C style, checked (issue 12.7; docs/STYLE.md says why):
#   1. clang-format (.clang-format) leaves every C file as it is: layout, and
#      lines of at most 120 columns;
#   2. an assignment inside an `if` condition is only the status idiom
#      `if ((rc = f(...)))`; anything else is assigned first;
#   3. a `store *` is named `st` (sqlite3 connections are `db`, statements `q`),
#      and nothing else is: no `sqlite3_stmt *st`;
#   4. browser tests wait through lib.mjs's waitUntil (timer polling), never a
#      bare page.waitForFunction (animation-frame polling starves under load);
#   5. JSON is parsed in src/ only through core_json_load* and written only
#      through core_json_dumps (core.h says why: under allocation failure
#      jansson drops a byte of a parsed string, or a key of a dumped text).
# Exit 1 with the offending places listed.
set -uo pipefail
cd "$(dirname "$0")/.."
CF=$(command -v clang-format || command -v clang-format-14 || true)
if [[ -z "$CF" ]]; then echo "style: clang-format not installed (scripts/deps.sh installs it)" >&2; exit 1; fi
mapfile -t files < <(git ls-files '*.c' '*.h' 2>/dev/null || find src tests bench -name '*.[ch]')
bad=0
if ! "$CF" --dry-run --Werror "${files[@]}" 2>/tmp/style-format.$$; then
  echo "style: clang-format would change these (run: clang-format -i FILE):" >&2
  grep -oE '^[^:]+:[0-9]+' /tmp/style-format.$$ | sort -u | head -40 >&2
  bad=1
fi
rm -f /tmp/style-format.$$
assign=$(grep -nE 'if \(!?\(+[A-Za-z_][A-Za-z0-9_>.-]*(\[[^]]*\])? = ' "${files[@]}" | grep -vE 'if \(!?\(rc = ' || true)
if [[ -n "$assign" ]]; then
  echo "style: assignment inside an if condition (only 'if ((rc = f()))' is allowed):" >&2
  echo "$assign" >&2
  bad=1
fi
names=$(grep -nE '\bstore \*[a-z_]+[,;)= ]' "${files[@]}" | grep -vE '\bstore \*st[,;)= ]' || true)
if [[ -n "$names" ]]; then
  echo "style: a 'store *' is named 'st':" >&2
  echo "$names" >&2
  bad=1
fi
stmts=$(grep -nE 'sqlite3_stmt \*st\b' "${files[@]}" || true)
if [[ -n "$stmts" ]]; then
  echo "style: 'st' is a store *; a prepared statement is 'q':" >&2
  echo "$stmts" >&2
  bad=1
fi
raf=$(grep -nE '\.waitForFunction\(' tests/browser/*.mjs | grep -v '^tests/browser/lib.mjs:' || true)
if [[ -n "$raf" ]]; then
  echo "style: browser tests wait with waitUntil(page, fn) from lib.mjs, not page.waitForFunction:" >&2
  echo "$raf" >&2
  bad=1
fi
loads=$(grep -nE '(^|[^_a-z])json_(load(s|b|f|_file)|dumps)\(' $(git ls-files 'src/*.c' 2>/dev/null || find src -name '*.c') | grep -v '^src/core/json.c:' || true)
if [[ -n "$loads" ]]; then
  echo "style: parse JSON with core_json_loadb/_loads/_loadf/_load_file and write it with core_json_dumps (src/core/core.h), not jansson's:" >&2
  echo "$loads" >&2
  bad=1
fi
exit $bad
