package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/scanfleet/scanfleet/sqlstore"
)

// Config configures a PostgreSQL store.
type Config struct {
	// URL is the connection string, e.g.
	// "postgres://scanfleet@db.internal:5432/scanfleet?sslmode=verify-full".
	// Parameters pgx does not know, such as search_path, are sent to the
	// server as run-time parameters. Required.
	URL string
	// MaxConns bounds the pool. Default: 20.
	MaxConns int
	// Now is the store's clock. Default: time.Now.
	Now func() time.Time
}

// WithDefaults returns the config with its defaults filled in.
func (c Config) WithDefaults() Config {
	if c.MaxConns == 0 {
		c.MaxConns = 20
	}
	return c
}

func (c Config) validate() error {
	if c.URL == "" {
		return errors.New("postgres: URL is empty")
	}
	if c.MaxConns < 1 {
		return fmt.Errorf("postgres: MaxConns: %d is less than 1", c.MaxConns)
	}
	return nil
}

// dialect is PostgreSQL's sqlstore dialect; DB.Dialect returns it.
var dialect = sqlstore.Dialect{
	Name:        "postgres",
	Goose:       goose.DialectPostgres,
	Placeholder: sqlstore.PlaceholderDollar,
	MaxParams:   65535,
	RowLock:     " FOR NO KEY UPDATE",
	Classify:    classify,
}

// PostgreSQL SQLSTATE codes.
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

func classify(err error) sqlstore.Violation {
	var e *pgconn.PgError
	if !errors.As(err, &e) {
		return sqlstore.NoViolation
	}
	switch e.Code {
	case uniqueViolation:
		return sqlstore.UniqueViolation
	case foreignKeyViolation:
		return sqlstore.ForeignKeyViolation
	}
	return sqlstore.NoViolation
}

// Open connects to the database at cfg.URL, brings its schema up to date
// and returns the store. Several servers may open one database at once:
// migrations take a session advisory lock, one per schema.
func Open(ctx context.Context, cfg Config) (*sqlstore.DB, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	connConfig, err := pgx.ParseConfig(cfg.URL)
	if err != nil {
		// pgx's message hides the password; it is still not for users.
		return nil, fmt.Errorf("open postgres: parse URL: %w", err)
	}
	db := stdlib.OpenDB(*connConfig)
	db.SetMaxOpenConns(cfg.MaxConns)
	db.SetMaxIdleConns(cfg.MaxConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := migrate(ctx, db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	store, err := sqlstore.New(sqlstore.Config{DB: db, Dialect: dialect, Now: cfg.Now})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return store, nil
}

// migrate runs the migrations under an advisory lock derived from the
// current schema, so that servers sharing a schema migrate one at a time
// while separate schemas (one per test) do not wait on each other.
func migrate(ctx context.Context, db *sql.DB) error {
	var schema string
	if err := db.QueryRowContext(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	h := fnv.New64a()
	h.Write([]byte("scanfleet migrations " + schema))
	locker, err := lock.NewPostgresSessionLocker(
		lock.WithLockID(int64(h.Sum64()>>1)),
		lock.WithLockTimeout(1, 300),
	)
	if err != nil {
		return err
	}
	return sqlstore.Migrate(ctx, db, dialect, goose.WithSessionLocker(locker))
}
