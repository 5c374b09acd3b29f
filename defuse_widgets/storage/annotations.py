"""The annotation store: review sets and annotator votes in one SQLite file.

Defuse asks people whether each distilled cluster is a misclassification
region and what its correct label is (paper §4.1, Algorithm 3). The store
keeps, per region, the classifier's predictions on the region's review set
and every annotator's vote on those samples. Each vote is committed in its own
transaction before :meth:`AnnotationStore.cast_vote` returns, so a crashed
kernel loses nothing, and several processes (annotators in separate notebooks,
a headless simulated crowd) may write to the same file at once (stdlib sqlite3).
"""
from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import quote

import numpy as np

from defuse_widgets._validation import check_int, check_labels, describe
from defuse_widgets.storage.persistence import SessionFormatError

NONE_OF_THE_ABOVE = -1
"""Label of a "None of the above" vote: the image shows no class (discarded by ρ)."""

MISSING = -2
"""Cell value in :meth:`AnnotationStore.vote_matrix` where an annotator has not voted."""

SCHEMA_VERSION = 1
_BUSY_TIMEOUT_S = 30.0
_RETRY_DEADLINE_S = 120.0

# ``events`` is an append-only log of votes and undos; ``votes`` holds the
# current vote per (annotator, region, sample) and the id of the event behind it.
_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS review (region INTEGER NOT NULL, sample INTEGER NOT NULL,"
    " predicted INTEGER NOT NULL, PRIMARY KEY (region, sample))",
    "CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
    " annotator TEXT NOT NULL, region INTEGER NOT NULL, sample INTEGER NOT NULL,"
    " label INTEGER NOT NULL, timestamp REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS votes (annotator TEXT NOT NULL, region INTEGER NOT NULL,"
    " sample INTEGER NOT NULL, label INTEGER NOT NULL, timestamp REAL NOT NULL,"
    " event_id INTEGER NOT NULL, UNIQUE (annotator, region, sample))",
    "CREATE INDEX IF NOT EXISTS votes_by_region ON votes (region, sample, annotator)",
    "CREATE INDEX IF NOT EXISTS votes_by_event ON votes (annotator, event_id)",
]
_LOG = ("INSERT INTO events (kind, annotator, region, sample, label, timestamp)"
        " VALUES (?, ?, ?, ?, ?, ?)")


class StoreFileError(SessionFormatError):
    """A file that should hold an annotation store does not (not SQLite, or damaged).

    A :class:`~defuse_widgets.storage.persistence.SessionFormatError`: ``path``
    is the file at fault.
    """


