-- The scanfleet schema, portable between SQLite and PostgreSQL:
-- ids are TEXT (UUIDv7, so they sort by creation), times are BIGINT
-- microseconds since the Unix epoch (UTC), durations BIGINT nanoseconds,
-- JSON is TEXT written by encoding/json (keys sorted), flags are BOOLEAN.

-- +goose Up
CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    scope       TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE scans (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    type               TEXT NOT NULL,
    args               TEXT NOT NULL DEFAULT '{}',
    frequency_ns       BIGINT NOT NULL DEFAULT 0,
    cron               TEXT NOT NULL DEFAULT '',
    timeout_ns         BIGINT NOT NULL DEFAULT 0,
    site               TEXT NOT NULL DEFAULT '',
    single_run         BOOLEAN NOT NULL DEFAULT FALSE,
    enabled            BOOLEAN NOT NULL DEFAULT FALSE,
    manual_run_pending BOOLEAN NOT NULL DEFAULT FALSE,
    last_run_at        BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

CREATE INDEX scans_created_at ON scans (created_at, id);

-- The workspaces a scan covers, in the order the scan lists them. Deleting
-- either side deletes the link.
CREATE TABLE scan_workspaces (
    scan_id      TEXT NOT NULL REFERENCES scans (id) ON DELETE CASCADE,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    ord          INTEGER NOT NULL,
    PRIMARY KEY (scan_id, workspace_id)
);

CREATE INDEX scan_workspaces_workspace_id ON scan_workspaces (workspace_id);

-- A task names its workspace (names never change; ON UPDATE CASCADE would
-- follow a rename) and dies with it. scan_id is deliberately not a foreign
-- key: deleting a scan keeps the tasks it ran, scan_id as it was, so their
-- history still says where they came from. log_seq is the last log line's
-- sequence number; bumping it locks the row, which orders concurrent
-- appends.
CREATE TABLE tasks (
    id           TEXT PRIMARY KEY,
    scan_id      TEXT NOT NULL DEFAULT '',
    type         TEXT NOT NULL,
    workspace    TEXT NOT NULL REFERENCES workspaces (name) ON DELETE CASCADE ON UPDATE CASCADE,
    pool         TEXT NOT NULL DEFAULT '',
    site         TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 0,
    worker_id    TEXT NOT NULL DEFAULT '',
    timeout_ns   BIGINT NOT NULL DEFAULT 0,
    input        TEXT,
    output       TEXT,
    error        TEXT NOT NULL DEFAULT '',
    log_seq      BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    queued_at    BIGINT,
    requested_at BIGINT,
    started_at   BIGINT,
    finished_at  BIGINT,
    failed_at    BIGINT,
    cancelled_at BIGINT,
    updated_at   BIGINT NOT NULL
);

CREATE INDEX tasks_status ON tasks (status, id);
CREATE INDEX tasks_scan_id ON tasks (scan_id, id);
CREATE INDEX tasks_workspace ON tasks (workspace, id);
CREATE INDEX tasks_created_at ON tasks (created_at);

CREATE TABLE task_logs (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL,
    ts      BIGINT NOT NULL,
    line    TEXT NOT NULL,
    PRIMARY KEY (task_id, seq)
);

-- The inventory. first_task and last_task are '' when no task is known;
-- they are not foreign keys, so that records outlive the tasks that saw
-- them.
CREATE TABLE records (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    key          TEXT NOT NULL,
    data         TEXT NOT NULL,
    first_seen   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL,
    first_task   TEXT NOT NULL DEFAULT '',
    last_task    TEXT NOT NULL DEFAULT '',
    UNIQUE (workspace_id, kind, key)
);

CREATE INDEX records_workspace_id ON records (workspace_id, id);
CREATE INDEX records_workspace_kind ON records (workspace_id, kind, id);
CREATE INDEX records_workspace_last_seen ON records (workspace_id, last_seen);
CREATE INDEX records_last_task ON records (last_task);

CREATE TABLE tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    hash         TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);

-- +goose Down
DROP TABLE tokens;
DROP TABLE records;
DROP TABLE task_logs;
DROP TABLE tasks;
DROP TABLE scan_workspaces;
DROP TABLE scans;
DROP TABLE workspaces;
