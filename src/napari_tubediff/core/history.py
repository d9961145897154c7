"""A bounded store of snapshots of an evolving field, for scrubbing back through a run."""

from __future__ import annotations

import numpy as np

__all__ = ["SnapshotHistory", "capacity_for"]


def capacity_for(shape: tuple[int, ...], max_snapshots: int = 50, max_bytes: int = 256 * 2**20,
                 itemsize: int = 4) -> int:
    """How many snapshots of ``shape`` fit: at most ``max_snapshots`` and ``max_bytes``, at least 2.

    Examples
    --------
    >>> capacity_for((512, 512), max_snapshots=50, max_bytes=10 * 2**20)   # 1 MiB each
    10
    """
    each = int(np.prod(shape)) * itemsize
    return max(2, min(int(max_snapshots), int(max_bytes) // max(each, 1)))


class SnapshotHistory:
    """Keeps at most ``capacity`` snapshots ``(step, field)``, evenly spread over the whole run.

    The stored snapshots are those on a grid of steps, every ``stride`` steps from the
    first, plus the newest one. When the store is full the stride doubles and the
    snapshots off the new grid are dropped, so the memory stays bounded while the
    snapshots still cover the run from its start to the newest step at an even spacing
    (about ``2 * span / capacity`` steps apart): the early steps stay reachable.

    Examples
    --------
    >>> h = SnapshotHistory(4)
    >>> for step in range(1, 8):
    ...     h.add(step, np.full((2, 2), step / 10))
    >>> h.steps, h.stride, h.stack().shape
    ([1, 3, 5, 7], 2, (4, 2, 2))
    """

    def __init__(self, capacity: int):
        if isinstance(capacity, bool) or int(capacity) != capacity or capacity < 2:
            raise ValueError(f"capacity must be a whole number >= 2, got {capacity!r}")
        self.capacity = int(capacity)
        self._data: np.ndarray | None = None
        self._steps: list[int] = []
        self.stride = 1  # steps between two kept snapshots, but the newest

    def __len__(self) -> int:
        return len(self._steps)

    @property
    def steps(self) -> list[int]:
        """The step of every stored snapshot, oldest first."""
        return list(self._steps)

    def clear(self) -> None:
        """Forget every snapshot (the buffer is kept for reuse)."""
        self._steps = []
        self.stride = 1

    def truncate(self, n: int) -> None:
        """Keep only the ``n`` oldest snapshots (to continue a run from snapshot ``n - 1``)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n!r}")
        self._steps = self._steps[:n]

    def add(self, step: int, field) -> None:
        """Store a copy of ``field`` (float32) as the snapshot at ``step`` (the newest)."""
        f = np.asarray(field, np.float32)
        if self._data is None or self._data.shape[1:] != f.shape:
            self._data = np.empty((self.capacity, *f.shape), np.float32)
            self.clear()
        if len(self._steps) > 1 and not self._on_grid(self._steps[-1]):
            self._steps.pop()  # kept only as the newest, which it no longer is
        while len(self._steps) >= self.capacity:
            self.stride *= 2
            keep = [i for i, s in enumerate(self._steps) if self._on_grid(s)]
            self._data[:len(keep)] = self._data[keep]
            self._steps = [self._steps[i] for i in keep]
        self._data[len(self._steps)] = f
        self._steps.append(int(step))

    def _on_grid(self, step: int) -> bool:
        return (step - self._steps[0]) % self.stride == 0

    def stack(self) -> np.ndarray:
        """The snapshots as one ``(T, *shape)`` array (a view: copy it to keep it)."""
        if self._data is None:
            raise ValueError("the history is empty")
        return self._data[:len(self._steps)]

    def snapshot(self, index: int) -> tuple[int, np.ndarray]:
        """``(step, field copy)`` of the snapshot at ``index`` (negative counts from the newest)."""
        if not self._steps:
            raise ValueError("the history is empty")
        i = range(len(self._steps))[index]
        return self._steps[i], self._data[i].copy()
