package http

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/scanfleet/scanfleet"
)

// handleIngestRecords stores records sent as JSON Lines (native records or
// Faraday bulk_create documents, one per line), or as one JSON document when
// the content type is application/json. The whole body is validated before
// anything is written; ?task= attributes the records to a task of the
// workspace.
func (s *Server) handleIngestRecords(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	start := time.Now()
	name := pathValue(r, "ws")
	if _, err := s.store.FindWorkspace(ctx, name); err != nil {
		s.ingestError(w, r, err)
		return
	}
	taskID := r.URL.Query().Get("task")
	if taskID != "" {
		t, err := s.store.FindTask(ctx, taskID)
		if err != nil {
			s.ingestError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "task: %s", scanfleet.ErrorMessage(err)))
			return
		} else if t.Workspace != name {
			s.ingestError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "task: task %s belongs to workspace %q, not %q", taskID, t.Workspace, name))
			return
		}
	}
	mt := "application/x-ndjson"
	if ct := r.Header.Get("Content-Type"); ct != "" {
		var err error
		if mt, _, err = mime.ParseMediaType(ct); err != nil {
			s.ingestError(w, r, scanfleet.Errorf(scanfleet.EUNSUPPORTED, "content type %q is not valid", ct))
			return
		}
	}
	body := http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	var (
		recs []scanfleet.Record
		err  error
	)
	switch mt {
	case "application/json":
		var data []byte
		if data, err = io.ReadAll(body); err == nil {
			recs, err = scanfleet.ParseDocument(data)
		}
	case "application/x-ndjson", "application/jsonl", "application/jsonlines", "application/x-jsonlines", "text/plain":
		recs, err = scanfleet.ParseRecords(body, s.cfg.MaxLineBytes)
	default:
		err = scanfleet.Errorf(scanfleet.EUNSUPPORTED, "content type %q: send application/x-ndjson (JSON Lines) or application/json (one document)", mt)
	}
	var me *http.MaxBytesError
	if errors.As(err, &me) {
		err = scanfleet.Errorf(scanfleet.ETOOLARGE, "body: larger than the %d-byte limit; split it into several requests", s.cfg.MaxBodyBytes)
	}
	if err != nil {
		s.ingestError(w, r, err)
		return
	}
	res, err := s.store.UpsertRecords(ctx, name, taskID, recs, s.cfg.Now())
	if err != nil {
		s.ingestError(w, r, err)
		return
	}
	s.metrics.observeIngest(res, time.Since(start))
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) ingestError(w http.ResponseWriter, r *http.Request, err error) {
	s.metrics.ingestRequests.WithLabelValues(scanfleet.ErrorCode(err)).Inc()
	s.writeError(w, r, err)
}

// handleListRecords lists a workspace's records, a page at a time as JSON,
// or all of them as JSON Lines with ?format=jsonl.
func (s *Server) handleListRecords(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := scanfleet.RecordFilter{Workspace: pathValue(r, "ws"), Key: q.Get("key"), Search: q.Get("q"), Task: q.Get("task")}
	var err error
	if v := q.Get("kind"); v != "" {
		if f.Kind, err = scanfleet.ParseRecordKind(v); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if f.SeenSince, err = queryTime(r, "seen_since"); err != nil {
		s.writeError(w, r, err)
		return
	}
	if f.Page, err = page(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	if _, err := s.store.FindWorkspace(r.Context(), f.Workspace); err != nil {
		s.writeError(w, r, err)
		return
	}
	switch format := q.Get("format"); format {
	case "", "json":
	case "jsonl":
		s.streamRecords(w, r, f)
		return
	default:
		s.writeError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "format: %q is not json or jsonl", format))
		return
	}
	items, next, err := s.store.ListRecords(r.Context(), f)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, newList(items, next))
}

// streamRecords writes every matching record as JSON Lines, page by page,
// so that an export of any size uses bounded memory.
func (s *Server) streamRecords(w http.ResponseWriter, r *http.Request, f scanfleet.RecordFilter) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	f.Page.Limit = scanfleet.MaxPageLimit
	for {
		items, next, err := s.store.ListRecords(r.Context(), f)
		if err != nil {
			// Headers are gone: end the stream with an error line the
			// client recognizes rather than a silent cut.
			_ = enc.Encode(scanfleet.ErrorBody{Error: scanfleet.ErrorDetail{Code: scanfleet.ErrorCode(err), Message: scanfleet.ErrorMessage(err)}})
			s.logger.Error("stream records", "err", err)
			return
		}
		for _, rec := range items {
			if err := enc.Encode(rec); err != nil {
				return
			}
		}
		if next == "" {
			return
		}
		f.Page.Cursor = next
	}
}
