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
	mu       sync.Mutex
	commands map[string][]Command        // worker id → pending commands
	waiters  map[string]chan struct{}    // worker id → wake channel of its poll
	pools    map[scanfleet.Pool][]string // pool → waiting worker ids
	draining map[string]string           // worker id → session shutting down: lease it nothing
	pulled   map[string]time.Time        // worker id → when its cancel requests were last read
	beats    map[string]beat             // worker id → the heartbeat last stored
}

func newHub() *hub {
	return &hub{commands: map[string][]Command{}, waiters: map[string]chan struct{}{}, pools: map[scanfleet.Pool][]string{},
		draining: map[string]string{}, pulled: map[string]time.Time{}, beats: map[string]beat{}}
}

// push queues a command for a worker and wakes its poll.
func (h *hub) push(workerID string, c Command) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.commands[workerID] = append(h.commands[workerID], c)
	if ch, ok := h.waiters[workerID]; ok {
		close(ch)
		delete(h.waiters, workerID)
	}
}

// take returns and clears a worker's pending commands.
func (h *hub) take(workerID string) []Command {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.commands[workerID]
	delete(h.commands, workerID)
	return c
}

// wait registers a poll of worker in pool and returns a channel closed when
// something arrives for it, and a function to unregister.
func (h *hub) wait(workerID string, pool scanfleet.Pool) (<-chan struct{}, func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch := make(chan struct{})
	if old, ok := h.waiters[workerID]; ok {
		close(old)
	}
	h.waiters[workerID] = ch
	h.pools[pool] = append(h.pools[pool], workerID)
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.waiters[workerID] == ch {
			delete(h.waiters, workerID)
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
	cur, ok := h.waiters[workerID]
	return ok && (<-chan struct{})(cur) != ch
}

// NotifyPool wakes the long polls of a pool's workers: tasks arrived.
func (h *hub) NotifyPool(pool scanfleet.Pool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, id := range h.pools[pool] {
		if ch, ok := h.waiters[id]; ok {
			close(ch)
			delete(h.waiters, id)
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
	switch cur, ok := h.draining[workerID]; {
	case cur == revokedSession:
		// Revoked: nothing the worker says lifts it.
	case hb.Draining:
		h.draining[workerID] = hb.Session
	case ok && cur != hb.Session:
		delete(h.draining, workerID)
	}
}

// revokedSession marks a revoked worker in draining.
const revokedSession = "\x00revoked"

// revoke marks the worker as draining for good: a poll of it that was
// already past authentication leases nothing more.
func (h *hub) revoke(workerID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.draining[workerID] = revokedSession
}

func (h *hub) isDraining(workerID string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.draining[workerID]
	return ok
}

// wake ends the wait of a worker's open poll.
func (h *hub) wake(workerID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ch, ok := h.waiters[workerID]; ok {
		close(ch)
		delete(h.waiters, workerID)
	}
}

// pushOnce queues a command unless the same one is already waiting.
func (h *hub) pushOnce(workerID string, c Command) {
	h.mu.Lock()
	for _, x := range h.commands[workerID] {
		if x == c {
			h.mu.Unlock()
			return
		}
	}
	h.mu.Unlock()
	h.push(workerID, c)
}

// duePull reports whether the worker's cancel requests were last read more
// than every ago, and if so notes that they are read now.
func (h *hub) duePull(workerID string, now time.Time, every time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.Sub(h.pulled[workerID]) < every {
		return false
	}
	if len(h.pulled) > 100000 {
		clear(h.pulled)
	}
	h.pulled[workerID] = now
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
	last, ok := h.beats[workerID]
	if ok && now.Sub(last.at) < every && last.draining == hb.Draining {
		return false
	}
	if len(h.beats) > 100000 {
		clear(h.beats)
	}
	h.beats[workerID] = beat{at: now, draining: hb.Draining}
	return true
}

// storedBeat notes a heartbeat stored outside a poll.
func (h *hub) storedBeat(workerID string, hb scanfleet.Heartbeat, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.beats[workerID] = beat{at: now, draining: hb.Draining}
}
