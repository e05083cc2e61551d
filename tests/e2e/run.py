#!/usr/bin/env python3
"""Runs the sockit end-to-end tests (tests/e2e/test_*.py) and ends with one line:

    N passed, N failed, N skipped      (or "N passed, N failed" when nothing was skipped)

Exit status 1 if any test failed or errored, else 0.

Usage: python3 tests/e2e/run.py [-q] [FILTER...]
  FILTER selects the tests whose id (module.Class.test_name) contains it, e.g.
  test_serve, ChatTests, test_echo_1mib, test_connect.ConnectTests.test_prompts_on_pty.
  Several filters select the union. -q prints only failures and the result line.
The binary is $BUILD/sockit (default build/, relative to the repository root).
"""

import faulthandler
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from iter_tests(t)
        else:
            yield t


def main(argv):
    verbosity = 2
    filters = []
    for a in argv:
        if a in ("-h", "--help"):
            print(__doc__.strip())
            return 0
        if a == "-q":
            verbosity = 1
        else:
            filters.append(a)

    sys.path.insert(0, HERE)
    os.chdir(os.path.dirname(os.path.dirname(HERE)))  # the repository root, for BUILD
    faulthandler.enable()

    loader = unittest.TestLoader()
    suite = loader.discover(start_dir=HERE, pattern="test_*.py", top_level_dir=HERE)
    tests = list(iter_tests(suite))
    if filters:
        # A module that failed to import shows up as unittest.loader._FailedTest: keep it
        # whenever its name matches too, so an import error is never silently filtered away.
        tests = [t for t in tests if any(f in t.id() for f in filters)]
        if not tests:
            print("no test matches %s" % " ".join(filters))
            print("0 passed, 1 failed")
            return 1

    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=verbosity)
    result = runner.run(unittest.TestSuite(tests))

    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    sys.stderr.flush()
    sys.stdout.flush()
    if skipped:
        print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    else:
        print("%d passed, %d failed" % (passed, failed))
    sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        rc = main(sys.argv[1:])
    except BaseException as e:  # the result line must be the last line whatever happens
        import traceback
        traceback.print_exc(file=sys.stdout)
        print("0 passed, 1 failed")
        rc = 1
    sys.exit(rc)
