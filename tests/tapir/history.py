"""A recorded client history and its check against TAPIR's timestamp order."""

from __future__ import annotations

ZERO = (0, 0)


class History:
    def __init__(self) -> None:
        self.committed: list = []  # (ts, reads {key: (value, version)}, writes {key: value})
        self.aborted = 0

    def add(self, txn, ok: bool) -> None:
        if ok:
            self.committed.append((tuple(txn.ts), dict(txn.reads), dict(txn.writes)))
        else:
            self.aborted += 1

    def latest(self) -> dict:
        """key -> (value, ts) of the last committed write in timestamp order."""
        out: dict = {}
        for ts, _r, writes in sorted(self.committed, key=lambda c: c[0]):
            for k, v in writes.items():
                out[k] = (v, ts)
        return out

    def check(self) -> None:
        """Serializable in timestamp order: every committed read saw exactly the latest
        committed write before its transaction's timestamp (or the initial absent value)."""
        writers = [c for c in self.committed if c[2]]
        stamps = [c[0] for c in writers]
        assert len(stamps) == len(set(stamps)), "two committed writers share a timestamp"
        by_key: dict = {}
        for ts, _r, writes in writers:
            for k, v in writes.items():
                by_key.setdefault(k, []).append((ts, v))
        for versions in by_key.values():
            versions.sort()
        for ts, reads, _w in self.committed:
            for key, (value, version) in reads.items():
                before = [(t, v) for t, v in by_key.get(key, []) if t < ts]
                want = before[-1] if before else (ZERO, None)
                assert (tuple(version), value) == want, (
                    f"txn at {ts} read {key!r} = {value!r} (version {version}); "
                    f"timestamp order says {want[1]!r} (version {want[0]})")
