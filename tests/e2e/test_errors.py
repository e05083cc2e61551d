"""Error messages and exit statuses: one line starting "sockit: ", status 2 for usage errors and
1 for runtime failures; plus --help and --version."""

import errno
import os
import re
import socket
import subprocess
import threading
import unittest

from harness import RUN_TIMEOUT, SOCKIT, SockitTestCase


class UsageErrorTests(SockitTestCase):

    def test_unknown_option(self):
        for argv, opt in ((["serve", "--bogus"], "--bogus"),
                          (["serve", "127.0.0.1:0", "--frobnicate=3"], "--frobnicate"),
                          (["connect", "--bogus", "127.0.0.1", "1"], "--bogus"),
                          (["serve", "-Z"], "-Z"),
                          (["--bogus"], "--bogus")):
            with self.subTest(argv=argv):
                r = self.run_sockit(argv)
                self.assertExit(r, 2)
                self.assertOneErrorLine(r.stderr, opt, ci=False)
                self.assertEqual(r.stdout, b"")

    def test_unknown_command(self):
        r = self.run_sockit(["frobnicate"])
        self.assertExit(r, 2)
        self.assertOneErrorLine(r.stderr, "frobnicate")

    def test_no_command(self):
        r = self.run_sockit([])
        self.assertExit(r, 2)
        self.assertIn(b"sockit", r.stdout + r.stderr)

    def test_bad_port(self):
        for addr, bad in (("127.0.0.1:70000", "70000"), ("127.0.0.1:abc", "abc"),
                          ("70000", "70000"), (":99999", "99999"), ("[::1]:abc", "abc")):
            with self.subTest(address=addr):
                r = self.run_sockit(["serve", addr])
                self.assertExit(r, 2)
                self.assertOneErrorLine(r.stderr, bad)

    def test_link_local_without_zone_says_to_add_the_interface(self):
        """The kernel refuses fe80::/10 without an interface with a bare EINVAL; the message
        must say what to write instead (the interface named depends on the machine)."""
        for argv, fix in ((["connect", "[fe80::1]:80"], "]:80"),
                          (["serve", "[fe80::1]:0"], "]:0"),
                          (["serve", "udp://[fe80::1]:0"], "]:0")):
            with self.subTest(argv=argv):
                r = self.run_sockit(argv)
                self.assertExit(r, 2)
                line = self.assertOneErrorLine(r.stderr, "fe80::1 is a link-local address",
                                               "add the interface", "as in [fe80::1%", fix)
                self.assertNotIn("invalid argument", line)

    def test_bad_option_values(self):
        for args, bad in ((["--mode", "shout"], "shout"), (["-m", "shout"], "shout"),
                          (["--frame", "xml"], "xml"), (["--max-frame", "lots"], "lots"),
                          (["--max-queue", "-5"], "-5"), (["--backlog", "many"], "many"),
                          (["--idle-timeout", "soon"], "soon")):
            with self.subTest(args=args):
                r = self.run_sockit(["serve", "127.0.0.1:0"] + args)
                self.assertExit(r, 2)
                self.assertOneErrorLine(r.stderr, bad)

    def test_missing_option_argument(self):
        for argv, opt in ((["serve", "127.0.0.1:0", "--mode"], "mode"),
                          (["serve", "127.0.0.1:0", "--message"], "message"),
                          (["connect", "127.0.0.1", "1", "--timeout"], "timeout")):
            with self.subTest(argv=argv):
                r = self.run_sockit(argv)
                self.assertExit(r, 2)
                self.assertOneErrorLine(r.stderr, opt)


