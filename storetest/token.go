package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

func createToken(t *testing.T, s scanfleet.Store, name string, role scanfleet.Role, created time.Time) (*scanfleet.Token, string) {
	t.Helper()
	tok, secret, err := scanfleet.NewToken(name, role, created)
	require.NoError(t, err)
	require.NoError(t, s.CreateToken(t.Context(), tok))
	return tok, secret
}

func requireToken(t *testing.T, want, got *scanfleet.Token) {
	t.Helper()
	require.Equal(t, want.ID, got.ID)
	require.Equal(t, want.Name, got.Name)
	require.Equal(t, want.Role, got.Role)
	require.Equal(t, want.Prefix, got.Prefix)
	require.Equal(t, want.Hash, got.Hash)
	requireTime(t, want.CreatedAt, got.CreatedAt, "created_at")
	requireTimePtr(t, want.LastUsedAt, got.LastUsedAt, "last_used_at")
}

var tokenTests = map[string]func(*testing.T, scanfleet.Store){
	"CreateFind": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		tok, secret := createToken(t, s, "ci", scanfleet.RoleOperator, t0)
		got, err := s.FindTokenByHash(ctx, scanfleet.HashToken(secret))
		require.NoError(t, err)
		requireToken(t, tok, got)
		_, err = s.FindTokenByHash(ctx, scanfleet.HashToken(secret+"x"))
		requireCode(t, err, scanfleet.ENOTFOUND, "token not found")
	},
	"DuplicateHash": func(t *testing.T, s scanfleet.Store) {
		tok, _ := createToken(t, s, "ci", scanfleet.RoleAdmin, t0)
		dup := *tok
		dup.ID = ""
		dup.Name = "copy"
		requireCode(t, s.CreateToken(t.Context(), &dup), scanfleet.ECONFLICT, `token "copy" already exists`)
	},
	"ListCount": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		list, err := s.ListTokens(ctx)
		require.NoError(t, err)
		require.Empty(t, list)
		n, err := s.CountTokens(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
		var want []*scanfleet.Token
		for i, role := range []scanfleet.Role{scanfleet.RoleViewer, scanfleet.RoleAdmin, scanfleet.RoleOperator} {
			tok, _ := createToken(t, s, fmt.Sprintf("token %d", i), role, at(time.Duration(3-i)*time.Minute))
			want = append([]*scanfleet.Token{tok}, want...) // oldest first
		}
		list, err = s.ListTokens(ctx)
		require.NoError(t, err)
		require.Len(t, list, 3)
		for i := range want {
			requireToken(t, want[i], list[i])
		}
		n, err = s.CountTokens(ctx)
		require.NoError(t, err)
		require.Equal(t, 3, n)
	},
	"TouchDelete": func(t *testing.T, s scanfleet.Store) {
		ctx := t.Context()
		tok, secret := createToken(t, s, "ci", scanfleet.RoleViewer, t0)
		used := at(time.Hour)
		require.NoError(t, s.TouchToken(ctx, tok.ID, used))
		got, err := s.FindTokenByHash(ctx, scanfleet.HashToken(secret))
		require.NoError(t, err)
		requireTimePtr(t, &used, got.LastUsedAt, "last_used_at")

		require.NoError(t, s.DeleteToken(ctx, tok.ID))
		_, err = s.FindTokenByHash(ctx, scanfleet.HashToken(secret))
		requireCode(t, err, scanfleet.ENOTFOUND)
		msg := fmt.Sprintf("token %q not found", tok.ID)
		requireCode(t, s.DeleteToken(ctx, tok.ID), scanfleet.ENOTFOUND, msg)
		requireCode(t, s.TouchToken(ctx, tok.ID, used), scanfleet.ENOTFOUND, msg)
		n, err := s.CountTokens(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
	},
}
