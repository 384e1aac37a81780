#!/usr/bin/env bash
# Whether the object files of a folder call each other in a loop: for each pair of files A, B
# of BUILD/src/DIR (default kernels), A uses a symbol B defines and B one A defines -> a cycle.
# Also reports longer loops (A -> B -> C -> A) by a depth-first search over the "uses" graph.
# Usage (from the repository root, after make): bash tests/tools/symbol_cycles.sh [BUILD] [DIR];
# exits 1 if there is a loop.
set -u
BUILD=${1:-build}; DIR=${2:-kernels}
objs=("$BUILD/src/$DIR"/*.o)
[ -e "${objs[0]}" ] || { echo "no objects in $BUILD/src/$DIR (build first)"; exit 2; }
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
for o in "${objs[@]}"; do
  b=$(basename "$o" .o)
  [ -e "src/$DIR/$b.c" ] || continue # a stale object of a removed source
  nm --defined-only "$o" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | sort -u > "$T/$b.def"
  nm -u "$o" | awk '{print $2}' | sort -u > "$T/$b.use"
done
for a in "$T"/*.use; do
  A=$(basename "$a" .use)
  for d in "$T"/*.def; do
    B=$(basename "$d" .def); [ "$A" = "$B" ] && continue
    comm -12 "$a" "$d" | grep -q . && echo "$A $B"
  done
done > "$T/edges"
python3 - "$T/edges" "$DIR" <<'PY'
import sys
edges = [l.split() for l in open(sys.argv[1]) if l.strip()]
g = {}
for a, b in edges: g.setdefault(a, set()).add(b)
cycles, state, stack = [], {}, []
def dfs(u):
    state[u] = 1; stack.append(u)
    for v in sorted(g.get(u, ())):
        if state.get(v) == 1: cycles.append(stack[stack.index(v):] + [v])
        elif not state.get(v): dfs(v)
    stack.pop(); state[u] = 2
for u in sorted(g): 
    if not state.get(u): dfs(u)
for a in sorted(g): print(f"  {a} -> {', '.join(sorted(g[a]))}")
if cycles:
    for c in cycles: print("CYCLE: " + " -> ".join(c))
    sys.exit(1)
print(f"no call loops between the files of src/{sys.argv[2]}")
PY
