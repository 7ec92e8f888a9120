package html

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/scanfleet/scanfleet"
)

// cookieName is the session cookie.
const cookieName = "scanfleet_session"

// session is one sign-in. It holds the token's hash, the key the store
// finds the token by, not its secret.
type session struct {
	id        string
	tokenHash string
	created   time.Time
	expires   time.Time

	// token is the token as looked up for the current request.
	token *scanfleet.Token
}

// canChange reports whether the session's role may change things.
func (s *session) canChange() bool { return s.token.Role.Covers(scanfleet.RoleOperator) }

// sessions holds the sign-ins in memory, keyed by their random id.
type sessions struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	m  map[string]session
}

func newSessions(ttl time.Duration, max int, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, max: max, now: now, m: map[string]session{}}
}

// create starts a session for the token with the hash.
func (ss *sessions) create(tokenHash string) (session, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return session{}, err
	}
	now := ss.now()
	s := session{id: base64.RawURLEncoding.EncodeToString(b[:]), tokenHash: tokenHash, created: now, expires: now.Add(ss.ttl)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= ss.max {
		ss.evictLocked(now)
	}
	ss.m[s.id] = s
	return s, nil
}

// evictLocked drops expired sessions, and the oldest one when none was.
func (ss *sessions) evictLocked(now time.Time) {
	var oldest string
	for id, s := range ss.m {
		if !now.Before(s.expires) {
			delete(ss.m, id)
		} else if oldest == "" || s.created.Before(ss.m[oldest].created) {
			oldest = id
		}
	}
	if len(ss.m) >= ss.max && oldest != "" {
		delete(ss.m, oldest)
	}
}

// get returns the live session with the id.
func (ss *sessions) get(id string) (session, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[id]
	if ok && !ss.now().Before(s.expires) {
		delete(ss.m, id)
		return session{}, false
	}
	return s, ok
}

func (ss *sessions) delete(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.m, id)
}

// handler serves a signed-in page; an error it returns is shown as the
// error page.
type handler func(w http.ResponseWriter, r *http.Request, s *session) error

// auth runs h for a signed-in user whose token covers need. Without a
// session a page redirects to the sign-in form; a role that falls short
// gets 403, whatever the page showed.
func (u *UI) auth(need scanfleet.Role, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := u.session(r)
		if !ok {
			target := "/signin"
			if r.Method == http.MethodGet && r.URL.Path != "/" {
				target += "?next=" + url.QueryEscape(r.URL.RequestURI())
			}
			if r.Header.Get("HX-Request") == "true" {
				w.Header().Set("HX-Redirect", target)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, target, http.StatusSeeOther)
			return
		}
		if !s.token.Role.Covers(need) {
			u.renderError(w, r, s, scanfleet.Errorf(scanfleet.EFORBIDDEN, "this needs the %s role; you signed in with %q, a %s token", need, s.token.Name, s.token.Role))
			return
		}
		if err := h(w, r, s); err != nil {
			u.renderError(w, r, s, err)
		}
	})
}

// session returns the request's session with its token looked up afresh.
func (u *UI) session(r *http.Request) (*session, bool) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil, false
	}
	s, ok := u.sessions.get(c.Value)
	if !ok {
		return nil, false
	}
	tok, err := u.b.TokenByHash(r.Context(), s.tokenHash)
	if err != nil {
		if scanfleet.ErrorCode(err) == scanfleet.ENOTFOUND {
			u.sessions.delete(s.id) // the token was revoked
		} else {
			u.logger.Error("ui: look up session token", "err", err)
		}
		return nil, false
	}
	s.token = tok
	return &s, true
}

type signInData struct {
	Next  string
	Error string
}

func (u *UI) handleSignInForm(w http.ResponseWriter, r *http.Request) {
	if _, ok := u.session(r); ok {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	u.render(w, r, http.StatusOK, "signin", nil, "Sign in", signInData{Next: safeNext(r.URL.Query().Get("next"))})
}

func (u *UI) handleSignIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	secret := strings.TrimSpace(r.PostFormValue("token"))
	next := safeNext(r.PostFormValue("next"))
	fail := func(status int, msg string) {
		u.render(w, r, status, "signin", nil, "Sign in", signInData{Next: next, Error: msg})
	}
	if secret == "" {
		fail(http.StatusBadRequest, "Enter an API token.")
		return
	}
	hash := scanfleet.HashToken(secret)
	if _, err := u.b.TokenByHash(r.Context(), hash); scanfleet.ErrorCode(err) == scanfleet.ENOTFOUND {
		fail(http.StatusUnauthorized, "Unknown or revoked token.")
		return
	} else if err != nil {
		u.renderError(w, r, nil, err)
		return
	}
	if c, err := r.Cookie(cookieName); err == nil {
		u.sessions.delete(c.Value) // a fresh id at each sign-in
	}
	s, err := u.sessions.create(hash)
	if err != nil {
		u.renderError(w, r, nil, err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: s.id, Path: "/", Expires: s.expires, MaxAge: int(u.cfg.SessionTTL / time.Second),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || u.cfg.SecureCookies,
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (u *UI) handleSignOut(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(cookieName); err == nil {
		u.sessions.delete(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil || u.cfg.SecureCookies})
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// safeNext keeps a redirect target on this site: a path, never
// "//host" or "/\host", which browsers read as another site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	return next
}
