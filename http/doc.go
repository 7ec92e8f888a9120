// Package http serves scanfleet's REST API under /api/v1 and its
// Prometheus metrics under /metrics.
//
// Every /api route needs a bearer token (see scanfleet.Token) except
// /api/v1/health. GET routes need the viewer role, routes that change
// workspaces, scans or records need operator, and token routes need admin.
// Errors are JSON: {"error":{"code":"…","message":"…"}}, the code one of
// scanfleet's error codes, mapped to an HTTP status by ErrorStatusCode.
package http
