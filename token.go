package scanfleet

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"strings"
	"time"
)

// Role is what an API token may do.
type Role string

// The roles, from most to least powerful.
const (
	RoleAdmin    Role = "admin"    // everything, including tokens
	RoleOperator Role = "operator" // create and change workspaces, scans, records; run scans
	RoleViewer   Role = "viewer"   // read only
)

// ParseRole returns the role named s or an EINVALID error.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleAdmin, RoleOperator, RoleViewer:
		return r, nil
	}
	return "", Errorf(EINVALID, "role: %q is not one of admin, operator, viewer", s)
}

// Covers reports whether a token of role r may act as role need.
func (r Role) Covers(need Role) bool {
	rank := map[Role]int{RoleViewer: 1, RoleOperator: 2, RoleAdmin: 3}
	return rank[r] >= rank[need] && rank[need] > 0
}

// Token is an API token as stored: its secret is kept only as a hash.
type Token struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Role       Role       `json:"role"`
	Prefix     string     `json:"prefix"` // the first characters, to tell tokens apart
	Hash       string     `json:"-"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
}

// TokenPrefix starts every API token, so that secret scanners can find
// leaked ones.
const TokenPrefix = "sfk_"

// NewToken makes a token with a fresh 160-bit secret and returns it with the
// secret in plain text, which is shown once and never stored.
func NewToken(name string, role Role, now time.Time) (*Token, string, error) {
	var b [20]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, "", err
	}
	secret := TokenPrefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
	return &Token{
		ID:        NewID(),
		Name:      name,
		Role:      role,
		Prefix:    secret[:len(TokenPrefix)+6],
		Hash:      HashToken(secret),
		CreatedAt: now,
	}, secret, nil
}

// HashToken returns the stored form of a token secret. The secret has 160
// random bits, so a fast hash is enough: nothing can be guessed from it.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// TokenStore stores API tokens.
type TokenStore interface {
	CreateToken(ctx context.Context, t *Token) error
	// FindTokenByHash returns the token with the hash, or ENOTFOUND.
	FindTokenByHash(ctx context.Context, hash string) (*Token, error)
	ListTokens(ctx context.Context) ([]*Token, error)
	DeleteToken(ctx context.Context, id string) error
	TouchToken(ctx context.Context, id string, now time.Time) error
	CountTokens(ctx context.Context) (int, error)
}
