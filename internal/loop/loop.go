// Package loop runs a service's periodic work: a tick at an interval and
// on demand, in the background, until stopped. The router, the scheduler
// and the launcher each run one.
package loop

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Loop calls Tick every Interval, and at once after Wake, from Start
// until Stop. A tick's error is logged, not fatal.
type Loop struct {
	name     string
	interval time.Duration
	tick     func(context.Context) error
	log      *slog.Logger
	wake     chan struct{}

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns a loop named name (for its log lines) that calls tick.
func New(name string, interval time.Duration, tick func(context.Context) error, log *slog.Logger) *Loop {
	return &Loop{name: name, interval: interval, tick: tick, log: log, wake: make(chan struct{}, 1)}
}

// Wake asks for a tick now; wakes before the tick starts are one.
func (l *Loop) Wake() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Start runs the loop in the background until Stop; the first tick is
// at once.
func (l *Loop) Start(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		return errors.New(l.name + " already started")
	}
	ctx, l.cancel = context.WithCancel(ctx)
	l.done = make(chan struct{})
	go l.run(ctx)
	return nil
}

// Stop ends the loop and waits for a tick under way to end. It reports
// whether the loop was running.
func (l *Loop) Stop() bool {
	l.mu.Lock()
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel == nil {
		return false
	}
	cancel()
	<-done
	return true
}

func (l *Loop) run(ctx context.Context) {
	defer close(l.done)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for {
		if err := l.tick(ctx); err != nil && ctx.Err() == nil {
			l.log.Error(l.name, slog.Any("err", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-l.wake:
		}
	}
}
