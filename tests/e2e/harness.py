"""Shared helpers for the sockit end-to-end tests (Python 3 standard library only).

Every process started here is remembered and killed by its PID when the test ends, whatever
the outcome; every socket has a timeout; every wait has a deadline. Sleeps are only polling
intervals inside a deadline: they never decide a result.

The binary is $BUILD/sockit (BUILD defaults to "build"; a relative path is taken from the
repository root, an absolute one as is).
"""

import errno
import hashlib
import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("BUILD", "build")
SOCKIT = os.path.join(REPO, BUILD, "sockit")
# SOCKIT_VALGRIND=1 (make valgrind): every sockit the harness starts runs under Valgrind's
# memcheck; a memory error or a definite leak makes it exit 97, which fails the test.
VALGRIND = (["valgrind", "-q", "--error-exitcode=97", "--leak-check=full",
             "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite"]
            if os.environ.get("SOCKIT_VALGRIND") == "1" else [])

GREETING = b"Hi from server\n"
LISTEN_TIMEOUT = 10.0  # seconds to wait for the "listening on ADDR" line
EXIT_TIMEOUT = 10.0  # seconds to wait for a process to exit after it was asked to
RUN_TIMEOUT = 30.0  # seconds for a whole short command (sockit --help, sockit connect ...)
IO_TIMEOUT = 20.0  # default timeout of every socket the tests create

# A safety net: a socket somebody forgot to give a timeout still cannot block forever.
socket.setdefaulttimeout(IO_TIMEOUT)

LISTENING_RE = re.compile(r"^listening on (.*)$")


# --------------------------------------------------------------------------------------------
# Addresses


def parse_addr(text):
    """'127.0.0.1:80' / '[::1]:80' / 'unix:/p' -> (family, sockaddr). Raises ValueError.
    A tls:// prefix (serve tls:// prints it) is skipped: the socket address is the same."""
    if text.startswith("tls://"):
        text = text[len("tls://"):]
    if text.startswith("unix:"):
        return socket.AF_UNIX, text[len("unix:"):]
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)", text)
    if m:
        return socket.AF_INET6, (m.group(1), int(m.group(2)))
    m = re.fullmatch(r"([^:\[\]]+):(\d+)", text)
    if m:
        return socket.AF_INET, (m.group(1), int(m.group(2)))
    raise ValueError("not an address: %r" % text)


def fmt_addr(family, sockaddr):
    """The inverse of parse_addr: the text sockit prints for an address."""
    if family == socket.AF_UNIX:
        return "unix:" + sockaddr
    if family == socket.AF_INET6:
        return "[%s]:%d" % (sockaddr[0], sockaddr[1])
    return "%s:%d" % (sockaddr[0], sockaddr[1])


def sock_name(sock):
    """A connected client's own address as the server sees it ("127.0.0.1:50312")."""
    return fmt_addr(sock.family, sock.getsockname())


