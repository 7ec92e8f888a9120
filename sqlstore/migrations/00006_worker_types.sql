-- The task types of a worker's external executors (a JSON array), which
-- the server registers from the workers that announce them.

-- +goose Up
ALTER TABLE workers ADD COLUMN types TEXT NOT NULL DEFAULT '[]';

-- +goose Down
ALTER TABLE workers DROP COLUMN types;
