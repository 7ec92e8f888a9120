package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable that holds the test server's URL,
// e.g. "postgres://postgres@127.0.0.1:5432/test?sslmode=disable".
const EnvURL = "TEST_DATABASE_URL"

// URL returns a connection URL for a fresh, empty schema of the database
// named by TEST_DATABASE_URL, selected through search_path, and drops the
// schema when the test ends. Without TEST_DATABASE_URL the test is skipped.
func URL(tb testing.TB) string {
	tb.Helper()
	SkipIfUnset(tb)
	base := os.Getenv(EnvURL)
	u, err := url.Parse(base)
	if err != nil {
		tb.Fatalf("pgtest: %s is not a URL: %v", EnvURL, err)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	schema := "test_" + hex.EncodeToString(b[:])

	exec(tb, base, "CREATE SCHEMA "+schema)
	tb.Cleanup(func() { exec(tb, base, "DROP SCHEMA "+schema+" CASCADE") })

	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// SkipIfUnset skips the test, saying why, when TEST_DATABASE_URL is unset.
// Tests that open several databases call it first, to skip once.
func SkipIfUnset(tb testing.TB) {
	tb.Helper()
	if os.Getenv(EnvURL) == "" {
		tb.Skipf("PostgreSQL tests need %s, e.g. %s=postgres://postgres@127.0.0.1:5432/test?sslmode=disable", EnvURL, EnvURL)
	}
}

// exec runs one statement on a connection of its own.
func exec(tb testing.TB, connURL, stmt string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, connURL)
	if err != nil {
		tb.Fatalf("pgtest: connect to %s: %v", EnvURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, stmt); err != nil {
		tb.Fatalf("pgtest: %s: %v", stmt, err)
	}
}
