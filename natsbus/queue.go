package natsbus

import (
	"context"
	"time"

	"github.com/scanfleet/scanfleet"
)

// authTimeout bounds the store lookup of one NATS connection's credential.
const authTimeout = 5 * time.Second

// Queue adapts a Bus to scanfleet's server: it dispatches stored tasks,
// sends commands, and prepares a NATS worker's consumers when it enrols.
type Queue struct {
	Bus *Bus
}

// Dispatch publishes requested tasks to their pool's queue; a dispatch is
// identified by task and attempt, so a second publish of it is dropped.
func (q Queue) Dispatch(ctx context.Context, tasks []*scanfleet.Task) error {
	ds := make([]Dispatch, len(tasks))
	for i, t := range tasks {
		ds[i] = Dispatch{TaskID: t.ID, Attempt: t.Attempts + 1, Pool: string(t.Pool), Site: t.Site}
	}
	return q.Bus.PublishBatch(ctx, ds)
}

// Command sends a command to a NATS worker.
func (q Queue) Command(ctx context.Context, workerID string, c scanfleet.Command) error {
	return q.Bus.Command(ctx, workerID, Command{Type: c.Type, TaskID: c.TaskID})
}

// OnEnrol makes the consumers a NATS worker pulls from, when it enrols and
// each time it starts again (a site's consumer is deleted after
// BusConfig.SiteConsumerIdle without a worker).
func (q Queue) OnEnrol(ctx context.Context, w *scanfleet.Worker) error {
	if w.Transport != "nats" {
		return nil
	}
	return q.Bus.Ensure(ctx, string(w.Pool), w.Site)
}

// Authenticator returns the embedded server's Authenticate function backed
// by the store: a worker connects as its id with its credential, and its
// pool and site scope what it may read.
func Authenticator(store scanfleet.WorkerStore) func(user, pass string) (string, string, bool) {
	return func(user, pass string) (string, string, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), authTimeout)
		defer cancel()
		w, err := store.FindWorkerByHash(ctx, scanfleet.HashToken(pass))
		if err != nil || w.ID != user {
			return "", "", false
		}
		return string(w.Pool), w.Site, true
	}
}