@contextlib.contextmanager
def _sqlite_errors(path: Path, action: str) -> Iterator[None]:
    """Word SQLite's errors at the store's boundary: permission, or not a store (named)."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "readonly" in text or "unable to open" in text or "permission" in text.lower():
            raise PermissionError(f"{str(path)!r}: cannot {action} the store: permission "
                                  f"denied by the file system (SQLite says: {text}). Give "
                                  "write access to the file and its folder, or open it "
                                  "read-only.") from exc
        if isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
            raise
        raise StoreFileError(path, f"file must be an intact SQLite annotation store; "
                             f"SQLite says: {text}. Nothing was written.") from exc


def connect_read_only(path: str | os.PathLike, **kwargs) -> sqlite3.Connection:
    """Open a SQLite file for reading only (``mode=ro``); ``kwargs`` go to ``sqlite3.connect``.

    A store without a ``-wal`` file has no writer at that moment (a writer in
    WAL mode keeps one), so it is opened ``immutable``: SQLite then creates no
    side file, and a read-only folder or mount can be read.
    """
    path = Path(path)
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    if not Path(f"{path}-wal").exists():
        uri += "&immutable=1"
    con = sqlite3.connect(uri, uri=True, **kwargs)
    try:
        con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except BaseException:
        con.close()
        raise
    return con


@dataclass(frozen=True)
class Vote:
    """One annotator's ``label`` (class index or -1) for review ``sample`` of ``region``.

    ``timestamp`` is in seconds since the epoch.
    """

    annotator: str
    region: int
    sample: int
    label: int
    timestamp: float


def check_annotator(annotator: Any) -> str:
    if not isinstance(annotator, str) or not annotator.strip():
        raise (TypeError if not isinstance(annotator, str) else ValueError)(
            f"annotator must be a non-empty string naming who votes; got {describe(annotator)}.")
    return annotator


class AnnotationStore:
    """Review sets and annotator votes, persisted in a SQLite file.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.sqlite`` file; it and its parent folder are created if missing.
    n_classes : int, optional
        Number of classes. Required when creating a store; when reopening one it
        may be omitted, and if given must equal the stored value.
    read_only : bool, default=False
        Open an existing store for reading only (SQLite ``mode=ro``): nothing
        is written, so it works on a read-only folder or mount, and a vote
        raises :class:`PermissionError`.

    Raises
    ------
    StoreFileError
        When ``path`` exists but is not a SQLite store (the message names it).
    PermissionError
        When the file or its folder cannot be written (or, read-only, read).

    Examples
    --------
    >>> with AnnotationStore("votes.sqlite", n_classes=10) as store:  # doctest: +SKIP
    ...     store.set_review_set(0, [3, 3, 5]); store.cast_vote("ada", 0, 1, 8)
    """

    def __init__(self, path: str | os.PathLike, *, n_classes: int | None = None,
                 read_only: bool = False):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or os.PathLike naming a .sqlite file; "
                            f"got {describe(path)}.")
        n_classes = None if n_classes is None else check_int("n_classes", n_classes, low=2)
        self.path, self.read_only = Path(path), bool(read_only)
        if self.path.is_dir():
            raise ValueError(f"path must name a file, not a folder; got {str(self.path)!r}.")
        if (n_classes is None or read_only) and not self.path.exists():
            raise ValueError(f"path must name an existing store to open it "
                             f"{'read-only' if read_only else 'without n_classes'}; "
                             f"{str(self.path)!r} does not exist.")
        self._lock = threading.RLock()
        self._con: sqlite3.Connection | None = None
        try:
            with _sqlite_errors(self.path, "open"):
                self._con = self._connect()
                if read_only:
                    self._n_classes = self._read(lambda cur: self._check_meta(cur, n_classes))
                else:
                    self._retry(lambda: self._con.execute("PRAGMA journal_mode=WAL").fetchone())
                    self._con.execute("PRAGMA synchronous=FULL")
                    self._n_classes = self._write(lambda cur: self._init_schema(cur, n_classes))
        except BaseException:
            self.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        """A connection: read-write (creating the file), or :func:`connect_read_only`."""
        kw = dict(timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        if self.read_only:
            return connect_read_only(self.path, **kw)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(str(self.path), **kw)

    def _check_meta(self, cur: sqlite3.Cursor, n_classes: int | None) -> int:
        """The stored number of classes, checked against ``n_classes`` and the schema version."""
        meta = dict(cur.execute("SELECT key, value FROM meta").fetchall())
        if "n_classes" not in meta:
            raise StoreFileError(self.path, "file must hold an annotation store; it is a "
                                 "SQLite database without one.")
        stored, version = int(meta["n_classes"]), int(meta.get("schema_version", 0))
        if version != SCHEMA_VERSION:
            raise ValueError(f"path must hold a store of schema version {SCHEMA_VERSION}; "
                             f"got version {version} in {str(self.path)!r}.")
        if n_classes is not None and n_classes != stored:
            raise ValueError(f"n_classes must match the {stored} classes stored in "
                             f"{str(self.path)!r}; got {n_classes}.")
        return stored

    def _init_schema(self, cur: sqlite3.Cursor, n_classes: int | None) -> int:
        for statement in _SCHEMA:
            cur.execute(statement)
        if cur.execute("SELECT COUNT(*) FROM meta").fetchone()[0] == 0:
            if n_classes is None:
                raise ValueError(f"n_classes is required to create a new store; got None and "
                                 f"{str(self.path)!r} holds no store yet.")
            cur.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("n_classes", str(n_classes)), ("schema_version", str(SCHEMA_VERSION))])
            return n_classes
        return self._check_meta(cur, n_classes)

    @property
    def _connection(self) -> sqlite3.Connection:
        if self._con is None:
            raise ValueError(f"AnnotationStore({str(self.path)!r}) is closed; open a new one.")
        return self._con

    def _retry(self, fn: Callable[[], Any]) -> Any:
        deadline, delay = time.monotonic() + _RETRY_DEADLINE_S, 0.01
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _transaction(self, fn: Callable[[sqlite3.Cursor], Any], begin: str) -> Any:
        with self._lock:
            con = self._connection

            def attempt():
                cur = con.cursor()
                cur.execute(begin)
                try:
                    result = fn(cur)
                    cur.execute("COMMIT")
                    return result
                except BaseException:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    raise

            return self._retry(attempt)

    def _write(self, fn: Callable[[sqlite3.Cursor], Any]) -> Any:
        if self.read_only:
            raise PermissionError(f"{str(self.path)!r} is open read-only; nothing was written. "
                                  "Open the store without read_only=True to vote.")
        with _sqlite_errors(self.path, "write to"):
            return self._transaction(fn, "BEGIN IMMEDIATE")

    def _read(self, fn: Callable[[sqlite3.Cursor], Any]) -> Any:
        return self._transaction(fn, "BEGIN")  # one snapshot for multi-query reads

    def check_region(self, cur: sqlite3.Cursor, region: Any) -> tuple[int, int]:
        """Return (region, review-set size) or raise ValueError for an unknown region."""
        region = check_int("region", region, low=0)
        n = cur.execute("SELECT COUNT(*) FROM review WHERE region = ?", (region,)).fetchone()[0]
        if n == 0:
            known = [r for (r,) in cur.execute(
                "SELECT DISTINCT region FROM review ORDER BY region LIMIT 20")]
            raise ValueError(f"region must be a region with a review set (known: {known}); "
                             f"got {region}.")
        return region, n

    def _check_label(self, label: Any) -> int:
        integral = isinstance(label, (int, np.integer)) and not isinstance(label, bool)
        expected = (f"label must be a class index in [0, {self._n_classes - 1}] or "
                    f"{NONE_OF_THE_ABOVE} for 'none of the above'; "
                    f"got {int(label) if integral else describe(label)}.")
        if not integral:
            raise TypeError(expected)
        if label != NONE_OF_THE_ABOVE and not 0 <= label < self._n_classes:
            raise ValueError(expected)
        return int(label)

    @property
    def n_classes(self) -> int:
        """Number of classes a vote may name (labels ``0 .. n_classes - 1``)."""
        return self._n_classes

    def set_review_set(self, region: int, predicted: Any) -> None:
        """Record the classifier's predictions on a region's review samples.

        Parameters
        ----------
        region : int
            Region (cluster) index, >= 0.
        predicted : array-like of int, shape (n_samples,)
            Predicted class of review samples ``0 .. n_samples - 1``. An earlier,
            different review set of the region is replaced only if it has no
            votes yet; otherwise ValueError.
        """
        region = check_int("region", region, low=0)
        pred = check_labels("predicted", predicted, n_classes=self._n_classes).tolist()
        if not pred:
            raise ValueError("predicted must hold at least one review sample; got length 0.")

        def stored(cur):
            return [p for (p,) in cur.execute(
                "SELECT predicted FROM review WHERE region = ? ORDER BY sample", (region,))]

        if self._read(stored) == pred:
            return   # already recorded: no write (so a read-only store shows it too)

        def write(cur):
            old = stored(cur)
            if old == pred:
                return
            if old:
                n_votes = cur.execute("SELECT COUNT(*) FROM votes WHERE region = ?",
                                      (region,)).fetchone()[0]
                if n_votes:
                    raise ValueError(
                        f"predicted must equal the review set already stored for region "
                        f"{region} because it has {n_votes} votes; got different predictions.")
                cur.execute("DELETE FROM review WHERE region = ?", (region,))
            cur.executemany("INSERT INTO review (region, sample, predicted) VALUES (?, ?, ?)",
                            [(region, i, p) for i, p in enumerate(pred)])

        self._write(write)

    def review_predictions(self, region: int) -> np.ndarray:
        """Return the classifier's predictions on a region's review set, shape (n_samples,)."""
        def read(cur):
            region_, _ = self.check_region(cur, region)
            return [p for (p,) in cur.execute(
                "SELECT predicted FROM review WHERE region = ? ORDER BY sample", (region_,))]

        return np.asarray(self._read(read), dtype=np.int64)

    def regions(self) -> list[int]:
        """Return the regions that have a review set, sorted."""
        return self._read(lambda cur: [r for (r,) in cur.execute(
            "SELECT DISTINCT region FROM review ORDER BY region")])

    def cast_vote(self, annotator: str, region: int, sample: int, label: int) -> Vote:
        """Store one vote and commit it before returning the :class:`Vote`.

        ``sample`` indexes the region's review set; ``label`` is a class index in
        ``[0, n_classes)`` or ``NONE_OF_THE_ABOVE``. A second vote by the same
        annotator on the same sample replaces the first.
        """
        return self.cast_votes([(annotator, region, sample, label)])[0]

    def cast_votes(self, votes: Iterable[tuple[str, int, int, int]]) -> list[Vote]:
        """Store ``(annotator, region, sample, label)`` votes in one transaction.

        Either all are committed or, if one is invalid, none is. Returns the Votes.
        """
        rows = [(check_annotator(a), check_int("region", r, low=0), check_int("sample", s),
                 self._check_label(label)) for a, r, s, label in votes]

        def write(cur):
            sizes: dict[int, int] = {}
            out = []
            for annotator, region, sample, label in rows:
                if region not in sizes:
                    sizes[region] = self.check_region(cur, region)[1]
                if not 0 <= sample < sizes[region]:
                    raise ValueError(f"sample must be an index into region {region}'s review "
                                     f"set, in [0, {sizes[region] - 1}]; got {sample}.")
                now = time.time()
                cur.execute(_LOG, ("vote", annotator, region, sample, label, now))
                cur.execute(
                    "INSERT INTO votes (annotator, region, sample, label, timestamp, event_id) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (annotator, region, sample) DO UPDATE"
                    " SET label = excluded.label, timestamp = excluded.timestamp,"
                    " event_id = excluded.event_id",
                    (annotator, region, sample, label, now, cur.lastrowid))
                out.append(Vote(annotator, region, sample, label, now))
            return out

        return self._write(write) if rows else []

    def undo(self, annotator: str) -> Vote | None:
        """Delete the annotator's most recent vote still stored and return it.

        The vote it had replaced, if any, is not restored. Returns None when the
        annotator has no vote left.
        """
        annotator = check_annotator(annotator)

        def write(cur):
            row = cur.execute(
                "SELECT rowid, region, sample, label, timestamp FROM votes WHERE annotator = ?"
                " ORDER BY event_id DESC LIMIT 1", (annotator,)).fetchone()
            if row is None:
                return None
            rowid, region, sample, label, stamp = row
            cur.execute("DELETE FROM votes WHERE rowid = ?", (rowid,))
            cur.execute(_LOG, ("undo", annotator, region, sample, label, time.time()))
            return Vote(annotator, region, sample, label, stamp)

        return self._write(write)

    def votes(self, *, region: int | None = None, annotator: str | None = None) -> list[Vote]:
        """Return stored votes, optionally filtered, ordered by (region, sample, annotator)."""
        where, args = [], []
        if region is not None:
            where.append("region = ?")
            args.append(check_int("region", region, low=0))
        if annotator is not None:
            where.append("annotator = ?")
            args.append(check_annotator(annotator))
        sql = ("SELECT annotator, region, sample, label, timestamp FROM votes WHERE "
               + " AND ".join(where or ["1"]) + " ORDER BY region, sample, annotator")
        return self._read(lambda cur: [Vote(*row) for row in cur.execute(sql, args)])

    def vote_matrix(self, region: int) -> tuple[list[str], np.ndarray]:
        """Return the votes on a region as an annotator-by-sample matrix.

        Returns
        -------
        annotators : list of str
            Sorted names of the annotators with at least one vote in the region.
        votes : ndarray of shape (n_annotators, n_samples), int64
            Label per cell, ``NONE_OF_THE_ABOVE`` (-1) for "none of the above"
            and ``MISSING`` (-2) where the annotator has not voted.
        """
        def read(cur):
            region_, n = self.check_region(cur, region)
            return n, cur.execute("SELECT annotator, sample, label FROM votes WHERE region = ?"
                                  " ORDER BY annotator", (region_,)).fetchall()

        n, rows = self._read(read)
        names = sorted({a for a, _, _ in rows})
        index = {a: i for i, a in enumerate(names)}
        matrix = np.full((len(names), n), MISSING, dtype=np.int64)
        for a, s, label in rows:
            matrix[index[a], s] = label
        return names, matrix

    def annotators(self) -> list[str]:
        """Return the sorted names of annotators with at least one stored vote."""
        return self._read(lambda cur: [a for (a,) in cur.execute(
            "SELECT DISTINCT annotator FROM votes ORDER BY annotator")])

    def progress(self, annotator: str) -> dict:
        """Return how far an annotator has got, to resume where they left off.

        Returns
        -------
        dict
            ``regions_done`` (regions where every sample has their vote),
            ``regions_total`` and ``next``: the first ``(region, sample)`` in
            order without their vote, or None when all are done.
        """
        annotator = check_annotator(annotator)

        def read(cur):
            per_region = cur.execute(
                "SELECT r.region, COUNT(*), COUNT(v.label) FROM review r LEFT JOIN votes v"
                " ON v.region = r.region AND v.sample = r.sample AND v.annotator = ?"
                " GROUP BY r.region", (annotator,)).fetchall()
            nxt = cur.execute(
                "SELECT r.region, r.sample FROM review r LEFT JOIN votes v"
                " ON v.region = r.region AND v.sample = r.sample AND v.annotator = ?"
                " WHERE v.label IS NULL ORDER BY r.region, r.sample LIMIT 1",
                (annotator,)).fetchone()
            return per_region, nxt

        per_region, nxt = self._read(read)
        return {"regions_done": sum(total == voted for _, total, voted in per_region),
                "regions_total": len(per_region),
                "next": None if nxt is None else (int(nxt[0]), int(nxt[1]))}

    def close(self) -> None:
        """Close the connection; further calls raise ValueError. Safe to call twice."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None

    def __enter__(self) -> "AnnotationStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._con is None else f"n_classes={self._n_classes}"
        return f"AnnotationStore({str(self.path)!r}, {state})"
