"""A Dask distributed cluster as the workers of :mod:`pcapvpn.parallel` (``analyze --dask
SCHEDULER``; the optional ``dask`` extra)."""

from __future__ import annotations


class DaskPool:
    """The workers of a Dask distributed cluster (``analyze --dask SCHEDULER``; the optional
    ``dask`` extra) in place of local worker processes: each slice is read by a Dask task
    (:func:`read_slice`, so the capture file must be readable at the same path on the workers:
    a shared filesystem), the parts come back in slice order and are replayed by the same merge
    as local workers'.  ``scheduler``: an address (``tcp://host:8786``), a
    ``distributed.Client`` or anything ``Client`` accepts (a ``LocalCluster``)."""

    def __init__(self, scheduler):
        try:
            from distributed import Client
        except ImportError:
            raise RuntimeError("--dask needs the dask extra: pip install 'pcapvpn[dask]'") from None
        self._own = not isinstance(scheduler, Client)
        self.client = Client(scheduler) if self._own else scheduler
        self._futures: list = []

    def workers(self) -> int:
        """Threads of the cluster's workers (at least 1)."""
        return max(1, sum(self.client.nthreads().values()))

    def imap(self, fn, items):
        self._futures = self.client.map(fn, list(items), pure=False)
        for i, f in enumerate(self._futures):
            yield f.result()
            self._futures[i] = None  # the part is the replay's now
            f.release()

    def terminate(self) -> None:
        for f in self._futures:
            if f is not None:
                f.cancel()
        self._futures = []
        if self._own:
            self.client.close()
