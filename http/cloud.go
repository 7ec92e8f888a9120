package http

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/attacksurface"
)

// graphCache keeps the analysed graph of each workspace's cloud
// environment, so that a query costs about the size of its answer and not a
// rebuild. An entry is valid while the stored environment's UpdatedAt is
// the one it was built from.
type graphCache struct {
	mu     sync.Mutex
	graphs map[string]cachedGraph
}

type cachedGraph struct {
	updated time.Time
	graph   *attacksurface.Graph
}

func (c *graphCache) get(ws string, updated time.Time) *attacksurface.Graph {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.graphs[ws]; ok && e.updated.Equal(updated) {
		return e.graph
	}
	return nil
}

func (c *graphCache) put(ws string, updated time.Time, g *attacksurface.Graph) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.graphs == nil {
		c.graphs = map[string]cachedGraph{}
	}
	c.graphs[ws] = cachedGraph{updated: updated, graph: g}
}

// cloudError turns an attacksurface parse or validation error into EINVALID.
func cloudError(err error) error {
	var pe *attacksurface.ParseError
	if errors.As(err, &pe) || errors.Is(err, attacksurface.ErrInvalidEnv) {
		return scanfleet.Errorf(scanfleet.EINVALID, "cloud environment: %v", err)
	}
	return err
}

// handlePutCloud replaces the workspace's cloud environment with the body,
// {"vms":[…],"fw_rules":[…]}, after validating and analysing it.
func (s *Server) handlePutCloud(w http.ResponseWriter, r *http.Request) {
	ce, err := s.putCloud(r.Context(), pathValue(r, "ws"), http.MaxBytesReader(w, r.Body, s.cfg.MaxCloudBytes))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ce)
}

// putCloud validates, analyses and stores a workspace's cloud environment
// read from body, and caches its graph.
func (s *Server) putCloud(ctx context.Context, name string, body io.Reader) (*scanfleet.CloudEnv, error) {
	if _, err := s.store.FindWorkspace(ctx, name); err != nil {
		return nil, err
	}
	env, err := attacksurface.Parse(body)
	var me *http.MaxBytesError
	if errors.As(err, &me) {
		return nil, scanfleet.Errorf(scanfleet.ETOOLARGE, "body: larger than the %d-byte limit for a cloud environment", s.cfg.MaxCloudBytes)
	} else if err != nil {
		return nil, cloudError(err)
	}
	g, err := attacksurface.Build(env)
	if err != nil {
		return nil, cloudError(err)
	}
	var buf bytes.Buffer
	if err := env.WriteJSON(&buf); err != nil {
		return nil, err
	}
	ce := &scanfleet.CloudEnv{Workspace: name, Data: buf.Bytes(), VMCount: len(env.VMs), RuleCount: len(env.Rules), UpdatedAt: s.cfg.Now()}
	if err := s.store.PutCloud(ctx, ce); err != nil {
		return nil, err
	}
	// Read back for the stored time, which the store may round.
	if stored, err := s.store.GetCloud(ctx, name); err == nil {
		s.graphs.put(name, stored.UpdatedAt, g)
		ce = stored
	}
	return ce, nil
}

// handleGetCloud returns the environment as stored.
func (s *Server) handleGetCloud(w http.ResponseWriter, r *http.Request) {
	ce, err := s.store.GetCloud(r.Context(), pathValue(r, "ws"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Last-Modified", ce.UpdatedAt.UTC().Format(http.TimeFormat))
	_, _ = w.Write(ce.Data)
}

// handleAttack answers which VMs can attack ?vm_id= in the workspace's
// cloud environment: a sorted JSON array, transitive unless ?mode=direct or
// ?mode=tag.
func (s *Server) handleAttack(w http.ResponseWriter, r *http.Request) {
	vmID := r.URL.Query().Get("vm_id")
	if vmID == "" {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "vm_id: is missing; pass ?vm_id=<id>"))
		return
	}
	mode, err := attacksurface.ParseMode(r.URL.Query().Get("mode"))
	if err != nil {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.EINVALID, "mode: %v", err))
		return
	}
	g, err := s.cloudGraph(r, pathValue(r, "ws"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	out, err := g.AppendAttackersJSON(nil, vmID, mode)
	if errors.Is(err, attacksurface.ErrVMNotFound) {
		s.writeError(w, r, scanfleet.Errorf(scanfleet.ENOTFOUND, "vm %q not found in the cloud environment", vmID))
		return
	} else if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// cloudGraph returns the analysed graph of the workspace's environment,
// building it when the cache has none for the stored version.
func (s *Server) cloudGraph(r *http.Request, ws string) (*attacksurface.Graph, error) {
	ce, err := s.store.GetCloud(r.Context(), ws)
	if err != nil {
		return nil, err
	}
	if g := s.graphs.get(ws, ce.UpdatedAt); g != nil {
		return g, nil
	}
	env, err := attacksurface.Parse(bytes.NewReader(ce.Data))
	if err != nil {
		return nil, err
	}
	g, err := attacksurface.Build(env)
	if err != nil {
		return nil, err
	}
	s.graphs.put(ws, ce.UpdatedAt, g)
	return g, nil
}
