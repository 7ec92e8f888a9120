// Package noop is the executor of the noop task type: it sleeps, then emits
// synthetic host records. Tests and benchmarks use it to drive the whole
// task pipeline without touching a network.
package noop

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/scanfleet/scanfleet"
)

// Executor runs noop tasks.
type Executor struct{}

var _ scanfleet.Executor = Executor{}

// TaskType returns scanfleet.NoopTaskType().
func (Executor) TaskType() *scanfleet.TaskType { return scanfleet.NoopTaskType() }

// Run sleeps for args.sleep, then emits args.records host records with
// addresses 10.0.0.0 upwards (the same addresses on every attempt, so a
// retried task upserts, never duplicates).
func (Executor) Run(ctx context.Context, in *scanfleet.TaskInput, env scanfleet.ExecEnv) error {
	sleep, err := time.ParseDuration(fmt.Sprint(in.Args["sleep"]))
	if err != nil {
		sleep = 0
	}
	n, _ := toInt(in.Args["records"])
	env.Log(fmt.Sprintf("noop: sleeping %s, then emitting %d records", sleep, n))
	if sleep > 0 {
		t := time.NewTimer(sleep)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		}
	}
	base := netip.MustParseAddr("10.0.0.0").As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for i := int64(0); i < n; i++ {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		v := start + uint32(i%(1<<24))
		ip := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
		if err := env.Emit(ctx, map[string]any{"kind": "host", "ip": ip.String(), "os": "noop"}); err != nil {
			return err
		}
		if i%1000 == 999 {
			env.Progress(i+1, n)
		}
	}
	env.Progress(n, n)
	env.Log(fmt.Sprintf("noop: emitted %d records", n))
	return nil
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case float64:
		return int64(x), true
	case int64:
		return x, true
	case int:
		return int64(x), true
	case interface{ Int64() (int64, error) }:
		n, err := x.Int64()
		return n, err == nil
	}
	return 0, false
}
