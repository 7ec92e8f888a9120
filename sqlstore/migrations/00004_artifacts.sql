-- Files tasks produce (packet captures), stored in chunks so that neither
-- side holds a whole file in memory. An artifact row is written with its
-- chunks in one transaction, so a listed artifact is always complete.

-- +goose Up
CREATE TABLE task_artifacts (
    task_id      TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    sha256       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (task_id, name)
);

CREATE TABLE task_artifact_chunks (
    task_id TEXT NOT NULL,
    name    TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    data    BYTEA NOT NULL,
    PRIMARY KEY (task_id, name, seq),
    FOREIGN KEY (task_id, name) REFERENCES task_artifacts (task_id, name) ON DELETE CASCADE
);

-- +goose Down
DROP TABLE task_artifact_chunks;
DROP TABLE task_artifacts;
