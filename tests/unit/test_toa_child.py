"""Unit tests for module_utils/toa_child.py: fork, stage reports, deadline, kill, reap.

Real processes: each test forks and then checks that the child is gone.
"""

import json
import os
import time

import toa_child  # noqa: E402  (the same module as ansible.module_utils.toa_child, see conftest.py)


def gone(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return True
    return False  # still there, a zombie included: not reaped


def with_pid(behaviour):
    """Work that first reports its pid as a stage, then behaves."""
    def work(report, deadline):
        report('pid-%d' % os.getpid())
        return behaviour(report, deadline)
    return work


def pid_of(outcome):
    return int(outcome['stage'].split('-')[1])


def test_result_and_elapsed_time():
    def behave(report, deadline):
        assert time.time() < deadline <= time.time() + 5.0 * 0.8
        return {'peer_address': '192.0.2.2', 'pid': os.getpid()}
    outcome = toa_child.run_bounded(with_pid(behave), 5.0)
    assert outcome['result']['peer_address'] == '192.0.2.2'
    assert outcome['result']['pid'] != os.getpid(), 'the work ran in the parent'
    assert 0 <= outcome['elapsed_ms'] < 5000
    assert gone(outcome['result']['pid'])


def test_hanging_child_is_killed_with_its_stage():
    outcome = toa_child.run_bounded(with_pid(lambda report, deadline: time.sleep(60)), 0.3,
                                    what='the probe')
    assert outcome['error'].startswith('the probe timed out after 0.3 s while at stage "pid-')
    assert outcome['error'].endswith('; the child was killed')
    assert 250 <= outcome['elapsed_ms'] < 3000
    assert gone(pid_of(outcome)), 'the hanging child survived'


def test_grandchildren_die_with_the_group():
    read_fd, write_fd = os.pipe()

    def behave(report, deadline):
        grandchild = os.fork()
        if grandchild == 0:
            time.sleep(60)
            os._exit(0)
        os.write(write_fd, ('%d\n' % grandchild).encode())
        time.sleep(60)
    toa_child.run_bounded(with_pid(behave), 0.5)
    os.close(write_fd)
    grandchild = int(os.read(read_fd, 64).decode())
    os.close(read_fd)
    for _ in range(200):  # reparented to init, which reaps it after the SIGKILL
        if not os.path.exists('/proc/%d' % grandchild) or gone(grandchild):
            break
        time.sleep(0.01)
    assert not os.path.exists('/proc/%d' % grandchild) or gone(grandchild), \
        'a process the child started outlived the deadline'


def test_silent_exit_is_an_error():
    def behave(report, deadline):
        os._exit(0)
    outcome = toa_child.run_bounded(with_pid(behave), 5.0, what='the probe')
    assert outcome['error'].startswith('the probe child exited without a result at stage "pid-')
    assert gone(pid_of(outcome))


def test_child_error_keeps_its_words_other_errors_are_named():
    def fails(kind):
        def behave(report, deadline):
            report('tun')
            raise kind('cannot open /dev/net/tun')
        return behave
    outcome = toa_child.run_bounded(fails(toa_child.ChildError), 5.0)
    assert (outcome['error'], outcome['stage']) == ('cannot open /dev/net/tun', 'tun')
    outcome = toa_child.run_bounded(fails(KeyError), 5.0)
    assert outcome['error'] == "unexpected KeyError: 'cannot open /dev/net/tun'"
    assert outcome['stage'] == 'tun'


def test_child_main_writes_json_lines():
    read_fd, write_fd = os.pipe()

    def work(report, deadline):
        report('one')
        report('two')
        return {'deadline': deadline}
    toa_child.child_main(work, 12.5, write_fd)
    os.close(write_fd)
    lines = os.read(read_fd, 65536).decode('utf-8').splitlines()
    os.close(read_fd)
    assert [json.loads(line) for line in lines] == [
        {'stage': 'one'}, {'stage': 'two'}, {'result': {'deadline': 12.5}}]


def test_child_output_does_not_reach_our_stdout(capfd):
    def behave(report, deadline):
        os.write(1, b'noise on stdout\n')  # where the module's JSON goes
        os.write(2, b'noise on stderr\n')
        return {}
    outcome = toa_child.run_bounded(behave, 5.0)
    assert outcome['result'] == {}
    captured = capfd.readouterr()
    assert 'noise' not in captured.out + captured.err