def ipv6_loopback_available():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_tcp_port(host="127.0.0.1"):
    """A port that was free a moment ago: bound, then closed without listening. Connecting to
    it is refused (nobody listens)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------
# Socket I/O with deadlines


class Deadline:
    def __init__(self, seconds):
        self.end = time.monotonic() + seconds
        self.seconds = seconds

    def left(self):
        return max(0.0, self.end - time.monotonic())

    def expired(self):
        return time.monotonic() >= self.end


def _recv(sock, n, deadline):
    left = deadline.left()
    if left <= 0:
        raise TimeoutError("deadline of %.1f s passed" % deadline.seconds)
    sock.settimeout(left)
    return sock.recv(n)


def recv_until_eof(sock, deadline_s=IO_TIMEOUT, limit=None):
    """Everything until the peer closes. ConnectionResetError propagates. Raises TimeoutError
    (a test failure) if EOF does not come before the deadline."""
    d = Deadline(deadline_s)
    chunks = []
    total = 0
    while True:
        b = _recv(sock, 65536, d)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
        total += len(b)
        if limit is not None and total > limit:
            raise AssertionError("more than %d bytes before EOF" % limit)


def recv_exact(sock, n, deadline_s=IO_TIMEOUT):
    d = Deadline(deadline_s)
    buf = bytearray()
    while len(buf) < n:
        b = _recv(sock, min(n - len(buf), 1 << 20), d)
        if not b:
            raise AssertionError("EOF after %d of %d bytes: %r" % (len(buf), n, bytes(buf[-80:])))
        buf += b
    return bytes(buf)


def recv_eof_or_reset(sock, deadline_s=IO_TIMEOUT):
    """Read until EOF or reset. Returns (bytes_read, how) with how 'eof' or 'reset'. Fails
    the test, saying how much was read, if neither comes before the deadline."""
    d = Deadline(deadline_s)
    total = 0
    while True:
        try:
            b = _recv(sock, 1 << 20, d)
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            return total, "reset"
        except (TimeoutError, socket.timeout):
            raise AssertionError("the connection was not closed: %d bytes read, then neither "
                                 "EOF nor reset within %.0f s" % (total, deadline_s))
        if not b:
            return total, "eof"
        total += len(b)


class LineReader:
    """Reads '\\n'-terminated lines from a socket, each bounded by a deadline."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()

    def readline(self, deadline_s=IO_TIMEOUT):
        d = Deadline(deadline_s)
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[: i + 1])
                del self.buf[: i + 1]
                return line
            b = _recv(self.sock, 65536, d)
            if not b:
                raise AssertionError(
                    "EOF while waiting for a line (partial: %r)" % bytes(self.buf[:200]))
            self.buf += b

    def readlines(self, n, deadline_s=IO_TIMEOUT):
        d = Deadline(deadline_s)
        return [self.readline(max(d.left(), 0.001)) for _ in range(n)]


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def vm_rss_kib(pid):
    """VmRSS of a live process in KiB, or None when it cannot be read."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def wait_until(predicate, timeout, interval=0.02):
    """Poll predicate() until it is true or the deadline passes. Returns its last value."""
    d = Deadline(timeout)
    while True:
        v = predicate()
        if v or d.expired():
            return v
        time.sleep(interval)


class Sender(threading.Thread):
    """Sends data on a socket in a thread (so the main thread can read at the same time), then
    optionally shuts down the write side. The exception, if any, is kept in .error."""

    def __init__(self, sock, data, shutdown=True, chunk=65536):
        super().__init__(daemon=True)
        self.sock, self.data, self.shutdown, self.chunk = sock, data, shutdown, chunk
        self.error = None
        self.sent = 0

    def run(self):
        try:
            mv = memoryview(self.data)
            while self.sent < len(mv):
                n = self.sock.send(mv[self.sent: self.sent + self.chunk])
                self.sent += n
            if self.shutdown:
                self.sock.shutdown(socket.SHUT_WR)
        except Exception as e:  # reported by the test that started the thread
            self.error = e

    def finish(self, timeout=IO_TIMEOUT):
        self.join(timeout)
        if self.is_alive():
            raise AssertionError("sender thread still blocked after %.0f s (%d of %d bytes sent)"
                                 % (timeout, self.sent, len(self.data)))
        return self.error


# --------------------------------------------------------------------------------------------
# Processes


class SockitProcess:
    """A running sockit. stderr is drained by a thread from the start, so the pipe never fills,
    and its lines are kept (text, without the newline) for assertions."""

    def __init__(self, args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=None,
                 binary=None):
        self.argv = ([] if binary else VALGRIND) + [binary or SOCKIT] + [str(a) for a in args]
        self.proc = subprocess.Popen(self.argv, stdin=stdin, stdout=stdout,
                                     stderr=subprocess.PIPE, env=env)
        self.pid = self.proc.pid
        self._lines = []
        self._cond = threading.Condition()
        self._eof = False
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self):
        f = self.proc.stderr
        try:
            for raw in iter(f.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self._cond:
                    self._lines.append(line)
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    # -- stderr ---------------------------------------------------------------------------
    def lines(self):
        with self._cond:
            return list(self._lines)

    def stderr_text(self):
        return "\n".join(self.lines())

    def describe(self):
        rc = self.proc.poll()
        return "command: %s\nstatus: %s\nstderr:\n%s" % (
            " ".join(self.argv), "running" if rc is None else rc,
            "\n".join("  | " + l for l in self.lines()[-60:]) or "  (empty)")

    def wait_line(self, regex, timeout=LISTEN_TIMEOUT, start=0):
        """The first stderr line (from index start) matching regex, as a match object. Fails
        the test with everything known if none comes before the deadline or stderr closes."""
        rx = re.compile(regex) if isinstance(regex, str) else regex
        d = Deadline(timeout)
        i = start
        with self._cond:
            while True:
                while i < len(self._lines):
                    m = rx.search(self._lines[i])
                    if m:
                        return m
                    i += 1
                if self._eof:
                    raise AssertionError("stderr closed without a line matching %r\n%s"
                                         % (rx.pattern, self.describe()))
                if d.expired():
                    raise AssertionError("no stderr line matching %r within %.0f s\n%s"
                                         % (rx.pattern, timeout, self.describe()))
                self._cond.wait(min(d.left(), 0.2))

    def wait_stderr_eof(self, timeout=EXIT_TIMEOUT):
        d = Deadline(timeout)
        with self._cond:
            while not self._eof and not d.expired():
                self._cond.wait(min(d.left(), 0.2))
        return self._eof

    # -- process --------------------------------------------------------------------------
    def running(self):
        return self.proc.poll() is None

    def send_signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def wait(self, timeout=EXIT_TIMEOUT):
        """Exit status (negative: killed by that signal). Fails the test if it does not exit."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("process did not exit within %.0f s\n%s"
                                 % (timeout, self.describe()))
        self.wait_stderr_eof(5)
        return rc

    def kill(self):
        """Kill by PID (SIGKILL) if still running, reap, close pipes. Safe to call twice."""
        try:
            if self.proc.poll() is None:
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            self._thread.join(5)
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass


