"""What the processes that touch untrusted uploads give up, with plain Linux calls (no extra package).

The decoder process parses hostile bytes with FFmpeg. Before it reads the first request it takes, where the
platform allows: ``no_new_privs`` (no setuid binary can raise it again), a network namespace of its own with no
interface up (no cloud metadata endpoint, no exfiltration, no call home), and, when it runs as root, every
capability (it can no longer read the non-dumpable replica's ``/proc/<pid>/environ`` or memory). The
replica makes itself non-dumpable, so a same-user process (a compromised decoder in a non-root pod) cannot ptrace
it or read its environment and memory through ``/proc``; the price is that ``py-spy``/``ray stack`` cannot attach
to a replica.

Chosen over seccomp filters: a syscall allow-list for FFmpeg + OpenCV + CPython is long, differs between library
builds and breaks silently on upgrades, and the maintained Python bindings are not on PyPI for every platform;
the namespace and the dropped capabilities cut the same paths (network, the replica's secrets) with two calls. Each step
that the platform refuses (no user namespaces, a container without CAP_SYS_ADMIN) is reported, not fatal: the
decoder still runs under its memory cap, deadline and allow-listed environment.
"""
from __future__ import annotations

import ctypes
import logging
import os
import sys

PR_SET_DUMPABLE, PR_GET_DUMPABLE, PR_SET_NO_NEW_PRIVS = 4, 3, 38
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _call(fn, *args) -> str:
    """"ok", or the reason the kernel gave."""
    if fn(*args) == 0:
        return "ok"
    return os.strerror(ctypes.get_errno())


def non_dumpable() -> str:
    """No ptrace and no /proc/<pid>/{environ,mem} for other processes of the same user."""
    if not sys.platform.startswith("linux"):
        return "not linux"
    return _call(_libc().prctl, PR_SET_DUMPABLE, 0, 0, 0, 0)


def protect_replica() -> None:
    """:func:`non_dumpable` for a serving replica, with a warning where the platform refuses it."""
    if (result := non_dumpable()) != "ok":
        logging.getLogger("ray.serve").warning("replica stays dumpable: %s", result)


def is_dumpable() -> bool:
    return bool(_libc().prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))


def confine() -> dict[str, str]:
    """Confine this process (the decoder, before its first request); returns what each step did."""
    if not sys.platform.startswith("linux"):
        return {"platform": "not linux: no confinement"}
    libc = _libc()
    out = {"no_new_privs": _call(libc.prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)}
    # Root may make a network namespace directly; another user only inside a user namespace of its own.
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
    net = _call(libc.unshare, flags)
    out["network"] = "isolated" if net == "ok" else f"not isolated ({net})"
    out["capabilities"] = drop_capabilities() if os.geteuid() == 0 else "none held"
    out["dumpable"] = non_dumpable()
    return out


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> str:
    """Clear every capability of this (root) process: it keeps uid 0, so the files it was started from stay
    readable (an interpreter under /root included), but without CAP_SYS_PTRACE it cannot read a non-dumpable
    replica's /proc entries, and without CAP_DAC_OVERRIDE nor CAP_SYS_ADMIN it cannot read other users' files or
    leave its namespaces. (Switching to ``nobody`` instead would break every import the interpreter makes later.)"""
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set
    data = (_CapData * 2)()
    return "dropped" if _call(_libc().capset, ctypes.byref(header), data) == "ok" else "kept"


__all__ = ["confine", "non_dumpable", "protect_replica", "is_dumpable"]
