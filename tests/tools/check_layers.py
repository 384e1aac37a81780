#!/usr/bin/env python3
"""Checks mvmoe's architecture rules over the sources and the built objects:

  1. no loops between files: no source file may reach itself through the functions it calls
     (the undefined symbols of its object file, resolved to the object that defines them), and
     no header may reach itself through `#include "..."` lines;
  2. no upward arrows between folders: each folder sits on a layer (LAYERS below) and uses
     only folders on lower layers (include/, the public header, holds only declarations and is
     usable by all).

Usage: check_layers.py [BUILD]   (BUILD: the build folder holding the .o files; default build)
Exit status 0 when both rules hold, 1 with one line per violation otherwise, 2 on usage errors.
Anyone can run it: `python3 tests/tools/check_layers.py build` after `make`.
"""
import collections
import os
import re
import subprocess
import sys

# Lowest first. A folder may use only folders listed before it.
# src/runtime, the dependency-free inference runtime (include/mvmoe_run.h), uses no other folder.
LAYERS = ["src/runtime", "src/core", "src/kernels", "src/data", "src/model", "src/io", "src/train",
          "src/analysis", "src/report", "cli"]
RANK = {f: i for i, f in enumerate(LAYERS)}
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def folder(path):
    parts = path.split("/")
    if parts[0] == "src" and len(parts) > 2:
        return "src/" + parts[1]
    return parts[0]


def module(path):
    return os.path.splitext(path)[0]


def sources():
    out = []
    for top in ("src", "cli", "include"):
        for d, _, files in os.walk(top):
            out += [os.path.join(d, f) for f in files if f.endswith((".c", ".h"))]
    return sorted(out)


def resolve(src, name):
    for base in (os.path.dirname(src), "src", "include"):
        p = os.path.normpath(os.path.join(base, name))
        if os.path.exists(p):
            return p
    return None


def include_edges(files):
    edges = collections.defaultdict(set)
    for f in files:
        with open(f, encoding="utf-8") as fh:
            for line in fh:
                m = INCLUDE.match(line)
                if m:
                    t = resolve(f, m.group(1))
                    if t:
                        edges[f].add((t, "includes " + m.group(1)))
    return edges


def nm(obj, args):
    r = subprocess.run(["nm", *args, obj], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"check_layers: nm {' '.join(args)} {obj} failed: {r.stderr.strip()}")
    return r.stdout.splitlines()


def symbol_edges(build, files):
    objs = {}
    for f in files:
        if f.endswith(".c"):
            o = os.path.join(build, f[:-2] + ".o")
            if not os.path.exists(o):
                sys.exit(f"check_layers: {o} is missing; run `make BUILD={build}` first")
            objs[f] = o
    owner = {}
    for f, o in objs.items():
        for line in nm(o, ["--defined-only", "-g"]):
            parts = line.split()
            if len(parts) == 3:
                owner[parts[2]] = f
    edges = collections.defaultdict(set)
    for f, o in objs.items():
        for line in nm(o, ["-u"]):
            sym = line.split()[-1]
            if sym in owner and owner[sym] != f:
                edges[f].add((owner[sym], "calls " + sym))
    return edges


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in list(graph):
        if root in index:
            continue
        work = [(root, iter(graph.get(root, ())))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1
                    stack.append(w); on.add(w)
                    work.append((w, iter(graph.get(w, ()))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def main():
    if len(sys.argv) > 2:
        print(__doc__, file=sys.stderr)
        return 2
    build = sys.argv[1] if len(sys.argv) == 2 else "build"
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    files = sources()
    unknown = sorted({folder(f) for f in files} - set(RANK) - {"include"})
    if unknown:
        print("check_layers: folders on no layer (add them to LAYERS): " + ", ".join(unknown))
        return 1
    incs, calls = include_edges(files), symbol_edges(build, files)
    bad = 0
    # rule 1: calls between source files, includes between headers
    for kind, edges, keep in (("call", calls, ".c"), ("include", incs, ".h")):
        why = collections.defaultdict(list)
        for a, targets in edges.items():
            for b, reason in targets:
                if a.endswith(keep) and b.endswith(keep) and a != b:
                    why[(a, b)].append(reason)
        graph = collections.defaultdict(set)
        for a, b in why:
            graph[a].add(b)
        for comp in cycles(graph):
            bad += 1
            print(f"{kind} loop between " + ", ".join(comp) + ":")
            members = set(comp)
            for (a, b), reasons in sorted(why.items()):
                if a in members and b in members:
                    more = f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""
                    print(f"    {a} -> {b}: {reasons[0]}{more}")
    # rule 2: folders, by includes and calls together
    why = collections.defaultdict(list)
    for edges in (incs, calls):
        for a, targets in edges.items():
            for b, reason in targets:
                why[(a, b)].append(f"{a} {reason}")
    for (a, b), reasons in sorted(why.items()):
        fa, fb = folder(a), folder(b)
        if fb == "include" or fa == fb or fa == "include":
            continue
        if RANK[fb] > RANK[fa]:
            bad += 1
            print(f"upward arrow {fa} -> {fb}: {reasons[0]}" + (f" (+{len(reasons) - 1} more)" if len(reasons) > 1 else ""))
    mods = len({module(f) for f in files})
    if bad:
        print(f"check_layers: {bad} violation(s) over {mods} modules")
        return 1
    print(f"check_layers: {mods} modules, no loops, no upward arrows (layers: {' < '.join(LAYERS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
