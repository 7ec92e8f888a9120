package sqlstore

import (
	"strconv"
	"strings"

	"github.com/pressly/goose/v3"
)

// Placeholder is how a driver spells bind parameters.
type Placeholder int

// The placeholder styles. Queries in this package are written with '?'.
const (
	PlaceholderQuestion Placeholder = iota // ?, ?, ? (SQLite)
	PlaceholderDollar                      // $1, $2, $3 (PostgreSQL)
)

// Violation is the kind of constraint a failed statement violated.
type Violation int

// The violations a Dialect tells apart; anything else is an internal error.
const (
	NoViolation         Violation = iota
	UniqueViolation               // a UNIQUE or PRIMARY KEY constraint
	ForeignKeyViolation           // a FOREIGN KEY constraint
)

// Dialect holds the little that differs between the SQL engines behind one
// DB: the schema, queries and store logic are shared. The sqlite and postgres
// packages each provide one.
type Dialect struct {
	// Name names the engine in wrapped errors: "sqlite" or "postgres".
	Name string
	// Goose is the goose dialect the migrations run with.
	Goose goose.Dialect
	// Placeholder is the driver's bind-parameter style.
	Placeholder Placeholder
	// MaxParams bounds the bind parameters of one statement; batches are
	// cut to fit. Zero means 32766 (SQLite's limit; PostgreSQL's is 65535).
	MaxParams int
	// RowLock is appended to a SELECT to lock the selected row until the
	// transaction ends, e.g. " FOR NO KEY UPDATE". SQLite leaves it empty:
	// its write transactions are already serialized.
	RowLock string
	// SkipLocked is appended to the SELECT that picks requested tasks for
	// a poller to claim: it locks the picked rows and skips rows another
	// transaction holds, so that concurrent pollers take different tasks
	// instead of waiting on each other, e.g. " FOR NO KEY UPDATE SKIP
	// LOCKED". SQLite leaves it empty: a claim is one UPDATE statement and
	// its writes are serialized, so two claims cannot pick the same row.
	// Default: RowLock followed by " SKIP LOCKED" when RowLock is set.
	SkipLocked string
	// Classify tells which constraint, if any, a driver error violated.
	// Nil means the engine reports none, and every error is internal.
	Classify func(err error) Violation
}

// violation classifies err with the dialect's Classify.
func (d *Dialect) violation(err error) Violation {
	if err == nil || d.Classify == nil {
		return NoViolation
	}
	return d.Classify(err)
}

// withDefaults returns the dialect with SkipLocked derived from RowLock
// when it is not set.
func (d Dialect) withDefaults() Dialect {
	if d.SkipLocked == "" && d.RowLock != "" {
		d.SkipLocked = d.RowLock + " SKIP LOCKED"
	}
	return d
}

func (d *Dialect) maxParams() int {
	if d.MaxParams > 0 {
		return d.MaxParams
	}
	return 32766
}

// Rebind rewrites the '?' placeholders of query into the dialect's style.
// Question marks inside quoted strings and identifiers are left alone.
func (d Dialect) Rebind(query string) string {
	if d.Placeholder != PlaceholderDollar || strings.IndexByte(query, '?') < 0 {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + len(query)/4)
	n := 0
	var quote byte // the quote we are inside, or 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0 // a doubled quote closes and reopens: same result
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
