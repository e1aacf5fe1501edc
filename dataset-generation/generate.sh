#!/usr/bin/env bash
# Produce the dataset: crawl Docker Hub's official images into the store, learn the image IDs and
# layer chains from the registry (`enrich`), then finalize it.
#
#   dataset-generation/generate.sh             # against Docker Hub (https://hub.docker.com)
#   dataset-generation/generate.sh --offline   # against the bundled local Docker Hub double
#
# An interrupted run is continued (`crawl --resume`); otherwise a new crawl starts, which on a
# store that holds a finished crawl is a cheap refresh (fit for a daily schedule). Jobs that fail
# (exit 3) are tried again once with --resume before the dataset is written.
#
# `enrich` runs after the crawl: against Docker Hub's registry online, against the double's own
# registry routes offline. Online it stops at the pull budget (exit 6); the dataset is still
# written, with the image IDs learned so far, and the script ends with 6: run it again once the
# window frees to learn more (nothing is fetched twice). Enrich jobs that fail (exit 3) are tried
# again once with --resume; the dataset is then written anyway and the script ends with 3.
#
# This script never deletes or empties a store. Offline, the double listens on a new port each
# time, so without DB the crawl goes to a fresh store in a new temporary folder (kept, and named at
# the end); a DB given offline is used as it is, and refused when it is not a store, holds a crawl
# of another hub (the double's made-up data must not mix with it) or an unfinished one (its double
# is gone).
#
# Opt-in, a registry with a catalog for the Windows bases the official images are built FROM:
# CATALOG=https://mcr.microsoft.com crawls, after enrich, CATALOG_REPOS of it (default
# "windows/servercore windows/nanoserver", the bases the official images' Windows variants use)
# into the same store (`crawl --catalog`, resumed when unfinished), so the dataset names them
# host-qualified. Its exit 3 or 4 still writes the dataset and ends the script with that code.
#
# Environment: DB (store, default digestmap.redb), OUT (dataset, default digests.ndjson),
# WORKERS (default 4), RPS (crawl's, default 2; offline it is also enrich's, default 1000; online
# enrich keeps its own default), DIGESTMAP_BIN and FAKE_HUB_BIN (use these binaries instead of
# building them), FAKE_HUB_URL (offline: use this running double instead of starting one), plus
# anything digestmap reads (RUST_LOG).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-digests.ndjson}
workers=${WORKERS:-4}
rps=${RPS:-2}
hub_args=()
enrich_args=()
hub_pid=
scratch=
offline=

case "${1:-}" in
  --offline) offline=1 ;;
  "") ;;
  *) echo "usage: $0 [--offline]" >&2; exit 2 ;;
esac

die() { echo "generate.sh: $*" >&2; exit 2; }
# Two files are written, the dataset and a dated copy beside it: standard output cannot hold both.
case "$out" in "" | -) die "OUT must name a file, not '$out'" ;; esac

# Only what this script made goes: the double's process and its scratch folder, never a store.
cleanup() {
  if [ -n "$hub_pid" ]; then kill "$hub_pid" 2>/dev/null || true; fi
  if [ -n "$scratch" ]; then rm -rf "$scratch"; fi
}
trap cleanup EXIT

target=${CARGO_TARGET_DIR:-$root/target}
if [ -n "${DIGESTMAP_BIN:-}" ]; then
  bin=$DIGESTMAP_BIN
else
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin digestmap
  bin="$target/release/digestmap"
fi

# What `status` says of the store, or nothing when there is no store it can read. Captured whole
# rather than piped into `grep -q`, which stops reading at its first match.
store_status() { "$bin" --db "$db" status 2>/dev/null || true; }
unfinished() { grep -q '^crawl #.*: unfinished' <<<"$1"; }

if [ -n "$offline" ]; then
  if [ -n "${DB:-}" ]; then
    db=$DB
    if [ -e "$db" ]; then
      state=$(store_status)
      [ -n "$state" ] || die "DB=$db is not a digestmap store that can be read; it is left as it is (leave DB unset for a fresh offline store)"
      hub=$(sed -n 's/^  hub: \([^ ]*\).*/\1/p' <<<"$state")
      case "$hub" in
        "" | http://127.0.0.1:* | http://localhost:* | "http://[::1]:"*) ;;
        *) die "DB=$db holds a crawl of $hub; the offline double's made-up data must not be mixed into it (leave DB unset for a fresh offline store)" ;;
      esac
      if unfinished "$state"; then
        die "DB=$db holds an unfinished crawl of an earlier double, which is gone: it cannot be resumed offline (leave DB unset for a fresh offline store)"
      fi
    fi
  fi
  scratch=$(mktemp -d)
  if [ -n "${FAKE_HUB_URL:-}" ]; then
    url=$FAKE_HUB_URL
  else
    if [ -n "${FAKE_HUB_BIN:-}" ]; then
      fake_hub=$FAKE_HUB_BIN
    else
      cargo build --release --quiet --manifest-path "$root/Cargo.toml" --example fake_hub
      fake_hub="$target/release/examples/fake_hub"
    fi
    "$fake_hub" --port 0 >"$scratch/hub.log" &
    hub_pid=$!
    url=
    for _ in $(seq 1 100); do
      url=$(sed -n 's/^listening on //p' "$scratch/hub.log")
      [ -n "$url" ] && break
      kill -0 "$hub_pid" 2>/dev/null || break
      sleep 0.1
    done
    [ -n "$url" ] || { echo "the local Docker Hub double did not start" >&2; exit 1; }
  fi
  if [ -z "${DB:-}" ]; then
    # A fresh store of its own, outside the scratch folder so that it outlives the run.
    db=$(mktemp -d "${TMPDIR:-/tmp}/digestmap-offline.XXXXXX")/store.redb
  fi
  echo "offline: crawling the local Docker Hub double at $url into $db" >&2
  # The double's registry facade lists every tag name, for the anonymous cover of capped
  # repositories; the crawl stores it, so a resumed crawl is not told again.
  hub_args=(--hub-url "$url" --registry "$url")
  # The double needs no credentials: none of the user's are sent to it.
  unset DOCKERHUB_USERNAME DOCKERHUB_TOKEN
  mkdir "$scratch/docker"
  export DOCKER_CONFIG="$scratch/docker"
  # The double has no Hub rate limit to respect.
  rps=${RPS:-200}
  # The double serves its manifests and configs itself, openly.
  enrich_args=(--registry "$url" --rps "${RPS:-1000}")
