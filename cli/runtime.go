package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/scanfleet/scanfleet"
	sfhttp "github.com/scanfleet/scanfleet/http"
	"github.com/scanfleet/scanfleet/natsbus"
	"github.com/scanfleet/scanfleet/worker"
)

// localWorkers runs one in-process worker per pool that has executors, so
// that a single "scanfleet server" scans end to end. They use the same
// worker code and API as remote workers, over loopback HTTP.
type localWorkers struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	closers []func()
}

func startLocalWorkers(ctx context.Context, srv *sfhttp.Server, store scanfleet.Store, stateDir string, concurrency int, lease time.Duration, natsURL, natsCA string, external []scanfleet.Executor, logger *slog.Logger) (*localWorkers, error) {
	trust, err := natsbus.TrustPEM(natsCA)
	if err != nil {
		return nil, err
	}
	var natsOpts []nats.Option
	if trust != nil {
		natsOpts = append(natsOpts, trust)
	}
	transport := "http"
	if natsURL != "" {
		transport = "nats"
	}
	ctx, cancel := context.WithCancel(ctx)
	lw := &localWorkers{cancel: cancel}
	caps := worker.DetectCapabilities()
	for _, pool := range []scanfleet.Pool{scanfleet.PoolExternal, scanfleet.PoolInternal, scanfleet.PoolBaremetal} {
		ex, names, types := executorsFor(pool, external)
		if len(ex) == 0 {
			continue
		}
		if pool == scanfleet.PoolBaremetal && !contains(caps, scanfleet.RequireRawSockets) {
			logger.Warn("no local baremetal worker: this process cannot open raw sockets (run as root or with CAP_NET_RAW)")
			continue
		}
		resp, err := localIdentity(ctx, srv, store, stateDir, sfhttp.EnrolRequest{
			Name: "local-" + string(pool), Pool: pool, Version: version(),
			Capabilities: caps, Executors: names, Types: types, Transport: transport, Concurrency: concurrency,
		})
		if err != nil {
			lw.Stop()
			return nil, fmt.Errorf("local %s worker: %w", pool, err)
		}
		client := worker.NewClient(srv.URL(), resp.Credential)
		wlog := logger.With(slog.String("pool", string(pool)))
		var src worker.Source = worker.HTTPSource{Client: client}
		if transport == "nats" {
			var closeSrc func()
			if src, closeSrc, err = worker.DialNATS(ctx, natsURL, resp.Credential, natsbus.ConsumerConfig{WorkerID: resp.WorkerID, Pool: string(pool)}, wlog, natsOpts...); err != nil {
				lw.Stop()
				return nil, fmt.Errorf("local %s worker: %w", pool, err)
			}
			lw.closers = append(lw.closers, closeSrc)
		}
		var data scanfleet.TaskData
		if pool != scanfleet.PoolExternal {
			data = store
		}
		w, err := worker.New(worker.Config{
			Client: client, WorkerID: resp.WorkerID, Source: src, Executors: ex,
			Concurrency: concurrency, Data: data, Lease: lease, Logger: wlog,
		})
		if err != nil {
			lw.Stop()
			return nil, err
		}
		lw.wg.Add(1)
		go func() {
			defer lw.wg.Done()
			if err := w.Run(ctx); err != nil {
				logger.Error("local worker", slog.String("pool", string(pool)), slog.Any("err", err))
			}
		}()
	}
	return lw, nil
}

// Stop drains the local workers and waits for them.
func (lw *localWorkers) Stop() {
	lw.cancel()
	lw.wg.Wait()
	for _, c := range lw.closers {
		c()
	}
	lw.closers = nil
}

func contains[T comparable](list []T, v T) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// localIdentity returns the identity of an in-process worker: the one kept
// in stateDir from an earlier start when the store still knows it with the
// same pool, transport and executors, else a new enrolment, which it keeps.
// So restarts do not leave a trail of offline workers.
func localIdentity(ctx context.Context, srv *sfhttp.Server, store scanfleet.Store, stateDir string, req sfhttp.EnrolRequest) (*sfhttp.EnrolResponse, error) {
	path := filepath.Join(stateDir, "local-workers", string(req.Pool)+".json")
	if b, err := os.ReadFile(path); err == nil {
		var kept sfhttp.EnrolResponse
		if json.Unmarshal(b, &kept) == nil && kept.Credential != "" {
			w, err := store.FindWorkerByHash(ctx, scanfleet.HashToken(kept.Credential))
			if err == nil && w.ID == kept.WorkerID && w.Pool == req.Pool && w.Transport == req.Transport && slices.Equal(w.Executors, req.Executors) {
				if err := srv.PrepareQueue(ctx, w); err != nil {
					return nil, err
				}
				return &kept, nil
			}
		}
	}
	_, join, err := srv.NewJoinToken(ctx, req.Name, string(req.Pool), "", 0)
	if err != nil {
		return nil, err
	}
	req.JoinToken = join
	resp, err := srv.Enrol(ctx, req)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(resp)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("keep the local worker's credential: %w", err)
	}
	return resp, nil
}
