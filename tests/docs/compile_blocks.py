#!/usr/bin/env python3
"""Compiles every ```c code block of README.md and docs/*.md, so the docs cannot show code that
does not build. The last line is "N passed, N failed"; the exit status is 1 if any block failed.

Usage: python3 tests/docs/compile_blocks.py [FILE.md ...]   (default: README.md docs/*.md)

How a block is compiled (the convention; see also README.md, "Tests"):

  * A block that defines main() is a whole program. It is compiled exactly as written, nothing
    added, and linked with $BUILD/libsockit.a (BUILD defaults to "build"), so it must include
    every header it uses: a reader copies it into prog.c and runs
    cc prog.c $(pkg-config --cflags --libs sockit).
  * Any other block is file-scope code: includes, declarations, function definitions. It is
    compiled, not linked, after `#include <sockit/sockit.h>`.
  * A block whose fence is preceded by the line  <!-- compile: statements -->  (blank lines
    between are allowed) is a run of statements: it is compiled as the body of a function,
    after `#include <sockit/sockit.h>`.

Every block is compiled as a user of the installed library would: -std=c11 -O2, the public
headers (include/) only, no -D_GNU_SOURCE, and the project's warning flags with -Werror (WARN,
read from the Makefile, so the two never drift apart). A fragment shows a piece of a program, so
what only the missing rest would use or declare is not an error there: fragments also get
-Wno-unused-function -Wno-unused-variable -Wno-missing-prototypes. A `#line` directive maps the
compiler's messages onto the markdown file, so they name FILE.md:LINE directly.
"""

import glob
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("BUILD", "build")
CC = os.environ.get("CC", "cc")
MARKER = re.compile(r"^<!--\s*compile:\s*(\S+)\s*-->$")
MAIN = re.compile(r"^\s*int\s+main\s*\(", re.M)
FRAGMENT_FLAGS = ["-Wno-unused-function", "-Wno-unused-variable", "-Wno-missing-prototypes"]
COMPILE_TIMEOUT = 60  # seconds for one compiler run


class Block:
    def __init__(self, path, line, kind, text):
        self.path = path  # relative to ROOT, as printed
        self.line = line  # 1-based line of the first line of code (after the fence)
        self.kind = kind  # "program", "declarations" or "statements"
        self.text = text


def makefile_variable(name):
    """The value of `NAME := ...` or `NAME += ...` in the Makefile, continuation lines joined.
    Only literal words are expected there (no $(...) references)."""
    with open(os.path.join(ROOT, "Makefile")) as f:
        text = f.read().replace("\\\n", " ")
    m = re.search(r"^%s\s*[:+?]?=(.*)$" % re.escape(name), text, re.M)
    if not m:
        raise SystemExit("compile_blocks: no %s in the Makefile" % name)
    return m.group(1).split()


def blocks_of(path):
    """Every ```c block of a markdown file, with its kind; an unclosed fence or an unknown
    marker raises ValueError (a typo there would otherwise skip a check silently)."""
    rel = os.path.relpath(path, ROOT)
    if rel.startswith(os.pardir + os.sep):
        rel = path  # a file outside the repository: its own name reads better
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    found = []
    marker = None  # the kind a <!-- compile: KIND --> line asked for, until the next fence
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        m = MARKER.match(stripped)
        if m:
            if m.group(1) != "statements":
                raise ValueError("%s:%d: unknown marker '%s' (the only one is "
                                 "<!-- compile: statements -->)" % (rel, i + 1, stripped))
            marker = m.group(1)
        elif stripped.startswith("```"):
            end = i + 1
            while end < len(lines) and lines[end].strip() != "```":
                end += 1
            if end == len(lines):
                raise ValueError("%s:%d: code block never closed" % (rel, i + 1))
            if stripped == "```c":
                text = "\n".join(lines[i + 1:end]) + "\n"
                kind = marker or ("program" if MAIN.search(text) else "declarations")
                found.append(Block(rel, i + 2, kind, text))
            elif marker:
                raise ValueError("%s:%d: <!-- compile: %s --> before a block that is not ```c"
                                 % (rel, i + 1, marker))
            marker = None
            i = end
        elif stripped and marker:
            raise ValueError("%s:%d: text between <!-- compile: %s --> and its code block"
                             % (rel, i + 1, marker))
        i += 1
    return found


def source_of(block):
    """The C file to compile: the block as written, placed where its kind says, with #line so
    that messages point into the markdown file."""
    line = '#line %d "%s"\n' % (block.line, block.path)
    if block.kind == "program":
        return line + block.text
    if block.kind == "declarations":
        return "#include <sockit/sockit.h>\n" + line + block.text
    return "#include <sockit/sockit.h>\nvoid doc_statements(void);\nvoid doc_statements(void)\n{\n" \
        + line + block.text + "}\n"


def compile_block(block, tmp, index, base_flags, libs):
    """(ok, compiler output) for one block."""
    src = os.path.join(tmp, "block%d.c" % index)
    with open(src, "w", encoding="utf-8") as f:
        f.write(source_of(block))
    if block.kind == "program":
        cmd = [CC] + base_flags + ["-o", os.path.join(tmp, "block%d" % index), src] + libs
    else:
        cmd = [CC] + base_flags + FRAGMENT_FLAGS + ["-c", "-o", os.devnull, src]
    try:
        r = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=COMPILE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return False, "the compiler took more than %d s" % COMPILE_TIMEOUT
    except OSError as e:
        return False, "cannot run %s: %s" % (CC, e)
    return r.returncode == 0, r.stdout.decode("utf-8", "replace")


def print_output(output, max_lines=40):
    """The compiler's messages, indented; the first ones are the ones that matter."""
    lines = output.rstrip().splitlines()
    for out_line in lines[:max_lines]:
        print("    " + out_line)
    if len(lines) > max_lines:
        print("    ... (%d more lines)" % (len(lines) - max_lines))


def main(argv):
    files = argv or [os.path.join(ROOT, "README.md")] + sorted(
        glob.glob(os.path.join(ROOT, "docs", "*.md")))
    build = BUILD if os.path.isabs(BUILD) else os.path.join(ROOT, BUILD)
    lib = os.path.join(build, "libsockit.a")
    base_flags = ["-std=c11", "-O2", "-I" + os.path.join(ROOT, "include")] \
        + makefile_variable("WARN")
    # A sanitizer build's library needs the sanitizers' runtime, as in tests/install_test.
    san = ["-fsanitize=address,undefined"] if "san" in os.path.basename(build) else []
    libs = san + [lib] + makefile_variable("LDLIBS")
    passed = failed = 0
    blocks = []
    for path in files:
        try:
            blocks += blocks_of(os.path.abspath(path))
        except (OSError, ValueError) as e:
            print("FAIL %s" % e)
            failed += 1
    if not blocks and not failed:
        print("FAIL no ```c block found in %s" % ", ".join(files))
        failed += 1
    if any(b.kind == "program" for b in blocks) and not os.path.exists(lib):
        print("FAIL %s not found (run make first; BUILD=%s)" % (lib, BUILD))
        print("%d passed, %d failed" % (passed, failed + 1))
        return 1
    with tempfile.TemporaryDirectory(prefix="sockit-docs.") as tmp:
        for index, block in enumerate(blocks):
            ok, output = compile_block(block, tmp, index, base_flags, libs)
            name = "%s:%d (%s)" % (block.path, block.line, block.kind)
            if ok:
                passed += 1
                print("ok   %s" % name)
            else:
                failed += 1
                print("FAIL %s" % name)
                print_output(output)
            sys.stdout.flush()
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
