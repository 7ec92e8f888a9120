package worker

import (
	"context"
	"time"

	"github.com/scanfleet/scanfleet"
)

// Assignment is one task a Source handed to the worker.
type Assignment struct {
	TaskID string
	// Task is set when the source already claimed the task (the HTTP long
	// poll leases tasks as it returns them); else the worker claims it.
	Task *scanfleet.Task
	// Ack acknowledges the dispatch once the outcome is stored; nil when
	// the source needs none.
	Ack func(ctx context.Context) error
	// InProgress tells the queue the task is still being worked on; nil
	// when not needed.
	InProgress func() error
	// Release gives the dispatch back to the queue for another worker
	// (after a hand-back); nil when not needed.
	Release func() error

	stale bool // the store refused to claim it
}

// Source delivers tasks and commands to a worker: the transport.
type Source interface {
	// Next returns up to max assignments (none when max is 0) and any
	// commands, waiting up to wait for something to arrive.
	Next(ctx context.Context, max int, wait time.Duration, hb scanfleet.Heartbeat) ([]Assignment, []Command, error)
	// Name is "http" or "nats".
	Name() string
}

// HTTPSource is the HTTP long-poll transport: each poll leases tasks in
// the store as it returns them, and carries commands.
type HTTPSource struct{ Client *Client }

// Name implements Source.
func (HTTPSource) Name() string { return "http" }

// Next implements Source.
func (s HTTPSource) Next(ctx context.Context, max int, wait time.Duration, hb scanfleet.Heartbeat) ([]Assignment, []Command, error) {
	resp, err := s.Client.poll(ctx, max, wait, hb)
	if err != nil {
		return nil, nil, err
	}
	out := make([]Assignment, 0, len(resp.Tasks))
	for _, t := range resp.Tasks {
		out = append(out, Assignment{TaskID: t.ID, Task: t})
	}
	return out, resp.Commands, nil
}
