package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
)

var _ scanfleet.Store = (*DB)(nil)

// Config configures a DB.
type Config struct {
	// DB takes every write and every transaction. Required. For SQLite it
	// should hold a single connection, so that writers queue in Go instead
	// of failing with SQLITE_BUSY.
	DB *sql.DB
	// ReadDB takes plain reads outside transactions. Default: DB.
	ReadDB *sql.DB
	// Dialect describes the engine. Required: Dialect.Name must be set.
	Dialect Dialect
	// Now is the clock for times the caller does not give (a workspace's
	// created_at, a token's). Default: time.Now.
	Now func() time.Time
}

// WithDefaults returns the config with its defaults filled in.
func (c Config) WithDefaults() Config {
	c.ReadDB = cmp.Or(c.ReadDB, c.DB)
	c.Dialect = c.Dialect.withDefaults()
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	if c.DB == nil {
		return errors.New("sqlstore: Config.DB is nil")
	}
	if c.Dialect.Name == "" {
		return errors.New("sqlstore: Config.Dialect.Name is empty")
	}
	return nil
}

// DB is a scanfleet.Store over database/sql. The same code serves SQLite and
// PostgreSQL; the Dialect carries the few differences.
type DB struct {
	write   *sql.DB
	read    *sql.DB
	dialect Dialect
	now     func() time.Time
	stmts   stmtCache
}

// New returns a DB over the given pools. It does not migrate: call Migrate
// first (the sqlite and postgres packages do both).
func New(cfg Config) (*DB, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &DB{write: cfg.DB, read: cfg.ReadDB, dialect: cfg.Dialect, now: cfg.Now}, nil
}

// Writer returns the pool that takes writes, for tools and benchmarks that
// need raw SQL next to the store. Statements must be written with the
// dialect's placeholders; see Dialect.Rebind.
func (db *DB) Writer() *sql.DB { return db.write }

// Dialect returns the engine's dialect.
func (db *DB) Dialect() Dialect { return db.dialect }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.write.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s: %w", db.dialect.Name, err)
	}
	if db.read != db.write {
		if err := db.read.PingContext(ctx); err != nil {
			return fmt.Errorf("ping %s: %w", db.dialect.Name, err)
		}
	}
	return nil
}

// Close closes the pools.
func (db *DB) Close() error {
	db.stmts.close()
	err := db.write.Close()
	if db.read != db.write {
		err = errors.Join(err, db.read.Close())
	}
	return err
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (db *DB) exec(ctx context.Context, q querier, query string, args ...any) (sql.Result, error) {
	if st := db.stmts.get(ctx, q, db.dialect.Rebind(query), db.write); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return q.ExecContext(ctx, db.dialect.Rebind(query), args...)
}

func (db *DB) query(ctx context.Context, q querier, query string, args ...any) (*sql.Rows, error) {
	if st := db.stmts.get(ctx, q, db.dialect.Rebind(query), db.write); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return q.QueryContext(ctx, db.dialect.Rebind(query), args...)
}

func (db *DB) queryRow(ctx context.Context, q querier, query string, args ...any) *sql.Row {
	if st := db.stmts.get(ctx, q, db.dialect.Rebind(query), db.write); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return q.QueryRowContext(ctx, db.dialect.Rebind(query), args...)
}

// inTx runs fn in a transaction on the write pool, committing when fn
// returns nil and rolling back otherwise.
//
// The transaction itself is not bound to ctx: a cancellation racing the
// commit could otherwise report failure for a commit that happened. ctx
// still cancels fn's statements, and is checked once more before the
// commit, so an error always means nothing was written.
func (db *DB) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.write.BeginTx(context.WithoutCancel(ctx), nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer db.stmts.prepareWanted(context.WithoutCancel(ctx), db.write)
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := ctx.Err(); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// placeholders returns "?, ?, ?" with n marks.
func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// valuesList returns "(?, ?), (?, ?)" for rows rows of cols columns.
func valuesList(rows, cols int) string {
	row := "(" + placeholders(cols) + ")"
	var b strings.Builder
	b.Grow(rows * (len(row) + 2))
	for i := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(row)
	}
	return b.String()
}

// batchRows returns how many rows of cols columns fit in one statement,
// at most limit.
func (db *DB) batchRows(cols, limit int) int {
	return max(1, min(limit, db.dialect.maxParams()/cols))
}

// insertRows inserts rows (flattened, cols values each) with head
// ("INSERT INTO t (a, b) VALUES "), several rows per statement. The rows
// go in chunks of a power of two, at most maxChunkRows, so that a few
// statement texts serve every batch and each is parsed once: parsing a
// statement of hundreds of rows costs about as much as running it.
func (db *DB) insertRows(ctx context.Context, q querier, head string, cols int, args []any) error {
	per := min(db.batchRows(cols, BatchSize), maxChunkRows)
	for len(args) > 0 {
		n := min(per, len(args)/cols)
		n = 1 << (bits.Len(uint(n)) - 1) // the largest power of two not above n
		query := db.dialect.Rebind(head + valuesList(n, cols))
		chunk := args[:n*cols]
		var err error
		if st := db.stmts.getAny(ctx, q, query, db.write); st != nil {
			_, err = st.ExecContext(ctx, chunk...)
		} else {
			_, err = q.ExecContext(ctx, query, chunk...)
		}
		if err != nil {
			return err
		}
		args = args[n*cols:]
	}
	return nil
}

// maxChunkRows bounds the rows of one of insertRows's statements.
const maxChunkRows = 64

// BatchSize is how many rows one multi-row INSERT carries at most; fewer
// when they would pass the dialect's bind-parameter limit.
const BatchSize = 500

// Times are stored as BIGINT microseconds since the Unix epoch, UTC.

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// truncTime returns t as it reads back from the store.
func truncTime(t time.Time) time.Time { return fromMicros(micros(t)) }

func nullMicros(t *time.Time) any {
	if t == nil {
		return nil
	}
	return micros(*t)
}

func fromNullMicros(v sql.NullInt64) *time.Time {
	if !v.Valid {
		return nil
	}
	t := fromMicros(v.Int64)
	return &t
}

// rowScanner is a *sql.Row or *sql.Rows.
type rowScanner interface {
	Scan(dest ...any) error
}

// scanAll reads every row of a query's result with scan and closes the
// rows; it takes the query's result as is, so that callers need not check
// its error first. It never returns a nil slice without an error.
func scanAll[T any](rows *sql.Rows, err error, scan func(rowScanner) (T, error)) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// countBy reads "key, COUNT(*)" rows into a map that has every one of keys,
// zero when no row counted it.
func countBy[K ~string](rows *sql.Rows, err error, keys []K) (map[K]int64, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[K]int64, len(keys))
	for _, k := range keys {
		out[k] = 0
	}
	for rows.Next() {
		var (
			k K
			n int64
		)
		if err := rows.Scan(&k, &n); err != nil {
			return nil, err
		}
		out[k] = n
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// pageOf cuts one page of limit items off items read with LIMIT limit+1,
// and returns it with the cursor of the next page ("" after the last).
func pageOf[T any](items []T, limit int, cursor func(T) string) ([]T, string) {
	if len(items) <= limit {
		return items, ""
	}
	items = items[:limit]
	return items, cursor(items[len(items)-1])
}

// wrap adds op to an internal error. Application errors pass unchanged:
// their message is already written for the user.
func wrap(op string, err error) error {
	var e *scanfleet.Error
	if err == nil || errors.As(err, &e) {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}
