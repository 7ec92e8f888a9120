-- The task runtime: leases, cancel requests, progress and counters on
-- tasks; workers and the one-time tokens they enrol with.
--
-- A started task holds a lease until lease_expires_at (NULL otherwise).
-- log_seq keeps counting log lines past the cap; log_truncated says that
-- later ones were not stored.

-- +goose Up
ALTER TABLE tasks ADD COLUMN lease_expires_at BIGINT;
ALTER TABLE tasks ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE tasks ADD COLUMN progress_done BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN progress_total BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN records BIGINT NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN log_truncated BOOLEAN NOT NULL DEFAULT FALSE;

-- Partial indexes, so that they stay as small as the queues: the requested
-- tasks of a pool, oldest first (ids are UUIDv7), which a poller walks
-- until it has enough of its site and types (with the site in the index,
-- "site IN ('', ?)" cannot be read in id order and the planner ignores
-- it); and the started tasks by lease expiry. Queries name the status as
-- a literal so that the planner can use them.
CREATE INDEX tasks_requested ON tasks (pool, id) WHERE status = 'requested';
CREATE INDEX tasks_lease ON tasks (lease_expires_at) WHERE status = 'started';

-- hash is the hash of the worker's credential. capabilities and executors
-- are JSON arrays of strings.
CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    pool         TEXT NOT NULL,
    site         TEXT NOT NULL DEFAULT '',
    version      TEXT NOT NULL DEFAULT '',
    capabilities TEXT NOT NULL DEFAULT '[]',
    executors    TEXT NOT NULL DEFAULT '[]',
    transport    TEXT NOT NULL DEFAULT '',
    concurrency  INTEGER NOT NULL DEFAULT 0,
    running      INTEGER NOT NULL DEFAULT 0,
    draining     BOOLEAN NOT NULL DEFAULT FALSE,
    hash         TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);

CREATE INDEX workers_name ON workers (name, id);

-- pool and site are '' when the token allows any. worker_id is the worker
-- that redeemed the token ('' until then); like tasks.worker_id it is not
-- a foreign key, so the token's history outlives the worker.
CREATE TABLE worker_join_tokens (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL DEFAULT '',
    pool       TEXT NOT NULL DEFAULT '',
    site       TEXT NOT NULL DEFAULT '',
    hash       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    worker_id  TEXT NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE worker_join_tokens;
DROP TABLE workers;
DROP INDEX tasks_lease;
DROP INDEX tasks_requested;
ALTER TABLE tasks DROP COLUMN log_truncated;
ALTER TABLE tasks DROP COLUMN records;
ALTER TABLE tasks DROP COLUMN progress_total;
ALTER TABLE tasks DROP COLUMN progress_done;
ALTER TABLE tasks DROP COLUMN cancel_requested;
ALTER TABLE tasks DROP COLUMN lease_expires_at;
