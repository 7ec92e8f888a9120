package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/natsbus"
)

// NATSSource is the NATS JetStream transport: dispatches come from the
// worker's pool (and site) consumers, commands from its command subject.
// The worker claims each dispatched task through the API, and acks the
// dispatch only once the task's outcome is stored.
type NATSSource struct {
	consumer *natsbus.Consumer
	commands <-chan natsbus.Command
}

// NewNATSSource subscribes to the worker's commands; they are delivered
// until ctx ends.
func NewNATSSource(ctx context.Context, c *natsbus.Consumer) (*NATSSource, error) {
	cmds, err := c.Commands(ctx)
	if err != nil {
		return nil, err
	}
	return &NATSSource{consumer: c, commands: cmds}, nil
}

// Name implements Source.
func (*NATSSource) Name() string { return "nats" }

// Next implements Source. A command that arrives while it waits for
// dispatches ends the wait, so that cancel is carried out at once.
func (s *NATSSource) Next(ctx context.Context, n int, wait time.Duration, _ scanfleet.Heartbeat) ([]Assignment, []Command, error) {
	cmds := s.drain(nil)
	if len(cmds) > 0 {
		wait = 0
	}
	if n == 0 {
		if len(cmds) > 0 {
			return nil, cmds, nil
		}
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case c, ok := <-s.commands:
			if ok {
				cmds = s.drain(append(cmds, Command{Type: c.Type, TaskID: c.TaskID}))
			}
		case <-t.C:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		return nil, cmds, nil
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var got []Command
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case c, ok := <-s.commands:
			if ok {
				got = append(got, Command{Type: c.Type, TaskID: c.TaskID})
				cancel() // the fetch hands back what it took
			}
		case <-stop:
		}
	}()
	ds, err := s.consumer.Fetch(fctx, n, max(wait, time.Millisecond))
	close(stop)
	<-watched
	cmds = s.drain(append(cmds, got...))
	if err != nil {
		if ctx.Err() == nil && len(got) > 0 {
			return nil, cmds, nil // interrupted by a command
		}
		return nil, cmds, err
	}
	out := make([]Assignment, 0, len(ds))
	for _, d := range ds {
		out = append(out, Assignment{
			TaskID:     d.TaskID,
			Ack:        d.Ack,
			InProgress: d.InProgress,
			Release:    func() error { return d.Nak(0) },
		})
	}
	return out, cmds, nil
}

// drain appends the commands that are waiting.
func (s *NATSSource) drain(cmds []Command) []Command {
	for {
		select {
		case c, ok := <-s.commands:
			if !ok {
				return cmds
			}
			cmds = append(cmds, Command{Type: c.Type, TaskID: c.TaskID})
		default:
			return cmds
		}
	}
}

// DialNATS connects to NATS as the worker (cc.WorkerID, with its
// credential) and returns its source, and a function that closes the
// connection. cc names the worker's pool and site, and the stream and
// subject prefix when they are not the defaults.
func DialNATS(ctx context.Context, url, credential string, cc natsbus.ConsumerConfig, logger *slog.Logger, opts ...nats.Option) (*NATSSource, func(), error) {
	nc, err := natsbus.Connect(url, cc.WorkerID, credential, logger, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	cc.Logger = logger
	c, err := natsbus.NewConsumer(ctx, nc, cc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	src, err := NewNATSSource(ctx, c)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return src, nc.Close, nil
}
