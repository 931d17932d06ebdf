"""What differs between the operating systems pip installs perfkit on (Linux, macOS, Windows).

``fcntl`` and ``resource`` exist on POSIX only, ``os.kill(pid, 0)`` is a liveness probe on POSIX only
(Windows has no signal 0), and ``ru_maxrss`` is in KiB on Linux but in bytes on macOS. Every module
imports on every platform; the platform-specific modules are imported inside the function that needs
them, and a figure a platform cannot give is None (for the caller to record as not measured), never a
number in the wrong unit.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Iterator
from pathlib import Path

WINDOWS = os.name == "nt"
_STILL_ACTIVE = 259  # GetExitCodeProcess's code for a process that has not exited
_ERROR_ACCESS_DENIED = 5
_PROCESS_QUERY_LIMITED_INFORMATION = 0x1000


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id runs on this host (this process counts; None, 0 and below never
    do: a pid not recorded, and to ``os.kill`` the others name process groups, not a process)."""
    if pid is None or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    return _windows_alive(pid, *_win32()) if WINDOWS else _posix_alive(pid)


def _posix_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only the existence and permission checks are made
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OverflowError:  # larger than any pid_t (a folder name's digits): no such process
        return False
    return True


def _win32():
    """kernel32 with the signatures ``_windows_alive`` calls, and how to read its last error."""
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
    kernel32.GetExitCodeProcess.argtypes = (wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD))
    kernel32.CloseHandle.argtypes = (wintypes.HANDLE,)
    return kernel32, ctypes.get_last_error


def _windows_alive(pid: int, kernel32, last_error) -> bool:
    """OpenProcess + GetExitCodeProcess: os.kill on Windows has no probe signal (any signal other than
    CTRL_C/CTRL_BREAK terminates the process)."""
    import ctypes

    if pid > 0xFFFFFFFF:  # wider than a DWORD: no such process
        return False
    handle = kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        # a process we may not open exists; any other failure (ERROR_INVALID_PARAMETER) means no such pid
        return last_error() == _ERROR_ACCESS_DENIED
    try:
        code = ctypes.c_ulong()  # a DWORD
        if not kernel32.GetExitCodeProcess(handle, ctypes.pointer(code)):
            return True  # it exists; its state unread, taking over its work would be the worse mistake
        # (one that exited with code 259 looks alive: an ambiguity of Win32's own)
        return code.value == _STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) across processes, waiting for it."""
    with open(path, "a+b") as f:
        if WINDOWS:
            import msvcrt

            _msvcrt_lock(msvcrt, f)
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
            yield


def _msvcrt_lock(msvcrt, f) -> None:
    """Lock the file's first byte. LK_LOCK gives up after 10 one-second tries with EDEADLOCK; a build
    holding the lock takes minutes, so try again until it is ours."""
    f.seek(0)
    while True:
        try:
            msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
            return
        except OSError as exc:
            if exc.errno != errno.EDEADLOCK:
                raise


def maxrss_bytes(ru_maxrss: int, platform: str = sys.platform) -> int:
    """``ru_maxrss`` in bytes: macOS reports bytes, Linux (and the BSDs) KiB (getrusage(2))."""
    return ru_maxrss if platform == "darwin" else ru_maxrss * 1024


def own_peak_rss_bytes() -> int | None:
    """This process's peak resident memory so far, or None where there is no getrusage (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    return maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
