# Shared helpers for the bench/ scripts (sourced, not run). Every result line a script writes is
# stamped with the date, the commit and the machine, and goes to
# bench/results/<date>-<commit>-<what>.jsonl (see bench/results/README.md).

# The checked-out commit (short hash), "-dirty" when tracked files differ from it.
bench_commit() {
  local c
  c=$(git rev-parse --short=7 HEAD 2>/dev/null) || { echo unknown; return; }
  [ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || c="$c-dirty"
  echo "$c"
}

# One JSON object describing this machine: CPU model, logical cores, memory, OS, kernel, rustc.
_bench_clean() { tr -d '"\\' | tr -s '[:space:]' ' ' | sed 's/^ //; s/ $//'; }
bench_machine_json() {
  local cpu os mem rustc
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1 | _bench_clean)
  os=$( (. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-}") | _bench_clean)
  mem=$(awk '/^MemTotal:/ {printf "%.1f", $2 / 1048576}' /proc/meminfo 2>/dev/null)
  rustc=$(rustc --version 2>/dev/null | _bench_clean)
  printf '{"cpu":"%s","cores":%s,"mem_gib":%s,"os":"%s","kernel":"%s","rustc":"%s"}' \
    "${cpu:-unknown}" "$(nproc)" "${mem:-null}" "${os:-unknown}" "$(uname -r | _bench_clean)" "${rustc:-unknown}"
}

# A fresh results file for WHAT (e.g. "serve"): bench/results/<UTC date>-<commit>-<what>.jsonl,
# with -2, -3, … appended to WHAT if that name is taken. Prints the path.
bench_results_file() {
  local what=$1 dir base path i=2
  dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/results"
  mkdir -p "$dir"
  base="$dir/$(date -u +%F)-$(bench_commit)-$what"
  path="$base.jsonl"
  while [ -e "$path" ]; do path="$base-$i.jsonl"; i=$((i + 1)); done
  echo "$path"
}

# The leading fields of every result line: "date":…,"commit":…,"machine":{…} (no braces).
# Sets PNO to a release `pno`: the one PNO already names, else one built here (shared target).
bench_release_pno() {
  if [ -z "${PNO:-}" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/pno-physics-bench/target}
    cargo build --release --locked -p pno-cli >/dev/null
    PNO=$CARGO_TARGET_DIR/release/pno
  fi
}

bench_stamp() {
  printf '"date":"%s","commit":"%s","machine":%s' \
    "$(date -u +%FT%TZ)" "$(bench_commit)" "$(bench_machine_json)"
}

# Fail with a clear message unless PYTHON runs and can import MODULES (space-separated).
bench_require_python() {  # PYTHON "what it is for" MODULES...
  local py=$1 what=$2; shift 2
  if [ -z "$py" ]; then
    echo "error: no Python interpreter given for $what." >&2
    echo "Pass it as the first argument or set PNO_PEER_PYTHON (install: see docs/peers.md)." >&2
    exit 2
  fi
  if ! command -v "$py" >/dev/null 2>&1; then
    echo "error: $py (the Python for $what) is not an executable." >&2
    exit 2
  fi
  if [ $# -gt 0 ] && ! "$py" -c "import $(IFS=,; echo "$*")" 2>/dev/null; then
    echo "error: $py cannot import $* (needed for $what; install: see docs/peers.md)." >&2
    exit 2
  fi
}

# Fail with a clear message unless DIR holds FILES.
bench_require_peer_dir() {  # DIR "name" "how to set it" FILES...
  local dir=$1 name=$2 how=$3 f; shift 3
  if [ -z "$dir" ]; then
    echo "error: no path to the $name peer given. $how (see docs/peers.md)." >&2
    exit 2
  fi
  for f in "$@"; do
    if [ ! -f "$dir/$f" ]; then
      echo "error: $dir/$f not found: $dir is not a copy of the $name peer. $how (see docs/peers.md)." >&2
      exit 2
    fi
  done
}

# Build `pno` and pno-train's `train` bench in release (extra cargo arguments: "$@", e.g. CUDA
# features) and print the bench executable's path, taken from cargo's JSON messages (target
# `train`, kind `bench`). The package set is bench/models.sh's and quickstart's, so features unify
# identically.
bench_build_train_bench() {
  cargo build --release --locked -p pno-cli -p pno-train "$@" --bins --benches \
      --message-format=json-render-diagnostics |
    python3 -c '
import json, sys
exe = [m["executable"] for m in map(json.loads, sys.stdin)
       if m.get("reason") == "compiler-artifact" and m.get("executable")
       and m["target"]["name"] == "train" and "bench" in m["target"]["kind"]
       and "pno-train" in m["package_id"]]
print(exe[-1] if exe else "")'
}
