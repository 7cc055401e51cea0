# Sourced by the benches that count instructions with valgrind's cachegrind
# (webhook-instructions.sh, relay-instructions.sh), from the repository's root:
# N, the requests counted (default 2000); valgrind, required; BINS, the binaries
# compared as "label=path ..." (default: this checkout's release build).
N=${N:-2000}
command -v valgrind >/dev/null 2>&1 || { echo "valgrind is required (apt install valgrind)" >&2; exit 1; }
if [ -z "${BINS:-}" ]; then
    cargo build --release -q -p secret-relay
    BINS="this=$PWD/target/release/secret-relay"
fi