class RuntimeErrorTests(SockitTestCase):

    def test_address_already_in_use(self):
        busy = self.listener()
        port = busy.getsockname()[1]
        r = self.run_sockit(["serve", "127.0.0.1:%d" % port])
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, "already in use", str(port))

    def test_address_in_use_reported_even_with_quiet(self):
        busy = self.listener()
        port = busy.getsockname()[1]
        r = self.run_sockit(["serve", "-q", "127.0.0.1:%d" % port])
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, "already in use")

    def test_permission_denied_low_port(self):
        if os.geteuid() == 0:
            self.skipTest("running as root: binding a low port is allowed")
        try:
            with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
                if int(f.read()) <= 80:
                    self.skipTest("unprivileged users may bind port 80 here")
        except OSError:
            pass
        r = self.run_sockit(["serve", "127.0.0.1:80"])
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, "permission denied", "1024")

    def test_cannot_assign_non_local_address(self):
        """Binding an address this machine does not have (TEST-NET-1; binding sends nothing)."""
        try:
            with open("/proc/sys/net/ipv4/ip_nonlocal_bind") as f:
                if f.read().strip() != "0":
                    self.skipTest("ip_nonlocal_bind is on: any address can be bound")
        except OSError:
            pass
        with socket.socket() as probe:
            try:
                probe.bind(("192.0.2.1", 5000))
                self.skipTest("this machine has 192.0.2.1")
            except OSError as e:
                if e.errno != errno.EADDRNOTAVAIL:
                    self.skipTest("binding 192.0.2.1 fails differently here: %s" % e)
        r = self.run_sockit(["serve", "192.0.2.1:5000"])
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, ("cannot assign", "not available"), "192.0.2.1")

    def test_serve_unknown_host(self):
        r = self.run_sockit(["serve", "no-such-host.invalid:0"])
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, "no-such-host.invalid", ("not known", "resolve"))

    def test_connect_unknown_host(self):
        r = self.run_sockit(["connect", "no-such-host.invalid:80"])
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, "no-such-host.invalid", ("not known", "resolve"))

    def test_unknown_zone_names_no_interface(self):
        for argv in (["connect", "[fe80::1%nonexistent]:80"], ["serve", "[fe80::1%nonexistent]:0"],
                     ["serve", "udp://[fe80::1%nonexistent]:0"]):
            with self.subTest(argv=argv):
                r = self.run_sockit(argv)
                self.assertExit(r, 1)
                line = self.assertOneErrorLine(r.stderr, "fe80::1%nonexistent",
                                               "no such network interface")
                self.assertNotIn("invalid argument", line)

    def test_connect_refused(self):
        with socket.socket() as s:  # bound, never listening, then closed: nobody is there
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        r = self.run_sockit(["connect", "127.0.0.1:%d" % port])
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr, "refused", "127.0.0.1:%d" % port)
        self.assertEqual(r.stdout, b"")

    def test_unix_paths_that_do_not_exist(self):
        """A Unix socket in a missing directory, and a connect to a path with no socket: one
        line each, exit 1, and connect does not hang (the failure is known at once)."""
        r = self.run_sockit(["serve", "unix:/nonexistent-dir-for-sockit/s.sock"])
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr.decode(), "directory does not exist")
        r = self.run_sockit(["connect", "unix:/nonexistent-dir-for-sockit/s.sock"])
        self.assertExit(r, 1)
        self.assertOneErrorLine(r.stderr.decode(), "no such file")

    def test_unix_path_too_long(self):
        path = os.path.join(self.tmpdir, "x" * 200)
        r = self.run_sockit(["serve", "unix:" + path])
        self.assertIn(r.returncode, (1, 2), r.stderr)
        self.assertOneErrorLine(r.stderr)


