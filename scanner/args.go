package scanner

import (
	"context"
	"iter"
	"sync"
	"time"

	"github.com/scanfleet/scanfleet"
)

// Args are a task's arguments in the canonical form of
// scanfleet.TaskType.ValidateArgs: integers as int64, lists as []string,
// durations as Go duration strings. An executor validates the arguments it
// receives (they crossed a network as JSON) and reads them through Args.
type Args map[string]any

// ValidateArgs checks in's arguments against tt and returns them with the
// defaults filled in; the error is EINVALID and names the argument.
func ValidateArgs(tt *scanfleet.TaskType, in *scanfleet.TaskInput) (Args, error) {
	args := in.Args
	if args == nil {
		args = map[string]any{}
	}
	a, err := tt.ValidateArgs(args)
	if err != nil {
		return nil, err
	}
	return Args(a), nil
}

// Setup is the start of a scanner's Run: it validates in's arguments
// against tt, reads them into a config and builds in's scope matcher.
func Setup[C any](tt *scanfleet.TaskType, in *scanfleet.TaskInput, config func(Args) (C, error)) (C, *scanfleet.ScopeMatcher, error) {
	var zero C
	args, err := ValidateArgs(tt, in)
	if err != nil {
		return zero, nil, err
	}
	cfg, err := config(args)
	if err != nil {
		return zero, nil, err
	}
	m, err := in.Matcher()
	if err != nil {
		return zero, nil, err
	}
	return cfg, m, nil
}

// Int returns an integer argument, 0 when absent.
func (a Args) Int(name string) int64 {
	n, _ := a[name].(int64)
	return n
}

// Bool returns a boolean argument, false when absent.
func (a Args) Bool(name string) bool {
	b, _ := a[name].(bool)
	return b
}

// String returns a string argument, "" when absent.
func (a Args) String(name string) string {
	s, _ := a[name].(string)
	return s
}

// List returns a list argument, nil when absent.
func (a Args) List(name string) []string {
	l, _ := a[name].([]string)
	return l
}

// Duration returns a duration argument, 0 when absent.
func (a Args) Duration(name string) time.Duration {
	d, _ := time.ParseDuration(a.String(name))
	return d
}

// Each calls fn for every item, at most n at a time, and returns once
// every call it started has returned. Items are drawn as workers free up,
// so a sequence may be long (every address of a prefix). After ctx is
// cancelled it starts no more calls; fn is expected to return soon too.
func Each[T any](ctx context.Context, n int, items iter.Seq[T], fn func(T)) {
	ch := make(chan T)
	var wg sync.WaitGroup
	for range max(1, n) {
		wg.Go(func() {
			for it := range ch {
				fn(it)
			}
		})
	}
	for it := range items {
		if ctx.Err() != nil {
			break
		}
		select {
		case ch <- it:
		case <-ctx.Done():
		}
	}
	close(ch)
	wg.Wait()
}
