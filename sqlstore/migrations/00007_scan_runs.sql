-- A scan's run state without reading its history: whether a task of the
-- scan is in flight in a workspace, and when its newest finished or failed
-- task ended. The scheduler asks both for every enabled scan on every
-- pass, and before it grouped every task ever stored. The conditions are
-- written in the queries exactly as here (sqlstore.scanTaskActive and the
-- ends), so that SQLite's planner can use these partial indexes; tasks of
-- no scan are in none of them and cost nothing more to change.

-- +goose Up
CREATE INDEX tasks_scan_active ON tasks (scan_id, workspace, id)
    WHERE scan_id <> '' AND status IN ('created', 'queued', 'requested', 'started');
CREATE INDEX tasks_scan_finished ON tasks (scan_id, workspace, finished_at) WHERE scan_id <> '' AND status = 'finished';
CREATE INDEX tasks_scan_failed ON tasks (scan_id, workspace, failed_at) WHERE scan_id <> '' AND status = 'failed';

-- +goose Down
DROP INDEX tasks_scan_failed;
DROP INDEX tasks_scan_finished;
DROP INDEX tasks_scan_active;
