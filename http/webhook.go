package http

import (
	"net/http"
	"strconv"

	"github.com/scanfleet/scanfleet"
)

// webhookPut is the body of PUT /workspaces/{ws}/webhook.
type webhookPut struct {
	URL    string   `json:"url"`
	Secret string   `json:"secret"`
	Events []string `json:"events"`
}

// handlePutWebhook sets the workspace's webhook. Without a secret, one is
// made and shown in this answer only.
func (s *Server) handlePutWebhook(w http.ResponseWriter, r *http.Request) {
	var req webhookPut
	if err := s.decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	h := &scanfleet.Webhook{Workspace: pathValue(r, "ws"), URL: req.URL, Secret: req.Secret, Events: req.Events, UpdatedAt: s.cfg.Now()}
	made := false
	if h.Secret == "" {
		secret, _, err := scanfleet.NewSecret("sfh_")
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		h.Secret, made = secret, true
	}
	if err := s.store.PutWebhook(r.Context(), h); err != nil {
		s.writeError(w, r, err)
		return
	}
	out := map[string]any{"workspace": h.Workspace, "url": h.URL, "events": h.Events, "updated_at": h.UpdatedAt}
	if made {
		out["secret"] = h.Secret
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleGetWebhook(w http.ResponseWriter, r *http.Request) {
	h, err := s.store.GetWebhook(r.Context(), pathValue(r, "ws"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, h)
}

func (s *Server) handleDeleteWebhook(w http.ResponseWriter, r *http.Request) {
	if err := s.store.DeleteWebhook(r.Context(), pathValue(r, "ws")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleListDeliveries is the webhook's delivery log, newest first.
func (s *Server) handleListDeliveries(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > scanfleet.MaxPageLimit {
			s.writeError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "limit: must be between 1 and %d", scanfleet.MaxPageLimit))
			return
		}
		limit = n
	}
	list, err := s.store.ListDeliveries(r.Context(), pathValue(r, "ws"), limit)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if list == nil {
		list = []*scanfleet.Delivery{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": list})
}
