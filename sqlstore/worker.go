package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/scanfleet/scanfleet"
)

const workerColumns = "id, name, pool, site, version, capabilities, executors, transport, concurrency, running, draining, " +
	"hash, created_at, last_seen_at, types"

func scanWorker(r rowScanner) (*scanfleet.Worker, error) {
	var (
		w                   scanfleet.Worker
		caps, executors     string
		types               string
		created, lastSeenAt int64
	)
	err := r.Scan(&w.ID, &w.Name, &w.Pool, &w.Site, &w.Version, &caps, &executors, &w.Transport,
		&w.Concurrency, &w.Running, &w.Draining, &w.Hash, &created, &lastSeenAt, &types)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(caps), &w.Capabilities); err != nil {
		return nil, fmt.Errorf("worker %s: decode capabilities: %w", w.ID, err)
	}
	if err := json.Unmarshal([]byte(executors), &w.Executors); err != nil {
		return nil, fmt.Errorf("worker %s: decode executors: %w", w.ID, err)
	}
	if err := json.Unmarshal([]byte(types), &w.Types); err != nil {
		return nil, fmt.Errorf("worker %s: decode types: %w", w.ID, err)
	}
	if w.Types == nil {
		w.Types = []scanfleet.ExecutorType{}
	}
	// Empty lists read back as [], not null, in the API.
	if w.Capabilities == nil {
		w.Capabilities = []scanfleet.Requirement{}
	}
	if w.Executors == nil {
		w.Executors = []string{}
	}
	w.CreatedAt, w.LastSeenAt = fromMicros(created), fromMicros(lastSeenAt)
	return &w, nil
}

// jsonList encodes a list as a JSON array, [] for nil.
func jsonList[T any](list []T) (string, error) {
	if list == nil {
		list = []T{}
	}
	b, err := json.Marshal(list)
	return string(b), err
}

func errWorkerNotFound(id string) error {
	return scanfleet.Errorf(scanfleet.ENOTFOUND, "worker %q not found", id)
}

// errJoinRefused is the one answer to an unknown, used or expired join
// token, so that it tells a guesser nothing.
func errJoinRefused() error {
	return scanfleet.Errorf(scanfleet.EUNAUTHORIZED, "join token is unknown, used or expired")
}

