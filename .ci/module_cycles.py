#!/usr/bin/env python3
"""Fails if the top-level modules of a crate import each other in a cycle.

For every crate under crates/, each file src/<m>.rs or src/<m>/... is module <m>; an edge m -> n
is any `crate::n` path in m's files outside its `#[cfg(test)] mod tests` block and comments.
Prints every cycle found and exits 1; exits 0 when each crate's module graph is acyclic.
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
USE = re.compile(r"\bcrate::(\w+)")
GROUP = re.compile(r"\buse\s+crate::\{([^}]*)\}", re.S)


def modules(src: pathlib.Path) -> dict[str, list[pathlib.Path]]:
    out: dict[str, list[pathlib.Path]] = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src)
        name = rel.parts[0].removesuffix(".rs")
        if name in ("lib", "main"):
            continue
        out.setdefault(name, []).append(f)
    return out


def edges(files: list[pathlib.Path], names: set[str]) -> set[str]:
    found: set[str] = set()
    for f in files:
        text = f.read_text()
        # Unit-test modules may lean on oracles anywhere; only the shipped code counts.
        text = text.split("#[cfg(test)]\nmod tests")[0]
        # Ignore comments so doc links do not count as imports.
        text = re.sub(r"//[^\n]*", "", text)
        found.update(m for m in USE.findall(text) if m in names)
        for group in GROUP.findall(text):
            found.update(m.split("::")[0].strip() for m in group.split(",") if m.strip() in names or m.split("::")[0].strip() in names)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    seen: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if m == n:
                continue
            if state.get(m) == 1:
                seen.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return seen


def main() -> int:
    bad = 0
    for src in sorted(ROOT.glob("crates/*/src")):
        mods = modules(src)
        names = set(mods)
        graph = {m: edges(fs, names) - {m} for m, fs in mods.items()}
        for c in cycles(graph):
            bad += 1
            print(f"module cycle in {src.parent.name}: {' -> '.join(c)}", file=sys.stderr)
    if bad == 0:
        print(f"module graphs acyclic in {len(list(ROOT.glob('crates/*/src')))} crates")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
