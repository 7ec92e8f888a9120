package http

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
)

type ctxKey int

const tokenKey ctxKey = 0

// tokenFrom returns the token that authenticated the request.
func tokenFrom(ctx context.Context) *scanfleet.Token {
	t, _ := ctx.Value(tokenKey).(*scanfleet.Token)
	return t
}

// touchInterval bounds how often a token's last use is written, so that
// reads do not turn into writes on every request.
const touchInterval = time.Minute

// auth requires a bearer token whose role covers need.
func (s *Server) auth(need scanfleet.Role) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := r.Header.Get("Authorization")
			scheme, secret, ok := strings.Cut(h, " ")
			if h == "" || !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="scanfleet"`)
				s.writeError(w, r, scanfleet.Errorf(scanfleet.EUNAUTHORIZED, "missing bearer token: send \"Authorization: Bearer <token>\""))
				return
			}
			tok, err := s.store.FindTokenByHash(r.Context(), scanfleet.HashToken(strings.TrimSpace(secret)))
			if scanfleet.ErrorCode(err) == scanfleet.ENOTFOUND {
				w.Header().Set("WWW-Authenticate", `Bearer realm="scanfleet", error="invalid_token"`)
				s.writeError(w, r, scanfleet.Errorf(scanfleet.EUNAUTHORIZED, "unknown or revoked token"))
				return
			} else if err != nil {
				s.writeError(w, r, err)
				return
			}
			if !tok.Role.Covers(need) {
				s.writeError(w, r, scanfleet.Errorf(scanfleet.EFORBIDDEN, "this needs the %s role; the token %q is %s", need, tok.Name, tok.Role))
				return
			}
			s.touch(r.Context(), tok)
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tokenKey, tok)))
		})
	}
}

func (s *Server) touch(ctx context.Context, tok *scanfleet.Token) {
	now := s.cfg.Now()
	s.touchMu.Lock()
	last, ok := s.touched[tok.ID]
	due := !ok || now.Sub(last) >= touchInterval
	if due {
		s.touched[tok.ID] = now
	}
	s.touchMu.Unlock()
	if due {
		if err := s.store.TouchToken(ctx, tok.ID, now); err != nil {
			s.logger.Warn("touch token", slog.String("token", tok.ID), slog.Any("err", err))
		}
	}
}

type createTokenRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

type createTokenResponse struct {
	*scanfleet.Token
	Secret string `json:"token"`
}

func (s *Server) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	var req createTokenRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Name == "" {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "name: is empty"))
		return
	}
	role, err := scanfleet.ParseRole(req.Role)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	tok, secret, err := scanfleet.NewToken(req.Name, role, s.cfg.Now())
	if err == nil {
		err = s.store.CreateToken(r.Context(), tok)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, createTokenResponse{Token: tok, Secret: secret})
}

func (s *Server) handleListTokens(w http.ResponseWriter, r *http.Request) {
	toks, err := s.store.ListTokens(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newList(toks, ""))
}

func (s *Server) handleDeleteToken(w http.ResponseWriter, r *http.Request) {
	id := pathValue(r, "id")
	if cur := tokenFrom(r.Context()); cur != nil && cur.ID == id {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.ECONFLICT, "a token cannot revoke itself; use another admin token"))
		return
	}
	if err := s.store.DeleteToken(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
