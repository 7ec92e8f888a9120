package sqlstore

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scanfleet/scanfleet"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestRebind(t *testing.T) {
	t.Parallel()
	pg := Dialect{Name: "postgres", Placeholder: PlaceholderDollar}
	lite := Dialect{Name: "sqlite", Placeholder: PlaceholderQuestion}
	for _, tc := range []struct{ in, want string }{
		{"SELECT 1", "SELECT 1"},
		{"SELECT a FROM t WHERE b = ? AND c IN (?, ?)", "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"},
		{`SELECT '?' || ?, "odd?" FROM t WHERE k LIKE ? ESCAPE '\'`, `SELECT '?' || $1, "odd?" FROM t WHERE k LIKE $2 ESCAPE '\'`},
		{"SELECT 'it''s?', ?", "SELECT 'it''s?', $1"},
	} {
		require.Equal(t, tc.want, pg.Rebind(tc.in), tc.in)
		require.Equal(t, tc.in, lite.Rebind(tc.in), tc.in)
	}
	many := strings.Repeat("?,", 11) + "?"
	require.Equal(t, "$1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12", pg.Rebind(many))
}

func TestValuesList(t *testing.T) {
	t.Parallel()
	require.Equal(t, "(?, ?), (?, ?), (?, ?)", valuesList(3, 2))
	require.Equal(t, "(?)", valuesList(1, 1))
	require.Equal(t, "", placeholders(0))
}

func TestBatchRows(t *testing.T) {
	t.Parallel()
	db := &DB{dialect: Dialect{MaxParams: 1000}}
	require.Equal(t, 111, db.batchRows(9, BatchSize), "bounded by the parameter limit")
	db.dialect.MaxParams = 0
	require.Equal(t, BatchSize, db.batchRows(9, BatchSize), "bounded by the batch size")
	require.Equal(t, 1, db.batchRows(100000, BatchSize), "always at least one row")
}

func TestCursor(t *testing.T) {
	t.Parallel()
	c := encodeTimeCursor(1234567, "01900000-0000-7000-8000-000000000000")
	us, id, err := decodeTimeCursor(c)
	require.NoError(t, err)
	require.Equal(t, int64(1234567), us)
	require.Equal(t, "01900000-0000-7000-8000-000000000000", id)

	parts, err := decodeCursor(encodeCursor("acme"), 1)
	require.NoError(t, err)
	require.Equal(t, []string{"acme"}, parts)

	for _, bad := range []string{"", "!!", "bm9wZQ", encodeCursor("a", "b"), encodeCursor("x", "id"), strings.Repeat("A", 2000)} {
		_, _, err := decodeTimeCursor(bad)
		require.Equal(t, scanfleet.EINVALID, scanfleet.ErrorCode(err), "%q", bad)
	}
	_, err = decodeCursor(encodeCursor("a", "b"), 1)
	require.Equal(t, scanfleet.EINVALID, scanfleet.ErrorCode(err))
}

// FuzzDecodeCursor feeds cursors from clients: they must decode or be
// EINVALID, never panic, and a decoded cursor encodes back the same.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor("acme"))
	f.Add(encodeTimeCursor(1, "id"))
	f.Add("")
	f.Add("%%%")
	f.Fuzz(func(t *testing.T, c string) {
		for n := 1; n <= 2; n++ {
			parts, err := decodeCursor(c, n)
			if err != nil {
				require.Equal(t, scanfleet.EINVALID, scanfleet.ErrorCode(err))
				continue
			}
			require.Len(t, parts, n)
			require.Equal(t, c, encodeCursor(parts...))
		}
		if us, id, err := decodeTimeCursor(c); err == nil {
			_, _, err2 := decodeTimeCursor(encodeTimeCursor(us, id))
			require.NoError(t, err2)
		}
	})
}

func TestDecodeObject(t *testing.T) {
	t.Parallel()
	m, err := decodeObject(`{"n": 12345678901234567890, "s": "x"}`)
	require.NoError(t, err)
	require.Equal(t, "12345678901234567890", string(m["n"].(interface{ String() string }).String()))
	m, err = decodeObject("null")
	require.NoError(t, err)
	require.NotNil(t, m)
	_, err = decodeObject(`{} {}`)
	require.Error(t, err)
	b, err := canonicalJSON(map[string]any{"b": 1, "a": "<x>"})
	require.NoError(t, err)
	require.Equal(t, `{"a":"<x>","b":1}`, string(b))
}

func TestEscapeLike(t *testing.T) {
	t.Parallel()
	require.Equal(t, `100\%\_a\\b`, escapeLike(`100%_a\b`))
}

func TestDialectDefaults(t *testing.T) {
	t.Parallel()
	pg := Dialect{Name: "postgres", RowLock: " FOR NO KEY UPDATE"}.withDefaults()
	require.Equal(t, " FOR NO KEY UPDATE SKIP LOCKED", pg.SkipLocked, "derived from the row lock")
	lite := Dialect{Name: "sqlite"}.withDefaults()
	require.Empty(t, lite.SkipLocked, "no row locks, nothing to skip")
	own := Dialect{Name: "x", RowLock: " FOR UPDATE", SkipLocked: " FOR UPDATE SKIP LOCKED"}.withDefaults()
	require.Equal(t, " FOR UPDATE SKIP LOCKED", own.SkipLocked, "a set value stays")
}
