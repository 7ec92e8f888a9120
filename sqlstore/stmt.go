package sqlstore

import (
	"context"
	"database/sql"
	"strings"
	"sync"
)

// maxCachedStmts bounds the prepared statements kept per pool: queries
// with IN lists of many lengths must not grow the cache without end.
const maxCachedStmts = 256

// maxCachedParams bounds the parameters of a cached statement: multi-row
// INSERTs and long IN lists come in many lengths, each its own text, and
// would crowd the hot queries out of the cache.
const maxCachedParams = 64

// stmtCache keeps prepared statements of the hot queries. Parsing SQL is a
// large part of a short statement's cost (with the pure-Go SQLite driver
// especially); a prepared statement is parsed once per connection.
type stmtCache struct {
	mu    sync.Mutex
	stmts map[*sql.DB]map[string]*sql.Stmt
	// wanted are queries first run inside a transaction, to be prepared
	// once it ends (prepareWanted).
	wanted map[*sql.DB]map[string]bool
}

// get returns a prepared statement of query for q (a pool, or a
// transaction on txPool, which gets the pool's statement bound to it), or
// nil when the query is not cached and cannot be: the caller then runs it
// directly.
func (c *stmtCache) get(ctx context.Context, q querier, query string, txPool *sql.DB) *sql.Stmt {
	if strings.Count(query, "?")+strings.Count(query, "$") > maxCachedParams {
		return nil // a long list of values: its text changes with its length
	}
	return c.getAny(ctx, q, query, txPool)
}

// getAny is get for a query of any length: one of the few texts of
// insertRows's chunks, say.
func (c *stmtCache) getAny(ctx context.Context, q querier, query string, txPool *sql.DB) *sql.Stmt {
	var (
		pool *sql.DB
		tx   *sql.Tx
	)
	switch x := q.(type) {
	case *sql.DB:
		pool = x
	case *sql.Tx:
		pool, tx = txPool, x
	default:
		return nil
	}
	c.mu.Lock()
	if c.stmts == nil {
		c.stmts = map[*sql.DB]map[string]*sql.Stmt{}
	}
	m := c.stmts[pool]
	if m == nil {
		m = map[string]*sql.Stmt{}
		c.stmts[pool] = m
	}
	st, ok := m[query]
	full := len(m) >= maxCachedStmts
	// Inside a transaction a new statement is not prepared: that needs a
	// connection of the pool, and the pool's only writer may be the one the
	// transaction holds. It is prepared when the transaction ends
	// (prepareWanted). Nor is the lock held while preparing, for the same
	// reason.
	if !ok && tx != nil && !full {
		if c.wanted == nil {
			c.wanted = map[*sql.DB]map[string]bool{}
		}
		if c.wanted[pool] == nil {
			c.wanted[pool] = map[string]bool{}
		}
		c.wanted[pool][query] = true
	}
	c.mu.Unlock()
	if !ok && tx == nil && !full {
		prepared, err := pool.PrepareContext(ctx, query)
		if err != nil {
			return nil
		}
		c.mu.Lock()
		if st, ok = m[query]; ok {
			_ = prepared.Close() // another goroutine was first
		} else if c.stmts != nil {
			m[query], st = prepared, prepared
		} else {
			c.mu.Unlock()
			_ = prepared.Close() // closed meanwhile
			return nil
		}
		c.mu.Unlock()
	}
	if st == nil {
		return nil
	}
	if tx != nil {
		return tx.StmtContext(ctx, st)
	}
	return st
}

// prepareWanted prepares the queries that missed the cache inside a
// transaction on pool, now that the transaction is over and a connection
// is free, so that the next transaction finds them parsed.
func (c *stmtCache) prepareWanted(ctx context.Context, pool *sql.DB) {
	c.mu.Lock()
	queries := c.wanted[pool]
	delete(c.wanted, pool)
	c.mu.Unlock()
	for q := range queries {
		_ = c.getAny(ctx, pool, q, nil)
	}
}

// close closes every cached statement.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.stmts {
		for _, st := range m {
			_ = st.Close()
		}
	}
	c.stmts = nil
}