// CreateJoinToken stores t, setting its ID and created_at when they are
// zero. Its hash and expiry are required, its pool must be "" or a pool;
// a token whose hash is already stored is ECONFLICT.
func (db *DB) CreateJoinToken(ctx context.Context, t *scanfleet.JoinToken) error {
	if t.Hash == "" {
		return scanfleet.Errorf(scanfleet.EINVALID, "join token: hash is empty")
	}
	if t.ExpiresAt.IsZero() {
		return scanfleet.Errorf(scanfleet.EINVALID, "join token: expires_at is not set")
	}
	if t.Pool != "" {
		if _, err := scanfleet.ParsePool(string(t.Pool)); err != nil {
			return err
		}
	}
	if t.ID == "" {
		t.ID = scanfleet.NewID()
	}
	if t.CreatedAt.IsZero() {
		t.CreatedAt = db.now()
	}
	t.CreatedAt, t.ExpiresAt, t.UsedAt = truncTime(t.CreatedAt), truncTime(t.ExpiresAt), truncTimePtr(t.UsedAt)
	_, err := db.exec(ctx, db.write, "INSERT INTO worker_join_tokens (id, name, pool, site, hash, created_at, expires_at, used_at, worker_id) "+
		"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		t.ID, t.Name, string(t.Pool), t.Site, t.Hash, micros(t.CreatedAt), micros(t.ExpiresAt), nullMicros(t.UsedAt), t.WorkerID)
	if db.dialect.violation(err) == UniqueViolation {
		return scanfleet.Errorf(scanfleet.ECONFLICT, "join token %q already exists", t.Name)
	} else if err != nil {
		return fmt.Errorf("create join token: %w", err)
	}
	return nil
}

// EnrolWorker redeems the join token whose hash is joinHash and stores w,
// in one transaction. The token must be unused and expire after now, or
// the answer is EUNAUTHORIZED whatever the reason; a token pinned to
// another pool or site than w's is EFORBIDDEN, and stays unused. w gets an
// ID when it has none, CreatedAt (when zero) and LastSeenAt now, and its
// State. Of two enrolments with one token, one wins.
func (db *DB) EnrolWorker(ctx context.Context, joinHash string, w *scanfleet.Worker, now time.Time) error {
	if _, err := scanfleet.ParsePool(string(w.Pool)); err != nil {
		return err
	}
	if w.Hash == "" {
		return scanfleet.Errorf(scanfleet.EINVALID, "worker: credential hash is empty")
	}
	if w.Concurrency < 0 || w.Running < 0 {
		return scanfleet.Errorf(scanfleet.EINVALID, "worker: concurrency %d and running %d must not be negative", w.Concurrency, w.Running)
	}
	caps, err := jsonList(w.Capabilities)
	if err != nil {
		return fmt.Errorf("enrol worker: %w", err)
	}
	executors, err := jsonList(w.Executors)
	if err != nil {
		return fmt.Errorf("enrol worker: %w", err)
	}
	now = truncTime(now)
	if w.ID == "" {
		w.ID = scanfleet.NewID()
	}
	if w.CreatedAt.IsZero() {
		w.CreatedAt = now
	}
	w.CreatedAt, w.LastSeenAt = truncTime(w.CreatedAt), now
	err = db.inTx(ctx, func(tx *sql.Tx) error {
		var (
			id, site  string
			pool      scanfleet.Pool
			expiresAt int64
			usedAt    sql.NullInt64
		)
		err := db.queryRow(ctx, tx, "SELECT id, pool, site, expires_at, used_at FROM worker_join_tokens WHERE hash = ?"+db.dialect.RowLock,
			joinHash).Scan(&id, &pool, &site, &expiresAt, &usedAt)
		if errors.Is(err, sql.ErrNoRows) {
			return errJoinRefused()
		} else if err != nil {
			return err
		}
		if usedAt.Valid || expiresAt <= micros(now) {
			return errJoinRefused()
		}
		if pool != "" && pool != w.Pool {
			return scanfleet.Errorf(scanfleet.EFORBIDDEN, "join token is for pool %q, not pool %q", pool, w.Pool)
		}
		if site != "" && site != w.Site {
			return scanfleet.Errorf(scanfleet.EFORBIDDEN, "join token is for site %q, not site %q", site, w.Site)
		}
		// The guard repeats the check for engines without row locks.
		res, err := db.exec(ctx, tx, "UPDATE worker_join_tokens SET used_at = ?, worker_id = ? WHERE id = ? AND used_at IS NULL",
			micros(now), w.ID, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errJoinRefused()
		}
		types, err := jsonList(w.Types)
		if err != nil {
			return err
		}
		_, err = db.exec(ctx, tx, "INSERT INTO workers ("+workerColumns+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			w.ID, w.Name, string(w.Pool), w.Site, w.Version, caps, executors, w.Transport,
			w.Concurrency, w.Running, w.Draining, w.Hash, micros(w.CreatedAt), micros(w.LastSeenAt), types)
		if db.dialect.violation(err) == UniqueViolation {
			return scanfleet.Errorf(scanfleet.ECONFLICT, "worker %q already exists", w.Name)
		}
		return err
	})
	if err != nil {
		return wrap("enrol worker", err)
	}
	w.DeriveState(now)
	return nil
}

// FindWorkerByHash returns the worker whose credential has the hash, or
// ENOTFOUND; the message does not repeat the hash. Its State is derived
// at the store's clock.
func (db *DB) FindWorkerByHash(ctx context.Context, hash string) (*scanfleet.Worker, error) {
	w, err := scanWorker(db.queryRow(ctx, db.read, "SELECT "+workerColumns+" FROM workers WHERE hash = ?", hash))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, scanfleet.Errorf(scanfleet.ENOTFOUND, "worker not found")
	} else if err != nil {
		return nil, fmt.Errorf("find worker: %w", err)
	}
	w.DeriveState(db.now())
	return w, nil
}