class Server(SockitProcess):
    """sockit serve ...; .address is the text of the "listening on" line, .family/.sockaddr
    where to connect (a wildcard address is replaced by the loopback address)."""

    address = None
    family = None
    sockaddr = None

    def await_listening(self, timeout=LISTEN_TIMEOUT):
        m = self.wait_line(LISTENING_RE, timeout)
        self.address = m.group(1)
        try:
            self.family, sa = parse_addr(self.address)
        except ValueError:
            raise AssertionError("cannot parse the listening line %r\n%s"
                                 % (m.group(0), self.describe()))
        if self.family == socket.AF_INET and sa[0] == "0.0.0.0":
            sa = ("127.0.0.1", sa[1])
        elif self.family == socket.AF_INET6 and sa[0] == "::":
            # Dual-stack wildcard: IPv4 loopback reaches it too and is always there.
            self.family, sa = socket.AF_INET, ("127.0.0.1", sa[1])
        self.sockaddr = sa
        return self.address

    @property
    def port(self):
        return self.sockaddr[1]

    @property
    def host(self):
        return self.sockaddr[0]

    def connect_args(self):
        """Address argument(s) for `sockit connect` that reach this server."""
        return [fmt_addr(self.family, self.sockaddr)]


# --------------------------------------------------------------------------------------------
# Test case base


