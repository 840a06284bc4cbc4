# nanotoll board layer, qemu_mps2: Task and TaskQueue for MicroPython's asyncio.
#
# Ports with the _asyncio C module never need this. This port freezes asyncio's
# Python files but has no _asyncio, and asyncio/core.py then imports
# `asyncio.task`, which frozen builds leave out; board.py registers this module
# under that name before asyncio is imported.
#
# The contract core.py relies on:
#   TaskQueue: peek() (None when empty), push(task, key=now), pop(), remove(task);
#              ordered by the ticks key (wrap-safe), first in first out on ties.
#   Task.state: True while running and nobody awaits it; a TaskQueue of waiting
#              tasks once awaited; a callable completion callback (gather); None
#              when finished and not yet awaited; False when finished and awaited.
#   Task.data: what the task waits on (a queue, another task, the IO queue), or
#              the exception to throw into it (CancelledError), or, once finished,
#              the StopIteration/exception that ended it.

from time import ticks_ms, ticks_diff


def _core():
    from asyncio import core

    return core


class TaskQueue:
    def __init__(self):
        self._items = []

    def peek(self):
        return self._items[0] if self._items else None

    def push(self, task, key=None):
        task.data = None  # queued to run: it waits on nothing any more
        task.ph_key = ticks_ms() if key is None else key
        items = self._items
        i = len(items)
        # scan from the back: most pushes are "now", which belong near the end
        while i > 0 and ticks_diff(items[i - 1].ph_key, task.ph_key) > 0:
            i -= 1
        items.insert(i, task)

    def pop(self):
        return self._items.pop(0)

    def remove(self, task):
        items = self._items
        for i in range(len(items)):
            if items[i] is task:
                del items[i]
                return


class Task:
    def __init__(self, coro, globals=None):
        self.coro = coro
        self.data = None
        self.state = True
        self.ph_key = 0

    def __iter__(self):
        state = self.state
        if state is True:
            self.state = TaskQueue()  # the first task to await this one
        elif not state:
            self.state = False  # finished: mark the result as retrieved
        elif not isinstance(state, TaskQueue):
            raise RuntimeError("can't wait")
        return self

    __await__ = __iter__

    def __next__(self):
        if not self.state:
            raise self.data  # StopIteration(result) or the task's exception
        core = _core()
        self.state.push(core.cur_task)
        core.cur_task.data = self  # so a cancel of the waiter reaches this task

    def send(self, value):
        return self.__next__()

    def done(self):
        return not self.state

    def cancel(self):
        if not self.state:
            return False
        core = _core()
        if self is core.cur_task:
            raise RuntimeError("can't cancel self")
        task = self
        while isinstance(task.data, Task):
            task = task.data  # cancel what it is waiting for at the bottom
        waiting_on = task.data
        if waiting_on is not None and hasattr(waiting_on, "remove"):
            waiting_on.remove(task)
            core._task_queue.push(task)
        elif ticks_diff(task.ph_key, ticks_ms()) > 0:
            core._task_queue.remove(task)  # sleeping: wake it now
            core._task_queue.push(task)
        task.data = core.CancelledError
        return True
