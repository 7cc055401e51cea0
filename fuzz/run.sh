#!/usr/bin/env bash
# The longer fuzz run (see README.md): every target for SECONDS (default 300) with
# libFuzzer, one after the other, seeded with seeds/<target>/ and, for the selector,
# the Go oracle's whole corpus. New inputs go to corpus/<target>/ (git-ignored; the
# stable harness, tests/fuzz_targets.rs, replays it too), crashes to artifacts/.
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-300}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(admission_review policy_document selector relay_request)
fi

oracle="$(mktemp -d)"
trap 'rm -rf "$oracle"' EXIT
python3 - "$oracle" <<'PY'
import json, sys, hashlib, pathlib
out = pathlib.Path(sys.argv[1])
for s in json.load(open("../policy/tests/fixtures/selector-oracle/corpus.json"))["selectors"]:
    b = s.encode()
    (out / hashlib.sha1(b).hexdigest()).write_bytes(b)
PY

cargo +nightly fuzz build -O
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  extra=()
  if [ "$target" = selector ]; then extra=("$oracle"); fi
  echo "=== $target: ${seconds}s"
  cargo +nightly fuzz run -O "$target" "corpus/$target" "seeds/$target" "${extra[@]}" -- \
    -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=4096 -timeout=10
done