class SockitTestCase(unittest.TestCase):
    """Base class: tracks processes and sockets and cleans them up after every test."""

    def setUp(self):
        super().setUp()
        if not (os.path.isfile(SOCKIT) and os.access(SOCKIT, os.X_OK)):
            self.fail("sockit binary not found or not executable: %s (run make; BUILD=%s)"
                      % (SOCKIT, BUILD))
        self._tmp = None

    # -- temp dir -------------------------------------------------------------------------
    @property
    def tmpdir(self):
        if self._tmp is None:
            # A short prefix in /tmp keeps Unix socket paths far below the 108-byte limit.
            self._tmp = tempfile.mkdtemp(prefix="skt-", dir="/tmp")
            self.addCleanup(self._rmtree, self._tmp)
        return self._tmp

    @staticmethod
    def _rmtree(path):
        import shutil
        shutil.rmtree(path, ignore_errors=True)

    # -- processes ------------------------------------------------------------------------
    def require_program(self, name):
        """The path of a real peer program (ncat, testssl.sh, haproxy...). Missing: the test is
        skipped with the reason on a developer's machine, but fails under CI (CI=true), so a
        green CI means the peer was really there."""
        import shutil
        path = shutil.which(name)
        if path:
            return path
        why = "%s is not installed (.ci/run installs it)" % name
        if os.environ.get("CI") == "true":
            self.fail(why)
        self.skipTest(why)

    def start(self, args, cls=SockitProcess, **kw):
        p = cls(args, **kw)
        self.addCleanup(p.kill)
        return p

    def serve(self, *args, address="127.0.0.1:0", wait=True, **kw):
        """Start `sockit serve ADDRESS ARGS...` and wait for its listening line."""
        argv = ["serve"] + ([address] if address is not None else []) + list(args)
        srv = self.start(argv, cls=Server, **kw)
        if wait:
            srv.await_listening()
        return srv

    def run_sockit(self, args, input=None, timeout=RUN_TIMEOUT, stdin=None):
        """Run sockit to completion; returns CompletedProcess (bytes stdout/stderr). A process
        that outlives the timeout is killed and the test fails."""
        argv = VALGRIND + [SOCKIT] + [str(a) for a in args]
        if input is not None:
            stdin = subprocess.PIPE
        elif stdin is None:
            stdin = subprocess.DEVNULL
        p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(_kill_popen, p)
        try:
            out, err = p.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_popen(p)
            out, err = p.communicate(timeout=10)
            self.fail("%s did not finish within %.0f s\nstdout: %r\nstderr: %r"
                      % (" ".join(argv), timeout, out[-300:], err[-2000:]))
        return subprocess.CompletedProcess(argv, p.returncode, out, err)

    # -- sockets --------------------------------------------------------------------------
    def connect(self, target, timeout=IO_TIMEOUT, rcvbuf=None):
        """A client socket connected to a Server (or a (family, sockaddr) pair)."""
        if isinstance(target, Server):
            family, sa = target.family, target.sockaddr
        else:
            family, sa = target
        s = socket.socket(family, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        if rcvbuf is not None:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(timeout)
        s.connect(sa)
        return s

    def listener(self, family=socket.AF_INET, host="127.0.0.1", backlog=16):
        """A plain Python listening socket (a fake peer for `sockit connect`)."""
        s = socket.socket(family, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.bind((host, 0))
        s.listen(backlog)
        return s

    # -- assertions -----------------------------------------------------------------------
    def assertOneErrorLine(self, stderr, *needles, ci=True):
        """stderr is exactly one line starting "sockit: " containing every needle (case
        insensitive unless ci=False; a tuple needle means any of its alternatives)."""
        text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
        lines = text.splitlines()
        self.assertEqual(len(lines), 1, "expected exactly one stderr line, got:\n%s" % text)
        line = lines[0]
        self.assertTrue(line.startswith("sockit: "), "error line must start with 'sockit: ': %r"
                        % line)
        hay = line.lower() if ci else line
        for n in needles:
            alts = n if isinstance(n, tuple) else (n,)
            self.assertTrue(any((a.lower() if ci else a) in hay for a in alts),
                            "error line %r does not contain %s" % (line, " or ".join(
                                repr(a) for a in alts)))
        return line

    def assertExit(self, result, code, msg=""):
        self.assertEqual(result.returncode, code, "%s exit status %s, wanted %s\nstdout: %r\n"
                         "stderr: %r" % (msg, result.returncode, code, result.stdout[-500:],
                                         result.stderr[-2000:]))


def _kill_popen(p):
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass
    for f in (p.stdin, p.stdout, p.stderr):
        if f is not None:
            try:
                f.close()
            except OSError:
                pass


def kill_pid(pid):
    """SIGKILL and reap a child started with os.fork/pty.fork (no Popen object)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    d = Deadline(10)
    while not d.expired():
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.02)


def read_fd_until(fd, buf, predicate, deadline_s):
    """Read from a file descriptor (a pty master, a pipe) into bytearray buf until
    predicate(buf) is true, EOF, or the deadline. Returns True if the predicate held."""
    d = Deadline(deadline_s)
    while not predicate(buf):
        left = d.left()
        if left <= 0:
            return False
        r, _, _ = select.select([fd], [], [], min(left, 0.5))
        if not r:
            continue
        try:
            b = os.read(fd, 65536)
        except OSError as e:
            if e.errno == errno.EIO:  # pty master after the child closed the slave
                return predicate(buf)
            raise
        if not b:
            return predicate(buf)
        buf += b
    return True


