"""Wall time of every task, printed at the end of the play as `TASKTIME <s> <name>`.

Enabled by bench/bench.py for the runs it times, so that a figure can be
taken apart (which tasks a first converge spends its time in).
"""
import time

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'aggregate'
    CALLBACK_NAME = 'task_times'
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.times = []
        self.current = None

    def _close(self):
        if self.current:
            name, start = self.current
            self.times.append((name, time.monotonic() - start))
            self.current = None

    def _open(self, task):
        self._close()
        self.current = (task.get_name(), time.monotonic())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._open(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._open(task)

    def v2_playbook_on_stats(self, stats):
        self._close()
        for name, secs in self.times:
            self._display.display('TASKTIME %7.2f %s' % (secs, name))
