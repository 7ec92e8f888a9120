package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/scanfleet/scanfleet"
)

const tokenColumns = "id, name, role, prefix, hash, created_at, last_used_at"

func scanToken(r rowScanner) (*scanfleet.Token, error) {
	var (
		t        scanfleet.Token
		created  int64
		lastUsed sql.NullInt64
	)
	if err := r.Scan(&t.ID, &t.Name, &t.Role, &t.Prefix, &t.Hash, &created, &lastUsed); err != nil {
		return nil, err
	}
	t.CreatedAt, t.LastUsedAt = fromMicros(created), fromNullMicros(lastUsed)
	return &t, nil
}

func errTokenNotFound(id string) error {
	return scanfleet.Errorf(scanfleet.ENOTFOUND, "token %q not found", id)
}

// CreateToken stores t, setting its ID and created_at when they are zero. A
// token whose hash is already stored is ECONFLICT.
func (db *DB) CreateToken(ctx context.Context, t *scanfleet.Token) error {
	if t.Hash == "" {
		return scanfleet.Errorf(scanfleet.EINVALID, "token: hash is empty")
	}
	if t.ID == "" {
		t.ID = scanfleet.NewID()
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = db.now()
	}
	t.CreatedAt, t.LastUsedAt = truncTime(t.CreatedAt), truncTimePtr(t.LastUsedAt)
	_, err := db.exec(ctx, db.write, "INSERT INTO tokens ("+tokenColumns+") VALUES (?, ?, ?, ?, ?, ?, ?)",
		t.ID, t.Name, string(t.Role), t.Prefix, t.Hash, micros(t.CreatedAt), nullMicros(t.LastUsedAt))
	if db.dialect.violation(err) == UniqueViolation {
		return scanfleet.Errorf(scanfleet.ECONFLICT, "token %q already exists", t.Name)
	} else if err != nil {
		return fmt.Errorf("create token: %w", err)
	}
	return nil
}

// FindTokenByHash returns the token with the hash, or ENOTFOUND. The message
// does not repeat the hash.
func (db *DB) FindTokenByHash(ctx context.Context, hash string) (*scanfleet.Token, error) {
	t, err := scanToken(db.queryRow(ctx, db.read, "SELECT "+tokenColumns+" FROM tokens WHERE hash = ?", hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, scanfleet.Errorf(scanfleet.ENOTFOUND, "token not found")
	} else if err != nil {
		return nil, fmt.Errorf("find token: %w", err)
	}
	return t, nil
}

// ListTokens returns every token, oldest first.
func (db *DB) ListTokens(ctx context.Context) ([]*scanfleet.Token, error) {
	rows, err := db.query(ctx, db.read, "SELECT "+tokenColumns+" FROM tokens ORDER BY created_at, id")
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	defer rows.Close()
	out := []*scanfleet.Token{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("list tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return out, nil
}

// DeleteToken removes the token, or returns ENOTFOUND.
func (db *DB) DeleteToken(ctx context.Context, id string) error {
	return db.changeToken(ctx, "delete token", id, "DELETE FROM tokens WHERE id = ?", id)
}

// TouchToken records that the token was used at now.
func (db *DB) TouchToken(ctx context.Context, id string, now time.Time) error {
	return db.changeToken(ctx, "touch token", id, "UPDATE tokens SET last_used_at = ? WHERE id = ?", micros(now), id)
}

func (db *DB) changeToken(ctx context.Context, op, id, query string, args ...any) error {
	res, err := db.exec(ctx, db.write, query, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	} else if n == 0 {
		return errTokenNotFound(id)
	}
	return nil
}

// CountTokens returns how many tokens are stored.
func (db *DB) CountTokens(ctx context.Context) (int, error) {
	var n int
	if err := db.queryRow(ctx, db.read, "SELECT COUNT(*) FROM tokens").Scan(&n); err != nil {
		return 0, fmt.Errorf("count tokens: %w", err)
	}
	return n, nil
}
