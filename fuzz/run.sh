#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 120) each. cargo-fuzz uses nightly-only flags;
# RUSTC_BOOTSTRAP lets this machine's stable toolchain accept them.
#   cargo install cargo-fuzz && fuzz/run.sh 300
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${1:-120}"
for target in frame_decode envelope_open group_log_verify sealed_open; do
  echo "== $target ($SECONDS_EACH s)"
  RUSTC_BOOTSTRAP=1 cargo fuzz run -O "$target" "corpus/$target" -- -max_total_time="$SECONDS_EACH" -max_len=65536
done
