package attacksurface

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/scanfleet/scanfleet"
)

// NewHandler returns the standalone, surfacescan-compatible API over g. It
// has no authentication; the scanfleet server mounts the analysis behind
// its own API instead.
//
//	GET /api/v1/attack?vm_id=ID[&mode=transitive|direct|tag]
//	    200 a JSON array of vm ids, sorted; 404 unknown vm_id;
//	    400 vm_id missing or empty, or unknown mode
//	GET /api/v1/stats
//	    200 {"vm_count":N,"request_count":N,"average_request_time":S}
//
// /attack and /stats answer the same, as surfacescan mounts them there.
// Statistics count every request the handler served since it was made, on
// any path and with any status, except the /stats request being answered:
// a middleware tracks each request when it completes, as surfacescan's
// does. Errors are {"error":{"code":"not_found","message":"..."}}; a
// method other than GET or HEAD is 405.
func NewHandler(g *Graph) http.Handler {
	h := &handler{g: g}
	mux := http.NewServeMux()
	for _, prefix := range []string{"/api/v1", ""} {
		mux.HandleFunc(prefix+"/attack", h.attack)
		mux.HandleFunc(prefix+"/stats", h.statsHandler)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("path %q not found", r.URL.Path))
	})
	h.next = mux
	return h
}

type handler struct {
	g     *Graph
	stats Stats
	next  http.Handler
	bufs  sync.Pool // *[]byte response buffers
}

// ServeHTTP is the tracking middleware: statistics are kept here, so a new
// endpoint needs no statistics code of its own.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h.next.ServeHTTP(w, r)
	h.stats.Track(time.Since(start))
}

func allowGet(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("method %s not allowed", r.Method))
	return false
}

func (h *handler) attack(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	q := r.URL.Query()
	id := q.Get("vm_id")
	if id == "" {
		writeError(w, http.StatusBadRequest, "invalid", "missing vm_id query parameter")
		return
	}
	mode, err := ParseMode(q.Get("mode"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	bp, _ := h.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer h.bufs.Put(bp)
	body, err := h.g.AppendAttackersJSON((*bp)[:0], id, mode)
	*bp = body
	if errors.Is(err, ErrVMNotFound) {
		writeError(w, http.StatusNotFound, "not_found", err.Error())
		return
	}
	if err != nil { // cannot happen: the mode was parsed above
		writeError(w, http.StatusInternalServerError, "internal", "internal error")
		return
	}
	writeJSON(w, http.StatusOK, body)
}

func (h *handler) statsHandler(w http.ResponseWriter, r *http.Request) {
	if !allowGet(w, r) {
		return
	}
	body, _ := json.Marshal(h.stats.Snapshot(h.g.VMCount())) // plain struct: cannot fail
	writeJSON(w, http.StatusOK, body)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // the client went away; nothing to do
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(scanfleet.ErrorBody{Error: scanfleet.ErrorDetail{Code: code, Message: msg}}) // plain struct: cannot fail
	writeJSON(w, status, body)
}

// shutdownTimeout bounds how long Serve waits for in-flight requests after
// its context is cancelled.
const shutdownTimeout = 10 * time.Second

// Serve runs the NewHandler API on addr (for example "127.0.0.1:8001", or
// ":0" for any free port) until ctx is cancelled, then shuts down
// gracefully, waiting up to 10 s for requests in flight. ready, if not
// nil, is called with the bound address once the listener accepts
// connections. A nil logger discards. It returns nil after a graceful
// shutdown.
func Serve(ctx context.Context, addr string, g *Graph, logger *slog.Logger, ready func(net.Addr)) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("serve attack surface: %w", err)
	}
	srv := &http.Server{
		Handler:           NewHandler(g),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	logger.Info("attack surface api listening", "addr", ln.Addr().String(), "vms", g.VMCount())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if ready != nil {
		ready(ln.Addr())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve attack surface: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	<-errc // http.ErrServerClosed once Shutdown has begun
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("shut down attack surface api: %w", err)
	}
	logger.Info("attack surface api stopped")
	return nil
}
