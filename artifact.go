package scanfleet

import (
	"context"
	"io"
	"time"
)

// Artifact is a file a task produced, such as a packet capture, stored with
// the task and downloadable from the API.
type Artifact struct {
	TaskID      string    `json:"task_id"`
	Name        string    `json:"name"`
	ContentType string    `json:"content_type"`
	Size        int64     `json:"size"`
	SHA256      string    `json:"sha256"`
	CreatedAt   time.Time `json:"created_at"`
}

// MaxArtifactSize bounds one artifact. A capture is bounded by its own
// byte limit well below this.
const MaxArtifactSize = 256 << 20

// ValidateArtifactName checks the name of an artifact: 1 to 128 letters,
// digits, '.', '-' or '_', not starting with '.'.
func ValidateArtifactName(name string) error {
	if name == "" || len(name) > 128 {
		return Errorf(EINVALID, "artifact name: must be 1 to 128 characters, got %d", len(name))
	}
	if name[0] == '.' {
		return Errorf(EINVALID, "artifact name: %q must not start with '.'", name)
	}
	for _, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return Errorf(EINVALID, "artifact name: %q may hold only letters, digits, '.', '-' and '_'", name)
		}
	}
	return nil
}

// ArtifactStore stores the files tasks produce.
type ArtifactStore interface {
	// PutArtifact stores (or replaces) a task's artifact with the content
	// read from r, setting a.Size and a.SHA256. Content past
	// MaxArtifactSize is ETOOLARGE and stores nothing.
	PutArtifact(ctx context.Context, a *Artifact, r io.Reader) error
	ListArtifacts(ctx context.Context, taskID string) ([]*Artifact, error)
	// OpenArtifact returns the artifact and its content.
	OpenArtifact(ctx context.Context, taskID, name string) (*Artifact, io.ReadCloser, error)
}
