#!/usr/bin/env bash
# Produce the dataset: crawl Docker Hub's official images into the store, then finalize it.
#
#   dataset-generation/generate.sh             # against Docker Hub (https://hub.docker.com)
#   dataset-generation/generate.sh --offline   # against the bundled local Docker Hub double
#
# An interrupted run is continued (`crawl --resume`); otherwise a new crawl starts, which on a
# store that holds a finished crawl is a cheap refresh (fit for a daily schedule). Jobs that fail
# (exit 3) are tried again once with --resume before the dataset is written. Offline, the double
# listens on a new port each time, so the offline store (digestmap-offline.redb) starts afresh.
# Environment: DB (store, default digestmap.redb), OUT (dataset, default digests.ndjson),
# WORKERS (default 4), RPS (default 2), plus anything digestmap reads (RUST_LOG).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
db=${DB:-digestmap.redb}
out=${OUT:-digests.ndjson}
workers=${WORKERS:-4}
rps=${RPS:-2}
hub_args=()
hub_pid=

cleanup() { [ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null || true; }
trap cleanup EXIT

cargo build --release --quiet --manifest-path "$root/Cargo.toml" --bin digestmap
target=${CARGO_TARGET_DIR:-$root/target}
bin="$target/release/digestmap"

if [ "${1:-}" = "--offline" ]; then
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" --example fake_hub
  log=$(mktemp)
  "$target/release/examples/fake_hub" --port 0 >"$log" &
  hub_pid=$!
  for _ in $(seq 1 100); do
    url=$(sed -n 's/^listening on //p' "$log")
    [ -n "$url" ] && break
    sleep 0.1
  done
  [ -n "${url:-}" ] || { echo "the local Docker Hub double did not start" >&2; exit 1; }
  echo "offline: crawling the local Docker Hub double at $url" >&2
  hub_args=(--hub-url "$url")
  # The double needs no credentials: none of the user's are sent to it.
  unset DOCKERHUB_USERNAME DOCKERHUB_TOKEN
  DOCKER_CONFIG=$(mktemp -d)
  export DOCKER_CONFIG
  db=${DB:-digestmap-offline.redb}
  rm -f "$db"
  # The double has no Hub rate limit to respect.
  rps=${RPS:-200}
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
if "$bin" --db "$db" status 2>/dev/null | grep -q "unfinished"; then
  crawl --resume || code=$?
else
  crawl "${hub_args[@]}" || code=$?
fi
if [ "$code" = 3 ]; then
  echo "some jobs failed; trying them once more" >&2
  code=0
  crawl --resume || code=$?
fi
[ "$code" = 0 ] || { echo "crawl ended with exit code $code; run this script again to continue" >&2; exit "$code"; }

# A dated copy beside the stable name, so a published history of datasets can be kept.
dated="$(dirname "$out")/$(basename "$out" .ndjson)-$(date -u +%Y-%m-%d).ndjson"
"$bin" --db "$db" finalize --out "$dated"
cp -f "$dated" "$out.tmp" && mv -f "$out.tmp" "$out"
echo "dataset written to $out (and $dated)" >&2
