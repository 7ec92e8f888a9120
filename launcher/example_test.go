package launcher_test

import (
	"context"
	"log"
	"time"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/launcher"
)

// A server launches baremetal workers as local processes, at most four
// at once, each exiting after two idle minutes. Backlog, Workers and
// NewJoinToken come from the server's store.
func ExampleNew() {
	ctx := context.Background()
	procs, err := launcher.NewProcess(launcher.ProcessConfig{Dir: "./scanfleet-data/workers"})
	if err != nil {
		log.Fatal(err)
	}
	defer procs.Stop() // ends workers still running, after the launcher
	l, err := launcher.New(launcher.Config{
		Pools: map[scanfleet.Pool]launcher.PoolConfig{
			scanfleet.PoolBaremetal: {Backend: launcher.ProcessBackend, Max: 4, IdleTimeout: 2 * time.Minute},
		},
		Backends:  map[string]launcher.Backend{launcher.ProcessBackend: procs},
		ServerURL: "http://127.0.0.1:8080",
		Backlog: func(ctx context.Context) (map[scanfleet.Pool]int, error) {
			return map[scanfleet.Pool]int{}, nil // count created, queued and requested tasks per pool
		},
		Workers: func(ctx context.Context) ([]*scanfleet.Worker, error) {
			return nil, nil // store.ListWorkers(ctx, time.Now())
		},
		NewJoinToken: func(ctx context.Context, pool scanfleet.Pool, site string) (string, error) {
			return "", nil // a one-time token pinned to pool and site, valid for an hour
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := l.Start(ctx); err != nil {
		log.Fatal(err)
	}
	defer l.Stop()
}
