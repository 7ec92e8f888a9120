package http

import (
	"context"
	"sync"
	"time"

	"github.com/scanfleet/scanfleet"
)

// Command is an instruction to one worker.
type Command = scanfleet.Command

// CommandBus delivers commands to workers over another transport (NATS).
type CommandBus interface {
	Command(ctx context.Context, workerID string, cmd Command) error
}

// hub holds the commands waiting for HTTP workers and wakes their long
// polls when a command or a task for their pool arrives. It is per server
// process; long polls also re-check the store every second, so a task
// routed by another replica is found too.
type hub struct {
	mu    sync.Mutex
	peers map[string]*peer            // worker id → what the hub keeps of it
	pools map[scanfleet.Pool][]string // pool → waiting worker ids
}

// peer is what the hub keeps of one worker.
type peer struct {
	commands []Command     // waiting for its next poll
	waiter   chan struct{} // closed to wake its open poll; nil when none is open
	// draining is set while the worker's process (drainSession) shuts
	// down, or for good once it is revoked (revokedSession): lease it
	// nothing.
	draining     bool
	drainSession string
	pulled       time.Time // when its cancel requests were last read
	beat         beat      // the heartbeat last stored; zero when none
}

// maxPeers bounds the workers the hub keeps only their last pull and
// heartbeat times for: past it those are forgotten (and the next poll of
// each reads and stores again).
const maxPeers = 100000

func newHub() *hub {
	return &hub{peers: map[string]*peer{}, pools: map[scanfleet.Pool][]string{}}
}

// peer returns what the hub keeps of a worker, new if nothing. h.mu is
// held.
func (h *hub) peer(workerID string) *peer {
	if p, ok := h.peers[workerID]; ok {
		return p
	}
	if len(h.peers) >= maxPeers {
		for id, p := range h.peers {
			if len(p.commands) == 0 && p.waiter == nil && !p.draining {
				delete(h.peers, id)
			}
		}
	}
	p := &peer{}
	h.peers[workerID] = p
	return p
}

// wakeLocked ends the wait of a worker's open poll. h.mu is held.
func (p *peer) wakeLocked() {
	if p.waiter != nil {
		close(p.waiter)
		p.waiter = nil
	}
}

// push queues a command for a worker and wakes its poll.
func (h *hub) push(workerID string, c Command) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.peer(workerID)
	p.commands = append(p.commands, c)
	p.wakeLocked()
}

// take returns and clears a worker's pending commands.
func (h *hub) take(workerID string) []Command {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.peers[workerID]
	if !ok {
		return nil
	}
	c := p.commands
	p.commands = nil
	return c
}

// wait registers a poll of worker in pool and returns a channel closed when
// something arrives for it, and a function to unregister.
func (h *hub) wait(workerID string, pool scanfleet.Pool) (<-chan struct{}, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := make(chan struct{})
	p := h.peer(workerID)
	p.wakeLocked() // an older poll of the worker ends
	p.waiter = ch
	h.pools[pool] = append(h.pools[pool], workerID)
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if p, ok := h.peers[workerID]; ok && p.waiter == ch {
			p.waiter = nil
		}
		ids := h.pools[pool]
		for i, id := range ids {
			if id == workerID {
				h.pools[pool] = append(ids[:i:i], ids[i+1:]...)
				break
			}
		}
	}
}

// replaced reports whether the poll that waits on ch was replaced by a
// newer poll of the same worker.
func (h *hub) replaced(workerID string, ch <-chan struct{}) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.peers[workerID]
	return ok && p.waiter != nil && (<-chan struct{})(p.waiter) != ch
}

// NotifyPool wakes the long polls of a pool's workers: tasks arrived.
func (h *hub) NotifyPool(pool scanfleet.Pool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range h.pools[pool] {
		if p, ok := h.peers[id]; ok {
			p.wakeLocked()
		}
	}
	h.pools[pool] = nil
}

// setDraining records whether a worker process (its session) is shutting
// down. A poll of a draining process that is still open, or arrives late,
// leases nothing, not even the tasks the process is handing back; a new
// process of the same worker (another session) clears the drain.
func (h *hub) setDraining(workerID string, hb scanfleet.Heartbeat) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch p := h.peer(workerID); {
	case p.draining && p.drainSession == revokedSession:
		// Revoked: nothing the worker says lifts it.
	case hb.Draining:
		p.draining, p.drainSession = true, hb.Session
	case p.draining && p.drainSession != hb.Session:
		p.draining, p.drainSession = false, ""
	}
}

// revokedSession marks a revoked worker's drain.
const revokedSession = "\x00revoked"

// revoke marks the worker as draining for good: a poll of it that was
// already past authentication leases nothing more.
func (h *hub) revoke(workerID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.peer(workerID)
	p.draining, p.drainSession = true, revokedSession
}

func (h *hub) isDraining(workerID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	p, ok := h.peers[workerID]
	return ok && p.draining
}

// wake ends the wait of a worker's open poll.
func (h *hub) wake(workerID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if p, ok := h.peers[workerID]; ok {
		p.wakeLocked()
	}
}

// pushOnce queues a command unless the same one is already waiting.
func (h *hub) pushOnce(workerID string, c Command) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.peer(workerID)
	for _, x := range p.commands {
		if x == c {
			return
		}
	}
	p.commands = append(p.commands, c)
	p.wakeLocked()
}

// duePull reports whether the worker's cancel requests were last read more
// than every ago, and if so notes that they are read now.
func (h *hub) duePull(workerID string, now time.Time, every time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.peer(workerID)
	if now.Sub(p.pulled) < every {
		return false
	}
	p.pulled = now
	return true
}

// beat is a stored heartbeat.
type beat struct {
	at       time.Time
	draining bool
}

// dueBeat reports whether a poll's heartbeat should be stored: the last
// one is more than every old, or the drain state changed. If so it notes
// it as stored now.
func (h *hub) dueBeat(workerID string, hb scanfleet.Heartbeat, now time.Time, every time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.peer(workerID)
	if !p.beat.at.IsZero() && now.Sub(p.beat.at) < every && p.beat.draining == hb.Draining {
		return false
	}
	p.beat = beat{at: now, draining: hb.Draining}
	return true
}

// storedBeat notes a heartbeat stored outside a poll.
func (h *hub) storedBeat(workerID string, hb scanfleet.Heartbeat, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.peer(workerID).beat = beat{at: now, draining: hb.Draining}
}
