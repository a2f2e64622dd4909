#!/bin/bash
# Manual pages: `mandoc -T lint -W warning` clean (exit 0), `groff -ww -man -z` silent, each page
# renders with man(1); every switch the built binaries list in --help appears in their section 8
# page, and every key of each shipped sample config appears in the section 5 page.
source "$(dirname "$0")/lib.sh"
pages=("$ROOT"/man/*.[58])
((${#pages[@]} == 4)) && ok "4 pages: ${pages[*]##*/}" || bad "expected 4 pages, found ${#pages[@]}"
if need_cmd mandoc; then
  out=$(mandoc -T lint -W warning "${pages[@]}" 2>&1)
  rc=$?
  ((rc == 0)) && [[ -z $out ]] && ok "mandoc -T lint -W warning: clean" || bad "mandoc (rc $rc): $out"
else
  bad "mandoc missing (apt-get install mandoc)"
fi
out=$(groff -ww -man -z "${pages[@]}" 2>&1)
[[ -z $out ]] && ok "groff -ww -man -z: silent" || bad "groff: $out"
for p in "${pages[@]}"; do
  MANWIDTH=80 man -l "$p" 2>/dev/null | grep -q '^NAME' && ok "man -l ${p##*/} renders" ||
    bad "man -l ${p##*/}"
done

# The roff source with \- turned into -, for plain-text searches.
plain() { sed -e 's/\\-/-/g' -e 's/\\(dq/"/g' "$1"; }
for pair in "rpyc-registryd:$RPYC_REGISTRYD" "rpyc-classicd:$RPYC_CLASSICD"; do
  name=${pair%%:*} bin=${pair#*:}
  page=$ROOT/man/$name.8
  mapfile -t sw < <(help_switches "$bin")
  ((${#sw[@]} >= 5)) || bad "$name --help lists only ${#sw[@]} switches"
  missing=()
  text=$(plain "$page")  # (grep -q on a pipe would SIGPIPE sed, and pipefail is on)
  for s in "${sw[@]}"; do
    grep -qE -- "(^|[^-A-Za-z0-9])${s}([^-A-Za-z0-9]|$)" <<<"$text" || missing+=("$s")
  done
  ((${#missing[@]} == 0)) && ok "$name.8 documents all ${#sw[@]} switches of --help" ||
    bad "$name.8 lacks: ${missing[*]}"
done
for pair in "rpyc-registryd:$ROOT/etc/rpyc-registryd.toml" "rpyc-classicd:$ROOT/etc/rpyc/rpyc-classicd.toml"; do
  name=${pair%%:*} conf=${pair#*:}
  mapfile -t keys < <(sed -nE 's/^#? ?([a-z][a-z0-9-]*) = .*/\1/p' "$conf")
  missing=()
  text=$(plain "$ROOT/man/$name.toml.5")
  for k in "${keys[@]}"; do grep -q "^\.BR $k " <<<"$text" || missing+=("$k"); done
  ((${#missing[@]} == 0)) && ok "$name.toml.5 documents all ${#keys[@]} keys of the sample" ||
    bad "$name.toml.5 lacks: ${missing[*]}"
done
finish
