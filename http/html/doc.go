// Package html serves scanfleet's web UI: server-rendered html/template
// pages with htmx (vendored as static/htmx.min.js, version 2.0.11), all
// embedded in the binary.
//
// Every page works without JavaScript; htmx only expands a task's row in
// place, refreshes a running task's status and posts a kill without leaving
// the page, and a few lines of static/app.js follow a task's log as
// server-sent events.
//
// A user signs in with an API token. The UI keeps the session on the
// server, in memory: the cookie holds a random session id (HttpOnly,
// SameSite=Strict), the session holds the token's hash, never its secret,
// and every request looks the token up again, so a revoked token ends its
// sessions at once. Sessions expire (Config.SessionTTL) and end when the
// server restarts. Requests that change anything are refused for the viewer
// role and for cross-origin browsers (net/http's CrossOriginProtection).
//
// The package does not import the API server: it needs a Backend, which
// *http.Server implements, so that a change made in the UI goes through the
// same code as the API's.
package html
