package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the schema's goose migrations, one set for every
// engine.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the embedded directory is always there
	}
	return sub
}

// Migrate brings the schema of db up to date with goose, using the
// dialect's goose dialect. Extra options (a session locker for PostgreSQL)
// are passed to goose.NewProvider.
func Migrate(ctx context.Context, db *sql.DB, d Dialect, opts ...goose.ProviderOption) error {
	p, err := goose.NewProvider(d.Goose, db, Migrations(), opts...)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", d.Name, err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate %s: %w", d.Name, err)
	}
	return nil
}
