package http

import (
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"

	"github.com/scanfleet/scanfleet"
)

// handleWorkerArtifact stores a file a held task produced (a packet
// capture): the body as it is, up to scanfleet.MaxArtifactSize.
func (s *Server) handleWorkerArtifact(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	t, err := s.holds(ctx, workerFrom(ctx), pathValue(r, "id"), attemptParam(r))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	a := &scanfleet.Artifact{TaskID: t.ID, Name: pathValue(r, "name"), ContentType: r.Header.Get("Content-Type")}
	if _, _, err := mime.ParseMediaType(a.ContentType); err != nil {
		a.ContentType = "application/octet-stream"
	}
	body := http.MaxBytesReader(w, r.Body, scanfleet.MaxArtifactSize)
	if err := s.store.PutArtifact(ctx, a, body); err != nil {
		s.writeError(w, r, bodyError(err, scanfleet.MaxArtifactSize))
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// handleListArtifacts lists the files a task produced.
func (s *Server) handleListArtifacts(w http.ResponseWriter, r *http.Request) {
	list, err := s.store.ListArtifacts(r.Context(), pathValue(r, "id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []*scanfleet.Artifact{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": list})
}

// handleGetArtifact downloads one file a task produced.
func (s *Server) handleGetArtifact(w http.ResponseWriter, r *http.Request) {
	a, rc, err := s.store.OpenArtifact(r.Context(), pathValue(r, "id"), pathValue(r, "name"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer rc.Close()
	h := w.Header()
	h.Set("Content-Type", a.ContentType)
	h.Set("Content-Length", strconv.FormatInt(a.Size, 10))
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.TaskID + "-" + a.Name}))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Digest", "sha-256="+a.SHA256)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, rc); err != nil {
		s.logger.Warn("send artifact", "task", a.TaskID, "name", a.Name, "err", fmt.Sprint(err))
	}
}
