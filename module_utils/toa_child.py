# -*- coding: utf-8 -*-
# Copyright: toa-fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a piece of work in a forked child that never outlives its deadline.

toa_probe does its work (a private network namespace, a TUN device, a crafted
handshake) in a child process so that whatever the work creates disappears
with the child, and so that a hung kernel call cannot hang the Ansible task.
This module is that machinery, apart from the probe's logic:

- the child gets its own process group and SIGKILL when the parent dies,
  and its stdin/stdout/stderr go to /dev/null (the module's JSON output is
  the parent's stdout);
- the work reports the stage it is at through a pipe, as JSON lines, and
  finishes with {"result": ...} or {"error": ..., "stage": ...};
- the parent reads until the result or the deadline; on the deadline it
  kills the child's whole process group and says at which stage the child
  was; it always reaps the child.

Python 2.7 and 3, standard library only.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import json
import os
import select
import signal
import time

PR_SET_PDEATHSIG = 1


class ChildError(Exception):
    """A failure of the work whose message is meant for the operator as it is."""


def remaining(deadline):
    """Seconds left until deadline (a time.time() value), never negative."""
    return max(0.0, deadline - time.time())


def readable(fd, timeout):
    """Whether fd becomes readable within timeout seconds (EINTR retried)."""
    end = time.time() + timeout
    while True:
        try:
            return bool(select.select([fd], [], [], remaining(end))[0])
        except (select.error, OSError, IOError) as exc:
            if (exc.args[0] if exc.args else None) != errno.EINTR:
                raise


def _set_parent_death_signal():
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass  # not Linux, or no libc: the deadline in the parent still applies


def _quiet_stdio():
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    if devnull > 2:
        os.close(devnull)


def child_main(work, child_deadline, write_fd):
    """In the child: run work(report, child_deadline) and write its outcome as JSON lines."""
    def send(message):
        data = (json.dumps(message) + '\n').encode('utf-8')
        while data:
            data = data[os.write(write_fd, data):]

    stage = {'name': 'start'}

    def report(name):
        stage['name'] = name
        send({'stage': name})

    try:
        send({'result': work(report, child_deadline)})
    except ChildError as exc:
        send({'error': str(exc), 'stage': stage['name']})
    except BaseException as exc:
        send({'error': 'unexpected %s: %s' % (type(exc).__name__, exc), 'stage': stage['name']})


def run_bounded(work, timeout, what='the work', child_share=0.8):
    """Fork, run work(report, deadline) in the child, return its outcome dict.

    The child's own deadline is child_share of timeout, so that work which
    watches it can still say why it stopped; at timeout the parent kills it.
    The outcome has 'result' or 'error' (with 'stage'), and 'elapsed_ms'.
    """
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    started = time.time()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_fd)
            try:
                os.setpgid(0, 0)
            except OSError:
                pass
            _set_parent_death_signal()
            if os.getppid() != parent:
                os._exit(0)  # the parent died before the death signal was armed
            _quiet_stdio()
            child_main(work, started + timeout * child_share, write_fd)
        finally:
            os._exit(0)

    os.close(write_fd)
    try:
        os.setpgid(pid, pid)  # also from here: no race with the child's own call
    except OSError:
        pass
    deadline = started + timeout
    buf = b''
    last_stage = 'start'
    outcome = None
    timed_out = False
    finished = None
    try:
        while outcome is None:
            left = remaining(deadline)
            if left <= 0 or not readable(read_fd, left):
                timed_out = True
                break
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            buf += chunk
            while b'\n' in buf and outcome is None:
                line, buf = buf.split(b'\n', 1)
                message = json.loads(line.decode('utf-8'))
                if 'stage' in message and 'error' not in message:
                    last_stage = message['stage']
                if 'result' in message or 'error' in message:
                    outcome = message
                    finished = time.time()
    finally:
        os.close(read_fd)
        reap(pid, kill=timed_out or outcome is None)
    if timed_out:
        outcome = {'error': '%s timed out after %s s while at stage "%s"; the child was killed'
                            % (what, timeout, last_stage), 'stage': last_stage}
    elif outcome is None:
        outcome = {'error': '%s child exited without a result at stage "%s"' % (what, last_stage),
                   'stage': last_stage}
    outcome['elapsed_ms'] = int(round(((finished or time.time()) - started) * 1000))
    return outcome


def reap(pid, kill):
    """Wait for the child; kill its whole process group first when asked or when it lingers."""
    if kill:
        kill_group(pid)
    for _attempt in range(200):
        try:
            done, _status = os.waitpid(pid, os.WNOHANG)
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            return
        if done:
            return
        time.sleep(0.005)
    kill_group(pid)
    while True:
        try:
            os.waitpid(pid, 0)
            return
        except OSError as exc:
            if exc.errno != errno.EINTR:
                return


def kill_group(pid):
    """SIGKILL the process group pid leads, and pid itself should it have left the group."""
    for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
        try:
            target()
        except OSError:
            pass
