package scanfleet

import (
	"context"
	"time"
)

// Workspace is what a team owns and scans: Faraday's workspace, Crossfeed's
// organization. Its Name is a unique slug used in API paths.
type Workspace struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Scope       Scope     `json:"scope"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Validate checks the name and normalizes the scope in place.
func (w *Workspace) Validate() error {
	if err := ValidateSlug("name", w.Name); err != nil {
		return err
	}
	if len(w.Description) > 4096 {
		return Errorf(EINVALID, "description: longer than 4096 characters")
	}
	scope, err := w.Scope.Normalize()
	if err != nil {
		return err
	}
	w.Scope = scope
	return nil
}

// WorkspaceUpdate holds the fields of a workspace to change; nil means keep.
type WorkspaceUpdate struct {
	Description *string `json:"description"`
	Scope       *Scope  `json:"scope"`
}

// WorkspaceStore stores workspaces.
type WorkspaceStore interface {
	CreateWorkspace(ctx context.Context, w *Workspace) error
	// FindWorkspace returns the workspace by name, or ENOTFOUND.
	FindWorkspace(ctx context.Context, name string) (*Workspace, error)
	ListWorkspaces(ctx context.Context, page Page) ([]*Workspace, string, error)
	UpdateWorkspace(ctx context.Context, name string, upd WorkspaceUpdate) (*Workspace, error)
	// DeleteWorkspace removes a workspace with its records and tasks.
	DeleteWorkspace(ctx context.Context, name string) error
}

// ValidateSlug checks a name used in paths: 1–63 characters of lower-case
// letters, digits, '-' and '_', starting with a letter or digit.
func ValidateSlug(field, s string) error {
	if s == "" {
		return Errorf(EINVALID, "%s: is empty", field)
	}
	if len(s) > 63 {
		return Errorf(EINVALID, "%s: %q is longer than 63 characters", field, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || (i > 0 && (c == '-' || c == '_'))
		if !ok {
			return Errorf(EINVALID, "%s: %q must be lower-case letters, digits, '-' and '_', starting with a letter or digit", field, s)
		}
	}
	return nil
}

// Page asks for one page of a list: at most Limit items after Cursor, the
// opaque value a previous page returned.
type Page struct {
	Cursor string
	Limit  int
}

// Page size bounds.
const (
	DefaultPageLimit = 100
	MaxPageLimit     = 1000
)

// Normalize applies the default and maximum limit.
func (p Page) Normalize() (Page, error) {
	if p.Limit == 0 {
		p.Limit = DefaultPageLimit
	}
	if p.Limit < 0 || p.Limit > MaxPageLimit {
		return p, Errorf(EINVALID, "limit: must be between 1 and %d", MaxPageLimit)
	}
	return p, nil
}

func errNotFound(what, name string) error {
	return Errorf(ENOTFOUND, "%s %q not found", what, name)
}

// ErrWorkspaceNotFound returns the error for an unknown workspace.
func ErrWorkspaceNotFound(name string) error { return errNotFound("workspace", name) }
