package scanfleet

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestRole(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"admin", "operator", "viewer"} {
		r, err := ParseRole(s)
		require.NoError(t, err)
		require.Equal(t, Role(s), r)
	}
	for _, s := range []string{"", "Admin", "root"} {
		_, err := ParseRole(s)
		require.Equal(t, EINVALID, ErrorCode(err))
		require.Equal(t, `role: "`+s+`" is not one of admin, operator, viewer`, ErrorMessage(err))
	}

	roles := []Role{RoleViewer, RoleOperator, RoleAdmin}
	for i, r := range roles {
		for j, need := range roles {
			require.Equal(t, i >= j, r.Covers(need), "%s covers %s", r, need)
		}
		require.False(t, r.Covers(""), "no role covers an unknown need")
		require.False(t, r.Covers("root"))
		require.False(t, Role("root").Covers(r))
	}
}

func TestNewToken(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	tok, secret, err := NewToken("ci", RoleOperator, now)
	require.NoError(t, err)

	require.True(t, strings.HasPrefix(secret, TokenPrefix))
	require.Len(t, secret, len(TokenPrefix)+32, "160 bits in base32")
	require.Equal(t, strings.ToLower(secret), secret)
	require.Equal(t, secret[:len(TokenPrefix)+6], tok.Prefix)
	require.Equal(t, HashToken(secret), tok.Hash)
	require.NotContains(t, tok.Hash, secret[len(TokenPrefix):])
	require.Len(t, tok.Hash, 64)
	require.Equal(t, "ci", tok.Name)
	require.Equal(t, RoleOperator, tok.Role)
	require.Equal(t, now, tok.CreatedAt)
	require.Nil(t, tok.LastUsedAt)
	u, err := uuid.Parse(tok.ID)
	require.NoError(t, err)
	require.Equal(t, uuid.Version(7), u.Version())

	_, other, err := NewToken("ci", RoleOperator, now)
	require.NoError(t, err)
	require.NotEqual(t, secret, other)
	require.NotEqual(t, HashToken(secret), HashToken(other))
	require.Equal(t, HashToken(secret), HashToken(secret), "the hash is deterministic, so it can be looked up")
}
