package natsbus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ConsumerConfig configures the worker side of the transport.
type ConsumerConfig struct {
	// Stream is the name of the dispatch stream. Default DefaultStream.
	Stream string
	// SubjectPrefix is the first token(s) of task and command subjects.
	// Default DefaultSubjectPrefix.
	SubjectPrefix string
	// Pool is the worker's pool. Required.
	Pool string
	// Site is the worker's site; "" takes only any-site dispatches.
	// Default "".
	Site string
	// WorkerID is the worker's id: its NATS user name on the embedded
	// server and the last token of its command subject. Required.
	WorkerID string
	// Logger receives the consumer's log lines. Default slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns a copy of c with every zero field set to its default.
func (c ConsumerConfig) WithDefaults() ConsumerConfig {
	c.Stream = cmp.Or(c.Stream, DefaultStream)
	c.SubjectPrefix = cmp.Or(c.SubjectPrefix, DefaultSubjectPrefix)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c ConsumerConfig) validate() error {
	if err := (names{c.Stream, c.SubjectPrefix}).validate(); err != nil {
		return err
	}
	if err := validatePool("Pool", c.Pool); err != nil {
		return err
	}
	if err := validateSite("Site", c.Site); err != nil {
		return err
	}
	return validateWorkerID("WorkerID", c.WorkerID)
}

// Consumer is a worker's end of the transport: it pulls the dispatches of
// its pool and site and receives its commands. It is safe for concurrent
// use and starts no goroutine except the one Commands documents.
type Consumer struct {
	nc       *nats.Conn
	cfg      ConsumerConfig
	n        names
	subjects []string // pull-request subjects, own site's first
	ackWait  time.Duration
	turn     atomic.Uint32 // rotates which consumer is asked first
}

// NewConsumer binds to the durable consumers of cfg.Pool and cfg.Site. They
// must exist (Bus.Provision); otherwise the error wraps ErrNotProvisioned.
func NewConsumer(ctx context.Context, nc *nats.Conn, cfg ConsumerConfig) (*Consumer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("consumer config: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	c := &Consumer{nc: nc, cfg: cfg, n: names{cfg.Stream, cfg.SubjectPrefix}}
	for _, name := range consumersFor(cfg.Pool, cfg.Site) {
		cons, err := js.Consumer(ctx, cfg.Stream, name)
		if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("consumer %s on stream %s: %w", name, cfg.Stream, ErrNotProvisioned)
		}
		if err != nil {
			return nil, fmt.Errorf("consumer %s on stream %s: %w", name, cfg.Stream, err)
		}
		aw := cons.CachedInfo().Config.AckWait
		if c.ackWait == 0 || aw < c.ackWait {
			c.ackWait = aw
		}
		c.subjects = append(c.subjects, "$JS.API.CONSUMER.MSG.NEXT."+cfg.Stream+"."+name)
	}
	return c, nil
}

// AckWait is the consumers' ack wait (the shorter of the two): a worker
// running a task calls InProgress well within it, e.g. every AckWait/3.
func (c *Consumer) AckWait() time.Duration { return c.ackWait }

// Fetch returns up to max dispatches, waiting up to wait for the first one
// when none is ready. It returns early with what is ready: it never waits
// to fill the batch. A site worker takes from its site's queue and the
// pool's any-site queue, alternating which is asked first so neither
// starves. An empty result with a nil error means nothing arrived in time.
// When ctx ends, dispatches already taken are handed back (Nak) and the
// error is ctx.Err().
func (c *Consumer) Fetch(ctx context.Context, max int, wait time.Duration) ([]*Delivery, error) {
	if max < 1 {
		return nil, fmt.Errorf("fetch: max %d is less than 1", max)
	}
	// A pull request published while disconnected would sit in the
	// reconnect buffer and be replayed later, possibly after this call has
	// given up on it, delivering to nobody until the ack wait runs out. So
	// wait for the connection instead, within the caller's wait.
	if !c.waitConnected(ctx, wait) {
		if c.nc.IsClosed() {
			return nil, fmt.Errorf("fetch: %w", nats.ErrConnectionClosed)
		}
		return nil, ctx.Err()
	}
	order := c.order()
	out, err := c.takeReady(ctx, order, max, nil)
	if err != nil || len(out) > 0 || wait <= 0 {
		return c.finish(ctx, out, err)
	}
	// Nothing ready: one waiting request of one message per queue; the
	// first delivery ends the wait.
	reqs := make([]pullRequest, len(order))
	for i, subj := range order {
		reqs[i] = pullRequest{subject: subj, Batch: 1, Expires: wait}
		if wait >= 10*time.Second {
			reqs[i].Heartbeat = 5 * time.Second
		}
	}
	out, err = c.pull(ctx, reqs, true)
	if err != nil {
		return c.finish(ctx, out, err)
	}
	if len(out) > max { // both queues delivered and max is 1
		for _, d := range out[max:] {
			c.handBack(d)
		}
		out = out[:max]
	}
	if len(out) > 0 && len(out) < max {
		out, err = c.takeReady(ctx, order, max, out)
	}
	return c.finish(ctx, out, err)
}

// waitConnected reports whether the connection is up, waiting up to d for
// a reconnect.
func (c *Consumer) waitConnected(ctx context.Context, d time.Duration) bool {
	if c.nc.IsConnected() {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if c.nc.IsConnected() {
				return true
			}
			if c.nc.IsClosed() {
				return false
			}
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

func (c *Consumer) order() []string {
	if len(c.subjects) == 1 {
		return c.subjects
	}
	if c.turn.Add(1)%2 == 0 {
		return []string{c.subjects[1], c.subjects[0]}
	}
	return c.subjects
}

// takeReady asks each queue in turn for what is ready, without waiting,
// until out holds max deliveries.
func (c *Consumer) takeReady(ctx context.Context, order []string, max int, out []*Delivery) ([]*Delivery, error) {
	for _, subj := range order {
		if len(out) >= max {
			break
		}
		ds, err := c.pull(ctx, []pullRequest{{subject: subj, Batch: max - len(out), NoWait: true}}, false)
		out = append(out, ds...)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// finish applies Fetch's error rule: deliveries already taken are returned
// when the error is not the caller's; on ctx's end they are handed back.
func (c *Consumer) finish(ctx context.Context, out []*Delivery, err error) ([]*Delivery, error) {
	if ctx.Err() != nil {
		for _, d := range out {
			c.handBack(d)
		}
		return nil, ctx.Err()
	}
	if err != nil && len(out) > 0 {
		c.cfg.Logger.Warn("natsbus: fetch ended early", "worker", c.cfg.WorkerID, "err", err)
		return out, nil
	}
	return out, err
}

func (c *Consumer) handBack(d *Delivery) {
	if err := d.Nak(0); err != nil {
		c.cfg.Logger.Warn("natsbus: hand back dispatch", "task", d.TaskID, "err", err)
	}
}

// pullRequest is JetStream's pull request ($JS.API.CONSUMER.MSG.NEXT).
type pullRequest struct {
	subject   string
	Batch     int           `json:"batch"`
	Expires   time.Duration `json:"expires,omitempty"`
	NoWait    bool          `json:"no_wait,omitempty"`
	Heartbeat time.Duration `json:"idle_heartbeat,omitempty"`
}

// pull sends reqs, each with an inbox of its own feeding one channel, and
// collects deliveries until every request is done (batch filled, expired,
// or no messages), or, with firstOnly, until the first delivery. Requests
// still open then are withdrawn by draining their subscriptions: the server
// stops serving a request once its reply subject has no interest, and the
// flush after the drain collects what was already on the way, so nothing
// taken is dropped.
//
// This speaks the pull protocol directly instead of using jetstream.Fetch
// because Fetch cannot be withdrawn without losing what is in flight, and
// a site worker waits on two queues at once. Deliveries carry the stream
// subject, not the inbox, so a message is matched to its request by
// subscription.
func (c *Consumer) pull(ctx context.Context, reqs []pullRequest, firstOnly bool) ([]*Delivery, error) {
	capacity := 16
	var longest time.Duration
	for _, r := range reqs {
		capacity += r.Batch + 2
		longest = max(longest, r.Expires)
	}
	ch := make(chan *nats.Msg, capacity)
	subs := make([]*nats.Subscription, 0, len(reqs))
	left := make([]int, len(reqs))
	nopen := 0
	var sendErr error
	for i, r := range reqs {
		if !c.nc.IsConnected() { // see Fetch: never buffer a pull request
			break
		}
		inbox := c.nc.NewInbox()
		sub, err := c.nc.ChanSubscribe(inbox, ch)
		if err != nil {
			sendErr = err
			break
		}
		subs = append(subs, sub)
		body, _ := json.Marshal(r)
		if err := c.nc.PublishRequest(r.subject, inbox, body); err != nil {
			_ = sub.Unsubscribe()
			subs = subs[:len(subs)-1] // subs[i] stays reqs[i]'s
			sendErr = err
			break
		}
		left[i] = r.Batch
		nopen++
	}
	if nopen == 0 {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
		if sendErr == nil {
			return nil, nil // disconnected: nothing to take now
		}
		return nil, fmt.Errorf("pull: %w", sendErr)
	}
	index := func(sub *nats.Subscription) int {
		for i, s := range subs {
			if s == sub {
				return i
			}
		}
		return -1
	}

	var out []*Delivery
	var firstErr error
	// The server answers every request by its expiry; the grace covers a
	// request lost with its server (restart), as do heartbeats when set.
	deadline := time.NewTimer(longest + time.Second)
	defer deadline.Stop()
	// Heartbeats, when asked for, show the request is still alive; their
	// absence for two periods means the server lost it.
	var hbC <-chan time.Time
	var hb time.Duration
	var hbTimer *time.Timer
	if reqs[0].Heartbeat > 0 {
		hb = 2 * reqs[0].Heartbeat
		hbTimer = time.NewTimer(hb)
		defer hbTimer.Stop()
		hbC = hbTimer.C
	}

	// A request dies with the connection: stop at once on a disconnect
	// rather than at the expiry.
	down := c.nc.StatusChanged(nats.DISCONNECTED, nats.RECONNECTING, nats.CLOSED)
	defer c.nc.RemoveStatusListener(down)
	// Lost between the publish and the listener?
	lost := !c.nc.IsConnected()

loop:
	for nopen > 0 && !lost {
		select {
		case m := <-ch:
			if hbTimer != nil {
				hbTimer.Reset(hb)
			}
			i := index(m.Sub)
			if i < 0 || left[i] <= 0 {
				if d := c.delivery(m); d != nil { // late; keep it
					out = append(out, d)
				}
				continue
			}
			if status := m.Header.Get("Status"); status != "" && len(m.Data) == 0 {
				switch status {
				case "100": // idle heartbeat
					continue
				case "404", "408": // no messages; expired
				case "409":
					// The request ended; only a broken setup is an error.
					switch desc := m.Header.Get("Description"); desc {
					case "Leadership Change", "Server Shutdown", "Batch Completed":
					default:
						firstErr = cmp.Or(firstErr, fmt.Errorf("pull: %s", desc))
					}
				default:
					firstErr = cmp.Or(firstErr, fmt.Errorf("pull: status %s %s", status, m.Header.Get("Description")))
				}
				left[i] = 0
				nopen--
				_ = subs[i].Unsubscribe()
				continue
			}
			if d := c.delivery(m); d != nil {
				out = append(out, d)
			}
			if left[i]--; left[i] == 0 {
				nopen--
				_ = subs[i].Unsubscribe()
			}
			if firstOnly && len(out) > 0 {
				break loop
			}
		case <-deadline.C:
			break loop
		case <-hbC:
			break loop // the server lost our request
		case <-down:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	if nopen == 0 {
		return out, firstErr
	}
	// Withdraw the open requests without dropping what is on the wire. On a
	// lost connection there is no wire: the requests died with it.
	connected := c.nc.IsConnected()
	drained := false
	for i, sub := range subs {
		if left[i] > 0 {
			if connected && sub.Drain() == nil {
				drained = true
			} else {
				_ = sub.Unsubscribe()
			}
		}
	}
	if drained {
		_ = c.nc.FlushTimeout(2 * time.Second)
	}
	for {
		select {
		case m := <-ch:
			if d := c.delivery(m); d != nil {
				out = append(out, d)
			}
		default:
			return out, firstErr
		}
	}
}

// delivery decodes a dispatch message. One that cannot be a dispatch is
// terminated (never redelivered) and logged: no worker could ever run it.
func (c *Consumer) delivery(m *nats.Msg) *Delivery {
	if !strings.HasPrefix(m.Reply, "$JS.ACK.") {
		return nil
	}
	d := &Delivery{nc: c.nc, reply: m.Reply}
	d.NumDelivered = ackDelivered(m.Reply)
	if err := d.decode(m); err != nil {
		c.cfg.Logger.Error("natsbus: dropping malformed dispatch", "subject", m.Subject, "err", err)
		_ = c.nc.Publish(m.Reply, []byte("+TERM"))
		return nil
	}
	return d
}

// ackDelivered reads the delivery count from an ack subject, v1
// $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> or v2
// $JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>....
func ackDelivered(reply string) uint64 {
	toks := strings.Split(reply, ".")
	var tok string
	switch {
	case len(toks) == 9:
		tok = toks[4]
	case len(toks) >= 11:
		tok = toks[6]
	default:
		return 0
	}
	n, _ := strconv.ParseUint(tok, 10, 64)
	return n
}

// Delivery is one dispatch handed to this worker. The worker must Ack it
// once the server has stored the task's outcome, call InProgress while the
// task runs, or Nak it to hand it back.
type Delivery struct {
	TaskID  string
	Attempt int
	// Pool and Site are the dispatch's, from its subject (Site "" for an
	// any-site dispatch).
	Pool string
	Site string
	// NumDelivered counts deliveries of this message, this one included.
	NumDelivered uint64

	nc    *nats.Conn
	reply string
}

func (d *Delivery) decode(m *nats.Msg) error {
	var p payload
	if err := json.Unmarshal(m.Data, &p); err != nil {
		return err
	}
	if p.TaskID == "" || p.Attempt < 1 {
		return fmt.Errorf("dispatch %q lacks task_id or attempt", m.Data)
	}
	d.TaskID, d.Attempt = p.TaskID, p.Attempt
	// subject: <prefix...>.tasks.<pool>.<site>
	toks := strings.Split(m.Subject, ".")
	if len(toks) >= 3 {
		d.Pool = toks[len(toks)-2]
		if s := toks[len(toks)-1]; s != AnySite {
			d.Site = s
		}
	}
	return nil
}

// Ack removes the dispatch from the queue and waits for JetStream to
// confirm it. Success means the server received the ack; if the ack wait had
// already run out, the dispatch may have gone to another worker too, which
// the store's lease settles. Without a ctx deadline it waits up to 5 s.
func (d *Delivery) Ack(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	if _, err := d.nc.RequestWithContext(ctx, d.reply, []byte("+ACK")); err != nil {
		return fmt.Errorf("ack %s/%d: %w", d.TaskID, d.Attempt, err)
	}
	return nil
}

// AckAsync sends the ack without waiting for the server's confirmation:
// several times cheaper than Ack under load. An ack lost on the way (the
// connection dropped) means a redelivery after the ack wait, which the
// store's lease settles as for any redelivery.
func (d *Delivery) AckAsync() error {
	if err := d.nc.Publish(d.reply, []byte("+ACK")); err != nil {
		return fmt.Errorf("ack %s/%d: %w", d.TaskID, d.Attempt, err)
	}
	return nil
}

// InProgress restarts the dispatch's ack wait: call it while the task runs.
func (d *Delivery) InProgress() error {
	if err := d.nc.Publish(d.reply, []byte("+WPI")); err != nil {
		return fmt.Errorf("in progress %s/%d: %w", d.TaskID, d.Attempt, err)
	}
	return nil
}

// Nak hands the dispatch back to be redelivered after delay (at once when
// delay is 0), to this or another worker of the pool.
func (d *Delivery) Nak(delay time.Duration) error {
	body := []byte("-NAK")
	if delay > 0 {
		body = fmt.Appendf(nil, `-NAK {"delay":%d}`, delay.Nanoseconds())
	}
	if err := d.nc.Publish(d.reply, body); err != nil {
		return fmt.Errorf("nak %s/%d: %w", d.TaskID, d.Attempt, err)
	}
	return nil
}

// Commands subscribes to this worker's command subject. Each command is
// confirmed to the sender once it is queued on the channel (buffered, 64);
// a command that is not valid JSON is refused to the sender. The channel is
// closed, and the subscription and its goroutine end, when ctx ends.
func (c *Consumer) Commands(ctx context.Context) (<-chan Command, error) {
	ch := make(chan Command, 64)
	var mu sync.Mutex
	closed := false
	reply := func(m *nats.Msg, r commandReply) {
		if m.Reply == "" {
			return
		}
		data, _ := json.Marshal(r)
		_ = m.Respond(data)
	}
	sub, err := c.nc.Subscribe(c.n.cmdSubject(c.cfg.WorkerID), func(m *nats.Msg) {
		var cmd Command
		if err := json.Unmarshal(m.Data, &cmd); err != nil || cmd.Type == "" {
			c.cfg.Logger.Warn("natsbus: malformed command", "worker", c.cfg.WorkerID, "data", string(m.Data))
			reply(m, commandReply{Error: "malformed command"})
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return
		}
		select {
		case ch <- cmd:
			reply(m, commandReply{})
		case <-ctx.Done():
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe commands: %w", err)
	}
	// Make sure the server has the subscription before the caller relies on
	// it (e.g. announces itself as ready).
	if err := c.nc.FlushTimeout(5 * time.Second); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe commands: %w", err)
	}
	go func() {
		<-ctx.Done()
		_ = sub.Unsubscribe()
		mu.Lock()
		closed = true
		close(ch)
		mu.Unlock()
	}()
	return ch, nil
}
