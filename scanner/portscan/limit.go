package portscan

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// hostLimits bounds the probes of each host: how many may be in flight at
// once and how often one may start. A host's state lives while a probe of
// it runs or its next start is still ahead, so memory follows the hosts
// in flight, not the plan.
type hostLimits struct {
	max      int           // probes in flight per host; 0 for no limit
	interval time.Duration // between the starts of two probes of one host; 0 for no limit

	mu    sync.Mutex
	hosts map[netip.Addr]*hostState
	sweep int // len(hosts) that triggers the next sweep
}

type hostState struct {
	slots chan struct{} // one token per probe in flight; nil without a limit
	refs  int           // probes holding or waiting for a slot
	next  time.Time     // earliest start of the next probe
}

func newHostLimits(max int, interval time.Duration) *hostLimits {
	return &hostLimits{max: max, interval: interval, hosts: map[netip.Addr]*hostState{}, sweep: 1024}
}

// acquire waits for a slot of host a; the caller must release it.
func (h *hostLimits) acquire(ctx context.Context, a netip.Addr) (*hostState, error) {
	h.mu.Lock()
	st := h.hosts[a]
	if st == nil {
		st = &hostState{}
		if h.max > 0 {
			st.slots = make(chan struct{}, h.max)
		}
		h.hosts[a] = st
	}
	st.refs++
	h.mu.Unlock()
	if st.slots != nil {
		select {
		case st.slots <- struct{}{}:
		case <-ctx.Done():
			h.unref(a, st)
			return nil, ctx.Err()
		}
	}
	return st, nil
}

// release gives back the slot acquire took.
func (h *hostLimits) release(a netip.Addr, st *hostState) {
	if st.slots != nil {
		<-st.slots
	}
	h.unref(a, st)
}

func (h *hostLimits) unref(a netip.Addr, st *hostState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st.refs--
	now := time.Now()
	if st.refs == 0 && !st.next.After(now) {
		delete(h.hosts, a)
	}
	if len(h.hosts) >= h.sweep {
		for a, st := range h.hosts {
			if st.refs == 0 && !st.next.After(now) {
				delete(h.hosts, a)
			}
		}
		h.sweep = max(1024, 2*len(h.hosts))
	}
}

// pace waits until the host may start another probe (a GCRA without
// burst: starts at least interval apart), holding a slot from acquire.
func (h *hostLimits) pace(ctx context.Context, st *hostState) error {
	if h.interval <= 0 {
		return nil
	}
	h.mu.Lock()
	now := time.Now()
	at := st.next
	if at.Before(now) {
		at = now
	}
	st.next = at.Add(h.interval)
	h.mu.Unlock()
	return sleep(ctx, at.Sub(now))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
