package scanfleet

import (
	"context"
	"time"
)

// CloudEnv is a workspace's cloud inventory, surfacescan's environment: VMs
// with tags and firewall rules between tags. The attacksurface package
// parses and analyses Data; the store keeps it as the canonical JSON that
// package writes.
type CloudEnv struct {
	Workspace string    `json:"workspace"`
	Data      []byte    `json:"-"`
	VMCount   int       `json:"vm_count"`
	RuleCount int       `json:"rule_count"`
	UpdatedAt time.Time `json:"updated_at"`
}

// CloudStore stores one cloud environment per workspace.
type CloudStore interface {
	// PutCloud replaces the workspace's environment; an unknown workspace
	// is ENOTFOUND.
	PutCloud(ctx context.Context, env *CloudEnv) error
	// GetCloud returns the workspace's environment, or ENOTFOUND when the
	// workspace or its environment does not exist.
	GetCloud(ctx context.Context, workspace string) (*CloudEnv, error)
}