// FindWorker returns the worker with the id, or ENOTFOUND. Its State is
// derived at the store's clock.
func (db *DB) FindWorker(ctx context.Context, id string) (*scanfleet.Worker, error) {
	w, err := scanWorker(db.queryRow(ctx, db.read, "SELECT "+workerColumns+" FROM workers WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, errWorkerNotFound(id)
	} else if err != nil {
		return nil, fmt.Errorf("find worker: %w", err)
	}
	w.DeriveState(db.now())
	return w, nil
}

// ListWorkers returns every worker by name, then id, with its State as of
// now.
func (db *DB) ListWorkers(ctx context.Context, now time.Time) ([]*scanfleet.Worker, error) {
	rows, err := db.query(ctx, db.read, "SELECT "+workerColumns+" FROM workers ORDER BY name, id")
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	defer rows.Close()
	out := []*scanfleet.Worker{}
	for rows.Next() {
		w, err := scanWorker(rows)
		if err != nil {
			return nil, fmt.Errorf("list workers: %w", err)
		}
		w.DeriveState(now)
		out = append(out, w)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	return out, nil
}

// HeartbeatWorker records that the worker was seen at now, running
// hb.Running tasks and draining or not. An unknown worker is ENOTFOUND.
func (db *DB) HeartbeatWorker(ctx context.Context, id string, hb scanfleet.Heartbeat, now time.Time) error {
	if hb.Running < 0 {
		return scanfleet.Errorf(scanfleet.EINVALID, "running: %d is negative", hb.Running)
	}
	res, err := db.exec(ctx, db.write, "UPDATE workers SET last_seen_at = ?, running = ?, draining = ? WHERE id = ?",
		micros(now), hb.Running, hb.Draining, id)
	if err != nil {
		return fmt.Errorf("heartbeat worker: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("heartbeat worker: %w", err)
	} else if n == 0 {
		return errWorkerNotFound(id)
	}
	return nil
}

// ListJoinTokens implements scanfleet.WorkerStore.
func (db *DB) ListJoinTokens(ctx context.Context) ([]*scanfleet.JoinToken, error) {
	rows, err := db.query(ctx, db.read, "SELECT id, name, pool, site, created_at, expires_at, used_at, worker_id FROM worker_join_tokens ORDER BY created_at DESC, id DESC")
	list, err := scanAll(rows, err, func(r rowScanner) (*scanfleet.JoinToken, error) {
		var (
			t                scanfleet.JoinToken
			pool             string
			created, expires int64
			used             sql.NullInt64
		)
		if err := r.Scan(&t.ID, &t.Name, &pool, &t.Site, &created, &expires, &used, &t.WorkerID); err != nil {
			return nil, err
		}
		t.Pool, t.CreatedAt, t.ExpiresAt = scanfleet.Pool(pool), fromMicros(created), fromMicros(expires)
		if used.Valid {
			u := fromMicros(used.Int64)
			t.UsedAt = &u
		}
		return &t, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list join tokens: %w", err)
	}
	return list, nil
}

// DeleteJoinToken implements scanfleet.WorkerStore.
func (db *DB) DeleteJoinToken(ctx context.Context, id string) error {
	res, err := db.exec(ctx, db.write, "DELETE FROM worker_join_tokens WHERE id = ?", id)
	if err != nil {
		return fmt.Errorf("delete join token: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return scanfleet.Errorf(scanfleet.ENOTFOUND, "join token %q not found", id)
	}
	return nil
}

// RevokeWorker implements scanfleet.WorkerStore.
func (db *DB) RevokeWorker(ctx context.Context, id string, now time.Time) error {
	return db.inTx(ctx, func(tx *sql.Tx) error {
		res, err := db.exec(ctx, tx, "DELETE FROM workers WHERE id = ?", id)
		if err != nil {
			return fmt.Errorf("revoke worker: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return scanfleet.Errorf(scanfleet.ENOTFOUND, "worker %q not found", id)
		}
		// Its tasks are handed back as a draining worker's are: their
		// attempt does not count; one whose cancel was asked ends
		// cancelled.
		ts := micros(truncTime(now))
		if _, err := db.exec(ctx, tx, `UPDATE tasks SET status = 'cancelled', cancelled_at = ?, updated_at = ?, lease_expires_at = NULL
			WHERE status = 'started' AND worker_id = ? AND cancel_requested = TRUE`, ts, ts, id); err != nil {
			return fmt.Errorf("revoke worker: %w", err)
		}
		if _, err := db.exec(ctx, tx, `UPDATE tasks SET status = 'requested', requested_at = ?, updated_at = ?, lease_expires_at = NULL,
			worker_id = '', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,
			error = 'handed back: its worker was revoked' WHERE status = 'started' AND worker_id = ?`, ts, ts, id); err != nil {
			return fmt.Errorf("revoke worker: %w", err)
		}
		return nil
	})
}

// AnnounceWorker implements scanfleet.WorkerStore.
func (db *DB) AnnounceWorker(ctx context.Context, id string, a scanfleet.Announcement, now time.Time) error {
	caps, err := jsonList(a.Capabilities)
	if err != nil {
		return err
	}
	executors, err := jsonList(a.Executors)
	if err != nil {
		return err
	}
	types, err := jsonList(a.Types)
	if err != nil {
		return err
	}
	res, err := db.exec(ctx, db.write, "UPDATE workers SET version = ?, capabilities = ?, executors = ?, types = ?, last_seen_at = ? WHERE id = ?",
		a.Version, caps, executors, types, micros(truncTime(now)), id)
	if err != nil {
		return fmt.Errorf("announce worker: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return scanfleet.Errorf(scanfleet.ENOTFOUND, "worker %q not found", id)
	}
	return nil
}
