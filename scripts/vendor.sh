#!/usr/bin/env bash
# Copy the browser libraries the dashboard uses from node_modules (installed
# by npm ci from package-lock.json) into web/vendor/, which the service
# serves as static files. No map tiles, fonts or scripts come from the
# internet at run time. web/vendor/ is generated: not committed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=web/vendor
mkdir -p "$out"
files=(
  d3-array/dist/d3-array.min.js
  d3-geo/dist/d3-geo.min.js
  topojson-client/dist/topojson-client.min.js
  uplot/dist/uPlot.iife.min.js
  uplot/dist/uPlot.min.css
  us-atlas/states-10m.json
  world-atlas/countries-110m.json
)
for f in "${files[@]}"; do
  src=node_modules/$f
  [[ -f $src ]] || { echo "vendor: missing $src (run npm ci)" >&2; exit 1; }
  dst=$out/$(basename "$f")
  if [[ ! -f $dst || $src -nt $dst ]]; then cp "$src" "$dst"; fi
done
# Their licences travel with them.
for p in d3-array d3-geo topojson-client uplot us-atlas world-atlas; do
  for l in LICENSE LICENSE.md LICENSE.txt; do
    [[ -f node_modules/$p/$l ]] && cp node_modules/$p/$l "$out/LICENSE.$p" && break
  done
done
echo "vendor: web/vendor ready"
