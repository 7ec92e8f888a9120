-- The scheduler: target chunks per scan, the lease that makes one server
-- replica the scheduler, and workspace webhooks with their delivery log.
--
-- scheduler_leases holds one row per named lease; a replica holds it until
-- expires_at and renews it while it lives.
--
-- webhook_deliveries is an outbox: an event is stored as pending in the
-- same pass that detects it, and delivered (with retries) from there, so a
-- crash loses none. scheduler_marks keeps how far event detection got.

-- +goose Up
ALTER TABLE scans ADD COLUMN chunk_size BIGINT NOT NULL DEFAULT 0;

CREATE TABLE scheduler_leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE scheduler_marks (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);

CREATE TABLE workspace_webhooks (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    url          TEXT NOT NULL,
    secret       TEXT NOT NULL,
    events       TEXT NOT NULL DEFAULT '[]',
    updated_at   BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id           TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    event        TEXT NOT NULL,
    payload      TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      BIGINT NOT NULL,
    last_code    INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT NOT NULL DEFAULT '',
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (next_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_workspace ON webhook_deliveries (workspace_id, id);
CREATE INDEX tasks_updated_at ON tasks (updated_at);

-- +goose Down
DROP INDEX tasks_updated_at;
DROP TABLE webhook_deliveries;
DROP TABLE workspace_webhooks;
DROP TABLE scheduler_marks;
DROP TABLE scheduler_leases;
ALTER TABLE scans DROP COLUMN chunk_size;