else
  db=${DB:-digestmap.redb}
fi

crawl() {
  set +e
  "$bin" --db "$db" crawl "$@" --workers "$workers" --rps "$rps"
  code=$?
  set -e
  return $code
}

# Resume an unfinished crawl if the store holds one, else start one (a refresh on a store whose
# last crawl finished).
code=0
if unfinished "$(store_status)"; then
  crawl --resume || code=$?
else
  # `${a[@]+...}`: an empty array is an unbound variable to `set -u` in bash before 4.4.
  crawl ${hub_args[@]+"${hub_args[@]}"} || code=$?
fi
if [ "$code" = 3 ]; then
  echo "some jobs failed; trying them once more" >&2
  code=0
  crawl --resume || code=$?
fi
# Exit 4: the crawl finished but knows some repositories are not fully covered (anonymous paging
# caps). What it has is still worth writing; the script then ends with 4 so a schedule notices,
# and the next run (a plain crawl on an incomplete store) reads the gaps again.
case "$code" in
  0 | 4) ;;
  *) echo "crawl ended with exit code $code; run this script again to continue" >&2; exit "$code" ;;
esac

enrich() {
  set +e
  "$bin" --db "$db" enrich ${enrich_args[@]+"${enrich_args[@]}"} --workers "$workers" "$@"
  enrich_code=$?
  set -e
  return $enrich_code
}

# Image IDs and layer chains. Exit 6 (pull budget) and 3 (failed jobs, after one more try) still
# write the dataset: what the crawl found is whole, only some image IDs are missing.
enrich_code=0
enrich || enrich_code=$?
if [ "$enrich_code" = 3 ]; then
  echo "some enrich jobs failed; trying them once more" >&2
  enrich_code=0
  enrich --resume || enrich_code=$?
fi
case "$enrich_code" in
  0 | 3 | 6) ;;
  *) echo "enrich ended with exit code $enrich_code; run this script again to continue" >&2; exit "$enrich_code" ;;
esac

# Another registry through its catalog (opt-in, above): exit 3 or 4 still writes the dataset.
catalog_code=0
if [ -n "${CATALOG:-}" ]; then
  catalog_host=${CATALOG#*://}
  catalog_host=${catalog_host%%/*}
  set +e
  if grep -qF "registry $catalog_host (" <<<"$(store_status | grep ': unfinished')"; then
    "$bin" --db "$db" crawl --catalog "$CATALOG" --resume --workers "$workers" --rps "$rps"
  else
    catalog_args=()
    for repo in ${CATALOG_REPOS:-windows/servercore windows/nanoserver}; do
      catalog_args+=(--repo "$repo")
    done
    "$bin" --db "$db" crawl --catalog "$CATALOG" "${catalog_args[@]}" --workers "$workers" --rps "$rps"
  fi
  catalog_code=$?
  set -e
  case "$catalog_code" in
    0 | 3 | 4) ;;
    *) echo "crawl --catalog $CATALOG ended with exit code $catalog_code; run this script again to continue" >&2; exit "$catalog_code" ;;
  esac
fi

# A dated copy beside the stable name, so a published history of datasets can be kept. Both are
# written by finalize, which replaces each atomically (through a symbolic link, its target).
dated="$(dirname "$out")/$(basename "$out" .ndjson)-$(date -u +%Y-%m-%d).ndjson"
"$bin" --db "$db" finalize --out "$dated"
"$bin" --db "$db" -q finalize --out "$out"
echo "dataset written to $out (and $dated)" >&2
if [ "$code" = 4 ]; then
  echo "the crawl is incomplete (see \`digestmap --db $db status\`): the dataset holds what was found; run this script again (or sign in) to read the gaps" >&2
fi
case "$enrich_code" in
  6) echo "enrich stopped at the registry's pull budget: the dataset holds the image IDs learned so far; run this script again later (after the window \`digestmap --db $db status\` names) to learn more" >&2 ;;
  3) echo "some enrich jobs failed (see \`digestmap --db $db status\`): the dataset lacks their image IDs; run this script again to retry them" >&2 ;;
esac
case "$catalog_code" in
  3 | 4) echo "the crawl of $CATALOG ended with exit code $catalog_code (see \`digestmap --db $db status\`): the dataset holds what it found; run this script again to continue" >&2 ;;
esac
# The crawl's exit 4 first, else enrich's 6 or 3, else the catalog crawl's: a schedule notices
# each.
if [ "$code" = 0 ]; then
  code=$enrich_code
fi
if [ "$code" = 0 ]; then
  code=$catalog_code
fi
if [ -n "$offline" ] && [ -z "${DB:-}" ]; then
  echo "the offline store is $db (for digestmap --db $db lookup; remove its folder when done)" >&2
fi
exit "$code"
