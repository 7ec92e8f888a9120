package scanfleet

import (
	"errors"
	"fmt"
	"net/http"
)

// Application error codes. Each maps to one HTTP status (HTTPStatus).
const (
	ECONFLICT     = "conflict"     // 409: a unique name is taken, or a state change is not allowed
	EINTERNAL     = "internal"     // 500: anything unexpected; the cause is logged, not shown
	EINVALID      = "invalid"      // 400: bad input, the message names the field
	ENOTFOUND     = "not_found"    // 404
	EUNAUTHORIZED = "unauthorized" // 401: no or unknown token
	EFORBIDDEN    = "forbidden"    // 403: the token's role may not do this
	ETOOLARGE     = "too_large"    // 413: a body or line over its limit
	EUNSUPPORTED  = "unsupported"  // 415: a content type the route does not take
	ENOTALLOWED   = "not_allowed"  // 405
	EUNAVAILABLE  = "unavailable"  // 503
)

var httpStatuses = map[string]int{
	ECONFLICT:     http.StatusConflict,
	EINVALID:      http.StatusBadRequest,
	ENOTFOUND:     http.StatusNotFound,
	EUNAUTHORIZED: http.StatusUnauthorized,
	EFORBIDDEN:    http.StatusForbidden,
	ETOOLARGE:     http.StatusRequestEntityTooLarge,
	EUNSUPPORTED:  http.StatusUnsupportedMediaType,
	ENOTALLOWED:   http.StatusMethodNotAllowed,
	EUNAVAILABLE:  http.StatusServiceUnavailable,
	EINTERNAL:     http.StatusInternalServerError,
}

// HTTPStatus returns the HTTP status an error code answers with, the API's
// and the web UI's alike; 500 for a code it does not know.
func HTTPStatus(code string) int {
	if s, ok := httpStatuses[code]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is the application error: a code from the list above and a message
// written for the user. Details, when set, list further problems of the same
// request (for example every bad line of an ingest body, up to a limit).
type Error struct {
	Code    string
	Message string
	Details []string
}

// Error implements the error interface.
func (e *Error) Error() string {
	return fmt.Sprintf("scanfleet error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the application error in err's chain, "" for
// nil and EINTERNAL for any other error.
func ErrorCode(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-facing message of err: the application
// error's message, or "internal error" for anything unexpected, so that
// causes such as SQL text never reach a client.
func ErrorMessage(err error) string {
	var e *Error
	if err == nil {
		return ""
	} else if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// ErrorDetails returns the details of the application error in err's chain.
func ErrorDetails(err error) []string {
	var e *Error
	if errors.As(err, &e) {
		return e.Details
	}
	return nil
}

// ErrorDetail is an error as the API writes it in JSON.
type ErrorDetail struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Details []string `json:"details,omitempty"`
}

// ErrorBody is the JSON body of every API error answer; clients decode
// answers of 300 and above into it.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// NewErrorDetail returns err as the API writes it: its code, its
// user-facing message and its details.
func NewErrorDetail(err error) ErrorDetail {
	return ErrorDetail{Code: ErrorCode(err), Message: ErrorMessage(err), Details: ErrorDetails(err)}
}

// Err returns the application error d describes.
func (d ErrorDetail) Err() *Error {
	return &Error{Code: d.Code, Message: d.Message, Details: d.Details}
}
