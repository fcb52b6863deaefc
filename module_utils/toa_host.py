# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading the target host's files, shared by the toa_* modules.

Every absolute path a module reads goes through host_path(), so unit tests
point ROOT at a temporary tree instead of the real host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

ROOT = "/"


def host_path(path):
    return os.path.join(ROOT, path.lstrip("/"))


def read_text(path, default=None):
    """Text of a host file, or `default` when it cannot be read."""
    try:
        with open(host_path(path), "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return default


def uname():
    """(machine, kernel release) of the running system."""
    info = os.uname()
    return info[4], info[2]


def init_comm():
    """Name of PID 1: /proc/1/comm, or "systemd" when systemd's runtime directory
    exists (sd_booted(); PID 1 may be named "init" when booted via /sbin/init)."""
    if os.path.isdir(host_path("/run/systemd/system")):
        return "systemd"
    return (read_text("/proc/1/comm", "") or "").strip()
