-- A cloud inventory per workspace (surfacescan's environment), for the
-- attack-surface analysis.

-- +goose Up
CREATE TABLE workspace_clouds (
    workspace_id TEXT PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    data         TEXT NOT NULL,
    vm_count     BIGINT NOT NULL,
    rule_count   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- +goose Down
DROP TABLE workspace_clouds;
