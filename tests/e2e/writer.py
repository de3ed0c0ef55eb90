#!/usr/bin/env python3
"""A stand-in for the sync server's writes to a group database, and its check.

    writer.py run PATH     write PATH continuously (the unit's ExecStart)
    writer.py check PATH   integrity and invariant of PATH, as one JSON line

`run` writes the way Actual's sync server does (better-sqlite3 defaults): the
rollback journal (no WAL), a 5 s busy timeout, and `BEGIN IMMEDIATE`
transactions back to back. Each transaction inserts one row into `debit` and
one into `credit` with the same amount (and a few KB of padding, so pages
change all over the file), and every so often deletes the oldest pair, so
the two tables' sums always match and the file stays a few MB. SIGTERM is
not handled: like a node process, it dies where it is, possibly in the middle
of a transaction, leaving a hot journal.

`check` opens the database read-write (so SQLite rolls back a hot journal
restored beside it, as the server would at its first open), then prints
`{"integrity": "ok", "rows": N, "debit": S, "credit": S, "tables": [...]}`.
Only the standard library is used.
"""

import json
import os
import random
import sqlite3
import sys
import time

KEEP_ROWS = 1500
PAD_BYTES = 3000


def run(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    db = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")
    for table in ("debit", "credit"):
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {table} "
            "(id INTEGER PRIMARY KEY, amount INTEGER NOT NULL, pad BLOB NOT NULL)"
        )
    rng = random.Random()
    while True:
        db.execute("BEGIN IMMEDIATE")
        amount = rng.randrange(1, 100_000)
        pad = rng.randrange(PAD_BYTES // 2, PAD_BYTES)
        cur = db.execute(
            "INSERT INTO debit(amount, pad) VALUES (?, randomblob(?))", (amount, pad)
        )
        db.execute(
            "INSERT INTO credit(id, amount, pad) VALUES (?, ?, randomblob(?))",
            (cur.lastrowid, amount, pad),
        )
        old = cur.lastrowid - KEEP_ROWS
        if old > 0 and old % 7 == 0:
            db.execute("DELETE FROM debit WHERE id <= ?", (old,))
            db.execute("DELETE FROM credit WHERE id <= ?", (old,))
        db.execute("COMMIT")
        # Full speed, minus a breath for the other processes of a 2-core CI box.
        time.sleep(0.0005)


def check(path: str) -> None:
    try:
        out = inspect(path)
    except sqlite3.DatabaseError as e:
        # What a torn copy gives ("database disk image is malformed"), from
        # the integrity check or from any query after it.
        out = {"integrity": str(e), "tables": []}
    print(json.dumps(out))


def inspect(path: str) -> dict:
    db = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    integrity = "; ".join(r[0] for r in db.execute("PRAGMA integrity_check"))
    tables = sorted(
        r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
    )
    out = {"integrity": integrity, "tables": tables}
    if {"debit", "credit"} <= set(tables):
        db.execute("BEGIN")
        out["rows"] = db.execute("SELECT count(*) FROM debit").fetchone()[0]
        out["credit_rows"] = db.execute("SELECT count(*) FROM credit").fetchone()[0]
        out["debit"] = db.execute("SELECT coalesce(sum(amount), 0) FROM debit").fetchone()[0]
        out["credit"] = db.execute("SELECT coalesce(sum(amount), 0) FROM credit").fetchone()[0]
        out["last_id"] = db.execute("SELECT coalesce(max(id), 0) FROM debit").fetchone()[0]
        db.execute("COMMIT")
    return out


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("run", "check"):
        sys.exit(__doc__)
    {"run": run, "check": check}[sys.argv[1]](sys.argv[2])


if __name__ == "__main__":
    main()
