#!/usr/bin/env python3
"""Every unit test that runs on a loop ends it with PS_LOOP_END (tests/unit/loop_fixture.h).

criterion cannot fail a test after its body (assertions in .fini are ignored), so the leak check has to be
written in each test; this lint finds one that forgot it. A test runs on a loop when its suite's .init
calls uv_loop_init, or when its own body does; test_loop_fixture's own tests may call the function behind
the macro, ps_test_loop_end, instead. Prints one TAP case, which fails naming every test that lacks it.

  tests/unit/loop_end_lint.py [DIR]     (DIR: the folder of the test_*.c files, this one by default)"""
import pathlib
import re
import sys

FUNC = re.compile(r"^(?:static\s+)?void\s+(\w+)\s*\(void\)\s*\{(.*?)^\}", re.S | re.M)
SUITE = re.compile(r"^TestSuite\(\s*(\w+)\s*,([^;]*)\);", re.M)
TEST = re.compile(r"^Test\(\s*(\w+)\s*,\s*(\w+)[^{]*\{(.*?)^\}", re.S | re.M)


def loop_tests(path):
    src = path.read_text()
    funcs = {m.group(1): m.group(2) for m in FUNC.finditer(src)}
    loop_suites = set()
    for m in SUITE.finditer(src):
        init = re.search(r"\.init\s*=\s*(\w+)", m.group(2))
        if init and "uv_loop_init" in funcs.get(init.group(1), ""):
            loop_suites.add(m.group(1))
    for m in TEST.finditer(src):
        suite, name, body = m.groups()
        if suite in loop_suites or "uv_loop_init" in body:
            yield f"{path.name} {suite}::{name}", "PS_LOOP_END(" in body or "ps_test_loop_end(" in body


def main(argv):
    root = pathlib.Path(argv[1] if len(argv) > 1 else pathlib.Path(__file__).parent)
    results = [r for f in sorted(root.glob("test_*.c")) for r in loop_tests(f)]
    missing = [name for name, ok in results if not ok]
    print("1..1")
    if results and not missing:
        print(f"ok 1 - all {len(results)} tests that run on a loop end with PS_LOOP_END")
        return 0
    print(f"not ok 1 - {len(missing)} of {len(results)} tests that run on a loop do not end with PS_LOOP_END")
    for name in missing:
        print(f"# {name}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
