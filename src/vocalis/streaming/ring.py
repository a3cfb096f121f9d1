"""A bounded float32 ring buffer: keeps only the newest ``capacity`` samples."""

from __future__ import annotations

import numpy as np

from vocalis.errors import ConfigError


class RingBuffer:
    """Fixed-capacity sample buffer; memory never grows with the length of the stream.

    >>> r = RingBuffer(4)
    >>> r.extend(np.arange(6, dtype=np.float32))
    >>> r.latest(4).tolist(), r.total
    ([2.0, 3.0, 4.0, 5.0], 6)
    """

    def __init__(self, capacity: int) -> None:
        if int(capacity) < 1:
            raise ConfigError(f"ring capacity={capacity} must be at least 1 sample")
        self.capacity = int(capacity)
        self._buf = np.zeros(self.capacity, dtype=np.float32)
        self._pos = 0  # next write index
        self.total = 0  # samples ever written

    def __len__(self) -> int:
        """Samples currently held (at most ``capacity``)."""
        return min(self.total, self.capacity)

    def clear(self) -> None:
        self._buf[:] = 0.0
        self._pos = 0
        self.total = 0

    def extend(self, x: np.ndarray) -> None:
        """Append samples; only the newest ``capacity`` are kept."""
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        n = x.size
        if n == 0:
            return
        self.total += n
        if n >= self.capacity:
            self._buf[:] = x[-self.capacity :]
            self._pos = 0
            return
        end = self._pos + n
        if end <= self.capacity:
            self._buf[self._pos : end] = x
        else:
            k = self.capacity - self._pos
            self._buf[self._pos :] = x[:k]
            self._buf[: n - k] = x[k:]
        self._pos = end % self.capacity

    def latest(self, n: int | None = None) -> np.ndarray:
        """A contiguous copy of the newest ``n`` samples (default: all held), oldest first.

        Missing samples (fewer than ``n`` were ever written) are zeros at the front.
        """
        n = self.capacity if n is None else int(n)
        if not 0 <= n <= self.capacity:
            raise ConfigError(f"n={n} must be between 0 and capacity={self.capacity}")
        ordered = np.concatenate([self._buf[self._pos :], self._buf[: self._pos]])
        out = ordered[self.capacity - n :]
        held = len(self)
        if held < n:
            out = out.copy()
            out[: n - held] = 0.0
        return np.ascontiguousarray(out)