class HelpTests(SockitTestCase):

    SERVE_OPTIONS = ("--mode", "-m", "--frame", "--max-frame", "--max-queue", "--idle-timeout",
                     "--backlog", "--message", "-v", "-q", "greet", "echo", "chat", "discard",
                     "source", "raw", "line", "len32")
    CONNECT_OPTIONS = ("--timeout", "--idle-timeout", "--close-on-eof")

    def _help(self, argv):
        r = self.run_sockit(argv)
        self.assertExit(r, 0)
        self.assertEqual(r.stderr, b"", "help goes to stdout")
        text = r.stdout.decode()
        self.assertIn("sockit", text)
        return text

    def _assert_mentions(self, text, words):
        missing = [w for w in words if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(w),
                                                     text)]
        self.assertEqual(missing, [], "help does not mention %s:\n%s" % (missing, text))

    def test_version(self):
        r = self.run_sockit(["--version"])
        self.assertExit(r, 0)
        self.assertRegex(r.stdout.decode(), r"\d+\.\d+\.\d+")

    def test_help(self):
        text = self._help(["--help"])
        self._assert_mentions(text, ("serve", "connect"))

    def test_serve_help(self):
        self._assert_mentions(self._help(["serve", "--help"]), self.SERVE_OPTIONS)

    def test_connect_help(self):
        self._assert_mentions(self._help(["connect", "--help"]), self.CONNECT_OPTIONS)

    def test_help_and_man_page_agree(self):
        """Every long option a command's --help lists is in the man page, and every long option
        the man page gives for serve, connect, relay or bench is in that command's --help."""
        man_path = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "sockit.1")
        with open(man_path, encoding="utf-8") as f:
            man = f.read().replace("\\-", "-").replace("\\(hy", "-")
        option = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*[a-z0-9]")
        man_options = set(option.findall(man))
        every_help = set()
        for cmd in ("serve", "connect", "relay", "bench"):
            r = self.run_sockit([cmd, "--help"])
            if r.returncode != 0 and cmd == "bench":
                continue  # bench is optional in this build
            text = self._help([cmd, "--help"])
            listed = set(option.findall(text))
            every_help |= listed
            self.assertEqual(sorted(listed - man_options), [],
                             "'sockit %s --help' lists options the man page lacks" % cmd)
        every_help |= {"--help", "--version"}
        self.assertEqual(sorted(man_options - every_help), [],
                         "the man page lists options no --help mentions")


class StderrLineTests(SockitTestCase):
    """Issue 10.2: every line on stderr is one write(2) of at most 4096 bytes (PIPE_BUF), so
    lines of two threads or two processes never interleave; a longer one is cut with "...",
    never split."""

    LINE_MAX = 4096

    def test_a_long_message_is_cut_with_dots_not_split(self):
        r = self.run_sockit(["serve", "--mode", "x" * 6000])
        self.assertExit(r, 2)
        line = self.assertOneErrorLine(r.stderr, "--mode: unknown mode 'xxx")
        self.assertTrue(line.endswith("..."), line[-80:])
        self.assertEqual(len(r.stderr), self.LINE_MAX, "the line and its newline fill the buffer")

    def test_every_stderr_line_is_one_write(self):
        """connect -v: the library's trace lines, the command's own (log_info) and a message."""
        strace = self.require_program("strace")
        lst = self.listener()

        def greet_one():
            conn, _ = lst.accept()
            with conn:
                conn.sendall(b"hello\n")

        threading.Thread(target=greet_one, daemon=True).start()
        log = os.path.join(self.tmpdir, "strace.log")
        argv = [strace, "-f", "-qq", "-o", log, "-e", "trace=write", "-e", "signal=none",
                "-s", "65536", SOCKIT, "connect", "-v", "127.0.0.1:%d" % lst.getsockname()[1]]
        # LeakSanitizer cannot run under ptrace (make check): only that part is turned off.
        env = dict(os.environ, ASAN_OPTIONS=":".join(
            filter(None, [os.environ.get("ASAN_OPTIONS"), "detect_leaks=0"])))
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=RUN_TIMEOUT, env=env)
        if b"Operation not permitted" in r.stderr and not os.path.exists(log):
            self.skipTest("strace may not trace here (ptrace not permitted): %r" % r.stderr)
        self.assertExit(r, 0)
        self.assertEqual(r.stdout, b"hello\n")
        lines = r.stderr.decode("utf-8", "replace").splitlines()
        self.assertIn("connected to 127.0.0.1:%d" % lst.getsockname()[1], lines)
        with open(log, encoding="utf-8", errors="replace") as f:
            trace = f.read()
        writes = re.findall(r'write\(2, "((?:[^"\\]|\\.)*)"(\.\.\.)?, (\d+)\) += (-?\d+)', trace)
        self.assertEqual(len(writes), len(lines), "one write per stderr line\n%s" % trace)
        for text, cut, asked, done in writes:
            self.assertEqual((cut, text.count("\\n"), text.endswith("\\n"), asked, done),
                             ("", 1, True, asked, asked), "not one whole line: %r" % text)
            self.assertLessEqual(int(asked), self.LINE_MAX)


if __name__ == "__main__":
    unittest.main()
