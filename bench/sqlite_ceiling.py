#!/usr/bin/env python3
"""What SQLite alone commits on this machine: the ceiling for durable binds.

Figure 2 of BENCHMARKS.md measures binds through the whole server. This
script takes the server away and keeps only what its store writer asks of
SQLite for each bind: the schema of crates/store/migrations/sqlite (every
migration, in order), WAL, synchronous=FULL, secure_delete and temp_store as
the store sets them, and group commits of BATCH binds, each commit a
multi-row INSERT into bindings, one into events and one into audit, with
values the size sealing gives them: blind tokens spread over their range,
sealed numbers of 78 characters, sealed event bodies of 702. One thread,
no hand-offs, no HTTP, no sealing: so the binds/s it prints is an upper
bound for the server's on the same disk.

    bench/sqlite_ceiling.py                  # 100,000 binds in batches of 25
    BATCH=64 BINDS=200000 bench/sqlite_ceiling.py
    PARTIES=sequential bench/sqlite_ceiling.py   # tokens in order: every index
                                                 # entry an append (what sealing
                                                 # took away, see §10)

Every value is made before the clock starts, so that the commits follow one
another as they do in a busy server's writer.

It uses Python's sqlite3 module, so the SQLite it measures is the one Python
links (printed), not the copy built into maskline. The database lives in a
temporary directory under /tmp (as bench/http_binds.sh's does) and is
removed at the end.
"""

import glob
import os
import random
import sqlite3
import string
import tempfile
import time

BATCH = int(os.environ.get("BATCH", "25"))
BINDS = int(os.environ.get("BINDS", "100000"))
PARTIES = os.environ.get("PARTIES", "scattered")
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MIGRATIONS = sorted(glob.glob(os.path.join(ROOT, "crates/store/migrations/sqlite/*.sql")))

B64 = string.ascii_letters + string.digits + "+/"


def text(n):
    return "".join(random.choices(B64, k=n))


def sealed(n):
    # "ml1:<key id>:" and base64 of nonce (24), value and tag (16).
    return "ml1:1:" + text(((24 + n + 16) + 2) // 3 * 4)


SEQUENCE = iter(range(1, 1 << 62))


def token():
    if PARTIES == "sequential":
        return "~%022d" % next(SEQUENCE)
    return "~" + text(22)


class Ids:
    """Time-ordered 16-byte ids, as UUIDv7 gives the server's."""

    def __init__(self):
        self.n = 0

    def next(self):
        self.n += 1
        return ((int(time.time() * 1000) << 80) | self.n).to_bytes(16, "big")


def rows_sql(head, columns, rows):
    one = "(" + ", ".join("?" * columns) + ")"
    return head + ", ".join([one] * rows)


BINDINGS = (
    "INSERT INTO bindings (id, tenant_id, mode, x, extension, a, b, area, external_ref, "
    "a_to_b, b_to_a, max_call_seconds, record, sms, created_at, updated_at, expires_at, "
    "ended_at, end_reason, ends_at, call_prompts, warn_before_end_seconds, a_sealed, "
    "b_sealed) VALUES "
)
EVENTS = (
    "INSERT INTO events (id, tenant_id, type, subject, created_at, body, state, "
    "next_attempt_at, retry_from) VALUES "
)
AUDIT = (
    "INSERT INTO audit (tenant_id, key_id, action, object, status, at, source, user_id) "
    "VALUES "
)


def main():
    work = tempfile.mkdtemp(prefix="maskline-ceiling.", dir="/tmp")
    path = os.path.join(work, "maskline.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA secure_delete=ON")
    db.execute("PRAGMA temp_store=MEMORY")
    for m in MIGRATIONS:
        db.executescript(open(m).read())
    ids = Ids()
    tenant, key = ids.next(), ids.next()
    db.execute(
        "INSERT INTO tenants (id, name, api_key_hash, created_at) VALUES (?, 'bench', ?, 0)",
        (tenant, os.urandom(32)),
    )
    sql = (
        rows_sql(BINDINGS, 24, BATCH),
        rows_sql(EVENTS, 9, BATCH),
        rows_sql(AUDIT, 8, BATCH),
    )
    now = int(time.time())
    batches = []
    for _ in range(BINDS // BATCH):
        b, e, a = [], [], []
        for _ in range(BATCH):
            bid = ids.next()
            b += [bid, tenant, "axb", "+86571%08d" % random.randrange(1000), None,
                  token(), token(), None, None, 1, 1, None, 0, 1, now, now, now + 3600,
                  None, None, now + 3600, 0, None, sealed(14), sealed(14)]
            e += [ids.next(), tenant, "binding.created", bid, now, sealed(481), "none",
                  None, now]
            a += [tenant, key, "POST /v1/bindings", "binding " + bid.hex(), 201, now,
                  "127.0.0.1", None]
        batches.append((b, e, a))
    binds = len(batches) * BATCH
    started = time.perf_counter()
    for b, e, a in batches:
        db.execute("BEGIN")
        db.execute(sql[0], b)
        db.execute(sql[1], e)
        db.execute(sql[2], a)
        db.execute("COMMIT")
    wall = time.perf_counter() - started
    print(
        "RESULT sqlite=%s parties=%s batch=%d binds=%d seconds=%.2f binds_per_s=%.0f commits_per_s=%.0f "
        "commit_ms=%.2f"
        % (sqlite3.sqlite_version, PARTIES, BATCH, binds, wall, binds / wall, len(batches) / wall,
           wall / len(batches) * 1e3)
    )
    db.close()
    for f in os.listdir(work):
        os.unlink(os.path.join(work, f))
    os.rmdir(work)


if __name__ == "__main__":
    main()
