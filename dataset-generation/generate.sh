#!/usr/bin/env bash
# Produce the dataset: crawl Docker Hub's official images into the store, then finalize it.
#
#   dataset-generation/generate.sh             # against Docker Hub (https://hub.docker.com)
#   dataset-generation/generate.sh --offline   # against the bundled local Docker Hub double
#
# An interrupted run is continued (`crawl --resume`); otherwise a new crawl starts, which on a
# store that holds a finished crawl is a cheap refresh (fit for a daily schedule). Jobs that fail
# (exit 3) are tried again once with --resume before the dataset is written.
#
# This script never deletes or empties a store. Offline, the double listens on a new port each
# time, so without DB the crawl goes to a fresh store in a new temporary folder (kept, and named at
# the end); a DB given offline is used as it is, and refused when it is not a store, holds a crawl
# of another hub (the double's made-up data must not mix with it) or an unfinished one (its double
# is gone).
#
# Environment: DB (store, default digestmap.redb), OUT (dataset, default digests.ndjson),
# WORKERS (default 4), RPS (default 2), DIGESTMAP_BIN and FAKE_HUB_BIN (use these binaries instead
# of building them), plus anything digestmap reads (RUST_LOG).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${OUT:-digests.ndjson}
workers=${WORKERS:-4}
rps=${RPS:-2}
hub_args=()
registry_args=()
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
  if [ -z "${DB:-}" ]; then
    # A fresh store of its own, outside the scratch folder so that it outlives the run.
    db=$(mktemp -d "${TMPDIR:-/tmp}/digestmap-offline.XXXXXX")/store.redb
  fi
  echo "offline: crawling the local Docker Hub double at $url into $db" >&2
  hub_args=(--hub-url "$url")
  # The double's registry facade lists every tag name, for the anonymous cover of capped
  # repositories; the registry is not stored, so a resumed crawl is told again.
  registry_args=(--registry "$url")
  # The double needs no credentials: none of the user's are sent to it.
  unset DOCKERHUB_USERNAME DOCKERHUB_TOKEN
  mkdir "$scratch/docker"
  export DOCKER_CONFIG="$scratch/docker"
  # The double has no Hub rate limit to respect.
  rps=${RPS:-200}
else
  db=${DB:-digestmap.redb}
fi

crawl() {
  set +e
  "$bin" --db "$db" crawl "$@" ${registry_args[@]+"${registry_args[@]}"} --workers "$workers" --rps "$rps"
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

# A dated copy beside the stable name, so a published history of datasets can be kept. Both are
# written by finalize, which replaces each atomically (through a symbolic link, its target).
dated="$(dirname "$out")/$(basename "$out" .ndjson)-$(date -u +%Y-%m-%d).ndjson"
"$bin" --db "$db" finalize --out "$dated"
"$bin" --db "$db" -q finalize --out "$out"
echo "dataset written to $out (and $dated)" >&2
if [ "$code" = 4 ]; then
  echo "the crawl is incomplete (see \`digestmap --db $db status\`): the dataset holds what was found; run this script again (or sign in) to read the gaps" >&2
fi
if [ -n "$offline" ] && [ -z "${DB:-}" ]; then
  echo "the offline store is $db (for digestmap --db $db lookup; remove its folder when done)" >&2
fi
exit "$code"
