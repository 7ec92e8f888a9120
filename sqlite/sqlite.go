package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/scanfleet/scanfleet/sqlstore"
)

// Config configures an SQLite store.
type Config struct {
	// Path is the database file; its directory is created if missing.
	// Default: "scanfleet.db".
	Path string
	// BusyTimeout is how long a connection waits for a lock held by
	// another process before it gives up. Default: 10s.
	BusyTimeout time.Duration
	// ReadConns is the size of the read pool. Default: max(4, GOMAXPROCS).
	ReadConns int
	// Now is the store's clock. Default: time.Now.
	Now func() time.Time
}

// WithDefaults returns the config with its defaults filled in.
func (c Config) WithDefaults() Config {
	c.Path = cmp.Or(c.Path, "scanfleet.db")
	c.BusyTimeout = cmp.Or(c.BusyTimeout, 10*time.Second)
	c.ReadConns = cmp.Or(c.ReadConns, max(4, runtime.GOMAXPROCS(0)))
	return c
}

func (c Config) validate() error {
	if c.BusyTimeout < time.Millisecond {
		return fmt.Errorf("sqlite: BusyTimeout: %s is shorter than 1ms", c.BusyTimeout)
	}
	if c.ReadConns < 1 {
		return fmt.Errorf("sqlite: ReadConns: %d is less than 1", c.ReadConns)
	}
	return nil
}

// dialect is SQLite's sqlstore dialect; DB.Dialect returns it.
var dialect = sqlstore.Dialect{
	Name:        "sqlite",
	Goose:       goose.DialectSQLite3,
	Placeholder: sqlstore.PlaceholderQuestion,
	MaxParams:   32766, // SQLITE_MAX_VARIABLE_NUMBER since 3.32
	Classify:    classify,
}

func classify(err error) sqlstore.Violation {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return sqlstore.NoViolation
	}
	switch e.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return sqlstore.UniqueViolation
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return sqlstore.ForeignKeyViolation
	}
	return sqlstore.NoViolation
}

// Open opens (creating if needed) the SQLite database at cfg.Path, brings
// its schema up to date and returns the store.
//
// It holds two pools on the file: a write pool of one connection whose
// transactions begin IMMEDIATE, so that writers queue in Go rather than
// meeting SQLITE_BUSY halfway through a transaction, and a read pool of
// several query-only connections, which WAL lets read while a write is in
// progress.
func Open(ctx context.Context, cfg Config) (*sqlstore.DB, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	path, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	busy := strconv.FormatInt(cfg.BusyTimeout.Milliseconds(), 10)

	write, err := sql.Open("sqlite", dsn(path, busy, false))
	if err != nil {
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxIdleTime(0)
	write.SetConnMaxLifetime(0)
	if err := sqlstore.Migrate(ctx, write, dialect); err != nil {
		_ = write.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}

	read, err := sql.Open("sqlite", dsn(path, busy, true))
	if err != nil {
		_ = write.Close()
		return nil, fmt.Errorf("open sqlite: %w", err)
	}
	read.SetMaxOpenConns(cfg.ReadConns)
	read.SetMaxIdleConns(cfg.ReadConns)

	db, err := sqlstore.New(sqlstore.Config{DB: write, ReadDB: read, Dialect: dialect, Now: cfg.Now})
	if err != nil {
		_ = write.Close()
		_ = read.Close()
		return nil, err
	}
	if err := db.Ping(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return db, nil
}

// dsn returns the modernc.org/sqlite data source name for the file: a
// file: URI (so the path may hold any character) with the connection's
// pragmas. WAL and synchronous=NORMAL are the usual pairing: durable at
// each checkpoint, fast at each commit.
func dsn(path, busyMillis string, readOnly bool) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+busyMillis+")")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	if readOnly {
		q.Add("_pragma", "query_only(1)")
	} else {
		q.Add("_pragma", "journal_mode(WAL)")
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}
	return u.String()
}
