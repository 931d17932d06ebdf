"""perfkit.portable: process liveness, the cross-process file lock and ru_maxrss's unit, on this host's
platform for real and on the other platform's branch through the calls it makes."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
import types

import pytest

from perfkit import portable

posix_only = pytest.mark.skipif(os.name == "nt", reason="the POSIX path")


@posix_only
def test_pid_alive_on_posix(live_pid, dead_pid):
    assert portable.pid_alive(os.getpid()) and portable.pid_alive(live_pid)
    assert not portable.pid_alive(dead_pid)
    assert portable.pid_alive(1)  # init: someone else's process (PermissionError unless root) still exists
    # to os.kill these name process groups or overflow a pid_t: none is a process that could hold a run
    for pid in (None, 0, -1, 2**70):
        assert not portable.pid_alive(pid)


class _FakeKernel32:
    """The Win32 calls ``pid_alive`` makes, answering as documented: OpenProcess returns NULL with
    ERROR_INVALID_PARAMETER for an unknown pid and ERROR_ACCESS_DENIED for a protected process;
    GetExitCodeProcess gives STILL_ACTIVE (259) until the process exits."""

    def __init__(self, exit_codes: dict[int, int], protected: set[int]):
        self.exit_codes, self.protected, self.error, self.open_handles = exit_codes, protected, 0, set()

    def OpenProcess(self, access, inherit, pid):  # noqa: N802 (Win32's names)
        assert access == 0x1000 and not inherit  # PROCESS_QUERY_LIMITED_INFORMATION: all a probe needs
        if pid in self.protected or pid not in self.exit_codes:
            self.error = 5 if pid in self.protected else 87
            return None
        self.open_handles.add(pid + 10_000)
        return pid + 10_000

    def GetExitCodeProcess(self, handle, code_pointer):  # noqa: N802
        code_pointer.contents.value = self.exit_codes[handle - 10_000]
        return 1

    def CloseHandle(self, handle):  # noqa: N802
        self.open_handles.remove(handle)
        return 1


def test_pid_alive_on_windows_asks_openprocess_and_the_exit_code(monkeypatch):
    kernel32 = _FakeKernel32({100: 259, 200: 0, 300: 259}, protected={4})
    monkeypatch.setattr(portable, "WINDOWS", True)
    monkeypatch.setattr(portable, "_win32", lambda: (kernel32, lambda: kernel32.error))
    monkeypatch.setattr(portable.os, "kill", lambda *a: pytest.fail("os.kill terminates a process on Windows"))
    assert portable.pid_alive(100) and portable.pid_alive(300)  # running
    assert not portable.pid_alive(200)  # exited (its handle is still held somewhere: OpenProcess succeeds)
    assert not portable.pid_alive(12345)  # no such process
    assert portable.pid_alive(4)  # exists, but may not be opened
    assert not portable.pid_alive(2**40)  # wider than a DWORD
    assert kernel32.open_handles == set()  # every handle opened is closed


@posix_only
def test_exclusive_lock_excludes_another_process(tmp_path):
    lock = tmp_path / ".lock"
    probe = textwrap.dedent(f"""
        import fcntl
        with open({str(lock)!r}, "a+b") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print("held")
            else:
                print("free")
    """)

    def other_process_sees() -> str:
        return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()

    with portable.exclusive_lock(lock):
        assert other_process_sees() == "held"
    assert other_process_sees() == "free"  # released on leaving the block


def test_exclusive_lock_on_windows_waits_past_lk_locks_ten_tries(monkeypatch, tmp_path):
    calls = []
    busy = [OSError(errno.EDEADLOCK, "Resource deadlock avoided")] * 2  # LK_LOCK gave up twice: still held

    def locking(fd, mode, nbytes):
        calls.append((mode, nbytes, os.lseek(fd, 0, os.SEEK_CUR)))
        if mode == msvcrt.LK_LOCK and busy:
            raise busy.pop()

    msvcrt = types.SimpleNamespace(LK_LOCK=1, LK_UNLCK=0, locking=locking)
    monkeypatch.setitem(sys.modules, "msvcrt", msvcrt)
    monkeypatch.setattr(portable, "WINDOWS", True)
    (tmp_path / ".lock").write_bytes(b"x")  # a position past 0 would lock a different byte than the next process
    with portable.exclusive_lock(tmp_path / ".lock"):
        assert calls == [(1, 1, 0)] * 3
    assert calls[-1] == (0, 1, 0)  # the same first byte unlocked

    def fails(fd, mode, nbytes):
        raise OSError(errno.EBADF, "Bad file descriptor")

    msvcrt.locking = fails
    with pytest.raises(OSError, match="Bad file"):  # not a held lock: not retried
        with portable.exclusive_lock(tmp_path / ".lock"):
            pass


def test_maxrss_unit_follows_the_platform():
    assert portable.maxrss_bytes(3000, "darwin") == 3000  # macOS: bytes
    assert portable.maxrss_bytes(3000, "linux") == 3000 * 1024  # Linux: KiB
    assert portable.maxrss_bytes(3000, "freebsd14") == 3000 * 1024


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and getrusage")
def test_own_peak_rss_grows_by_a_known_allocation():
    """64 MiB allocated and touched raise the reported peak by 64 MiB, not 1/1024 or 1024 times that.

    Measured in the fork of a fresh interpreter: a process started by exec reports the peak of the
    process that started it (Linux keeps the old image's in ru_maxrss across execve, and pytest's is
    large), and a fork of it does not carry that over."""
    code = textwrap.dedent("""
        import mmap, os
        from perfkit.portable import own_peak_rss_bytes
        pid = os.fork()
        if pid == 0:
            before = own_peak_rss_bytes()
            block = mmap.mmap(-1, 64 * 2**20)
            for offset in range(0, len(block), mmap.PAGESIZE):
                block[offset] = 1
            print(before, own_peak_rss_bytes(), flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, after = map(int, out.stdout.split())
    assert 64 * 2**20 <= after - before < 96 * 2**20
