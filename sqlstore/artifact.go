package sqlstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/scanfleet/scanfleet"
)

// artifactChunk is the size of one stored chunk of an artifact.
const artifactChunk = 4 << 20

// PutArtifact implements scanfleet.ArtifactStore. The content is read
// before the transaction starts (into chunks in memory, at most
// MaxArtifactSize), so a slow reader never holds the database's writer.
func (db *DB) PutArtifact(ctx context.Context, a *scanfleet.Artifact, r io.Reader) error {
	if err := scanfleet.ValidateArtifactName(a.Name); err != nil {
		return err
	}
	if a.ContentType == "" {
		a.ContentType = "application/octet-stream"
	}
	h := sha256.New()
	var chunks [][]byte
	var size int64
	for {
		buf := make([]byte, artifactChunk)
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			size += int64(n)
			if size > scanfleet.MaxArtifactSize {
				return scanfleet.Errorf(scanfleet.ETOOLARGE, "artifact %s: larger than %d bytes", a.Name, scanfleet.MaxArtifactSize)
			}
			h.Write(buf[:n])
			chunks = append(chunks, buf[:n])
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		} else if err != nil {
			return fmt.Errorf("read artifact %s: %w", a.Name, err)
		}
	}
	a.Size, a.SHA256 = size, hex.EncodeToString(h.Sum(nil))
	if a.CreatedAt.IsZero() {
		a.CreatedAt = db.now()
	}
	a.CreatedAt = truncTime(a.CreatedAt)
	return db.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := db.findTask(ctx, tx, a.TaskID); err != nil {
			return err
		}
		if _, err := db.exec(ctx, tx, `DELETE FROM task_artifact_chunks WHERE task_id = ? AND name = ?`, a.TaskID, a.Name); err != nil {
			return fmt.Errorf("put artifact: %w", err)
		}
		_, err := db.exec(ctx, tx, `INSERT INTO task_artifacts (task_id, name, content_type, size, sha256, created_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (task_id, name) DO UPDATE SET content_type = excluded.content_type, size = excluded.size,
				sha256 = excluded.sha256, created_at = excluded.created_at`,
			a.TaskID, a.Name, a.ContentType, a.Size, a.SHA256, micros(a.CreatedAt))
		if err != nil {
			return fmt.Errorf("put artifact: %w", err)
		}
		for i, c := range chunks {
			if _, err := db.exec(ctx, tx, `INSERT INTO task_artifact_chunks (task_id, name, seq, data) VALUES (?, ?, ?, ?)`,
				a.TaskID, a.Name, i, c); err != nil {
				return fmt.Errorf("put artifact: %w", err)
			}
		}
		return nil
	})
}

// ListArtifacts implements scanfleet.ArtifactStore.
func (db *DB) ListArtifacts(ctx context.Context, taskID string) ([]*scanfleet.Artifact, error) {
	if _, err := db.findTask(ctx, db.read, taskID); err != nil {
		return nil, err
	}
	rows, err := db.query(ctx, db.read, `SELECT task_id, name, content_type, size, sha256, created_at
		FROM task_artifacts WHERE task_id = ? ORDER BY name`, taskID)
	list, err := scanAll(rows, err, scanArtifact)
	if err != nil {
		return nil, fmt.Errorf("list artifacts: %w", err)
	}
	return list, nil
}

func scanArtifact(row rowScanner) (*scanfleet.Artifact, error) {
	var a scanfleet.Artifact
	var created int64
	if err := row.Scan(&a.TaskID, &a.Name, &a.ContentType, &a.Size, &a.SHA256, &created); err != nil {
		return nil, err
	}
	a.CreatedAt = fromMicros(created)
	return &a, nil
}

// OpenArtifact implements scanfleet.ArtifactStore: the content is read
// chunk by chunk as the caller reads.
func (db *DB) OpenArtifact(ctx context.Context, taskID, name string) (*scanfleet.Artifact, io.ReadCloser, error) {
	a, err := scanArtifact(db.queryRow(ctx, db.read, `SELECT task_id, name, content_type, size, sha256, created_at
		FROM task_artifacts WHERE task_id = ? AND name = ?`, taskID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, scanfleet.Errorf(scanfleet.ENOTFOUND, "task %s has no artifact %q", taskID, name)
	} else if err != nil {
		return nil, nil, fmt.Errorf("open artifact: %w", err)
	}
	return a, &chunkReader{ctx: ctx, db: db, a: a}, nil
}

// chunkReader reads an artifact's chunks in order.
type chunkReader struct {
	ctx context.Context
	db  *DB
	a   *scanfleet.Artifact
	seq int
	buf bytes.Reader
	eof bool
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for r.buf.Len() == 0 {
		if r.eof {
			return 0, io.EOF
		}
		var data []byte
		err := r.db.queryRow(r.ctx, r.db.read, `SELECT data FROM task_artifact_chunks WHERE task_id = ? AND name = ? AND seq = ?`,
			r.a.TaskID, r.a.Name, r.seq).Scan(&data)
		if errors.Is(err, sql.ErrNoRows) {
			r.eof = true
			continue
		} else if err != nil {
			return 0, fmt.Errorf("read artifact %s: %w", r.a.Name, err)
		}
		r.seq++
		r.buf.Reset(data)
	}
	return r.buf.Read(p)
}

func (r *chunkReader) Close() error { return nil }
