package http

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/scanfleet/scanfleet"
)

// ErrorStatusCode returns the HTTP status for an application error code.
func ErrorStatusCode(code string) int { return scanfleet.HTTPStatus(code) }

// writeError writes err as JSON; unexpected errors are logged with their
// cause and shown as "internal error".
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := scanfleet.ErrorCode(err)
	if code == scanfleet.EINTERNAL && r.Context().Err() != nil {
		return // the client went away; nobody reads the answer
	}
	if code == scanfleet.EINTERNAL {
		s.logger.Error("http request", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	}
	writeJSON(w, ErrorStatusCode(code), scanfleet.ErrorBody{Error: scanfleet.NewErrorDetail(err)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	_ = writeJSONErr(w, status, v)
}

// writeJSONErr writes v and says whether it reached the connection.
func writeJSONErr(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	return nil
}
