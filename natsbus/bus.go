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
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Dispatch tells a worker of Pool (and Site, when set) to run one attempt of
// a task. The store holds everything else about the task.
type Dispatch struct {
	TaskID  string
	Attempt int
	Pool    string
	// Site pins the dispatch to workers of one site; "" lets any worker of
	// the pool take it.
	Site string
}

func (d Dispatch) validate() error {
	if d.TaskID == "" {
		return errors.New("TaskID: is empty")
	}
	if len(d.TaskID) > 128 {
		return fmt.Errorf("TaskID: %q is longer than 128 characters", d.TaskID)
	}
	if d.Attempt < 1 {
		return fmt.Errorf("Attempt: %d is less than 1", d.Attempt)
	}
	if err := validatePool("Pool", d.Pool); err != nil {
		return err
	}
	return validateSite("Site", d.Site)
}

// msgID is the JetStream de-duplication id: a second publish of the same
// attempt within the duplicate window is dropped by the server.
func (d Dispatch) msgID() string { return d.TaskID + "/" + strconv.Itoa(d.Attempt) }

// payload is the wire form of a dispatch.
type payload struct {
	TaskID  string `json:"task_id"`
	Attempt int    `json:"attempt"`
}

// Command is a message from the server to one worker, sent over core NATS
// (at most once, not stored): a worker that is offline misses it and learns
// the outcome from the store when it next renews its lease.
type Command struct {
	Type   string `json:"type"`
	TaskID string `json:"task_id,omitempty"`
}

// CommandCancel asks a worker to stop running TaskID.
const CommandCancel = "cancel"

// BusConfig configures the server side of the transport.
type BusConfig struct {
	// Stream is the name of the dispatch stream. Default DefaultStream.
	Stream string
	// SubjectPrefix is the first token(s) of task and command subjects.
	// Default DefaultSubjectPrefix.
	SubjectPrefix string
	// AckWait is how long a worker may hold a dispatch without Ack or
	// InProgress before it is redelivered. Default DefaultAckWait (60 s).
	AckWait time.Duration
	// Replicas is the stream's replica count in a NATS cluster. Default 1.
	Replicas int
	// MemoryStorage keeps the stream in memory instead of files (tests).
	// Default false.
	MemoryStorage bool
	// DuplicateWindow is how long JetStream remembers a dispatch's
	// Nats-Msg-Id to drop a second publish of it. Default 2 min.
	DuplicateWindow time.Duration
	// MaxAckPending caps the dispatches one consumer (a pool's any-site
	// queue, or one site's) has handed out and not yet had acked.
	// Default 10,000.
	MaxAckPending int
	// Pools are the pools whose any-site consumers are created by NewBus.
	// Default DefaultPools.
	Pools []string
	// SiteConsumerIdle is how long a site's consumer may go without a
	// worker pulling from it before the NATS server deletes it, so that
	// sites that are gone leave nothing behind. Dispatches for the site
	// stay in the stream meanwhile; the consumer is made again when a
	// worker of the site starts (Ensure) or a dispatch for it is
	// published. Pools' any-site consumers are never deleted.
	// Default 72 h.
	SiteConsumerIdle time.Duration
	// CommandTimeout bounds Command when its context has no deadline.
	// Default 2 s.
	CommandTimeout time.Duration
	// PublishTimeout fails an asynchronous publish whose acknowledgement
	// has not arrived (e.g. lost in a reconnect). Default 30 s.
	PublishTimeout time.Duration
	// Logger receives the bus's log lines. Default slog.Default().
	Logger *slog.Logger
}

// WithDefaults returns a copy of c with every zero field set to its default.
func (c BusConfig) WithDefaults() BusConfig {
	c.Stream = cmp.Or(c.Stream, DefaultStream)
	c.SubjectPrefix = cmp.Or(c.SubjectPrefix, DefaultSubjectPrefix)
	c.AckWait = cmp.Or(c.AckWait, DefaultAckWait)
	c.Replicas = cmp.Or(c.Replicas, 1)
	c.DuplicateWindow = cmp.Or(c.DuplicateWindow, 2*time.Minute)
	c.MaxAckPending = cmp.Or(c.MaxAckPending, 10_000)
	c.SiteConsumerIdle = cmp.Or(c.SiteConsumerIdle, 72*time.Hour)
	if len(c.Pools) == 0 {
		c.Pools = DefaultPools
	}
	c.CommandTimeout = cmp.Or(c.CommandTimeout, 2*time.Second)
	c.PublishTimeout = cmp.Or(c.PublishTimeout, 30*time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c BusConfig) validate() error {
	if err := (names{c.Stream, c.SubjectPrefix}).validate(); err != nil {
		return err
	}
	if c.AckWait < 100*time.Millisecond {
		return fmt.Errorf("AckWait: %v is less than 100ms", c.AckWait)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		return fmt.Errorf("Replicas: %d is not between 1 and 5", c.Replicas)
	}
	if c.DuplicateWindow < time.Second {
		return fmt.Errorf("DuplicateWindow: %v is less than 1s", c.DuplicateWindow)
	}
	if c.MaxAckPending < 1 {
		return fmt.Errorf("MaxAckPending: %d is less than 1", c.MaxAckPending)
	}
	if c.SiteConsumerIdle < time.Second {
		return fmt.Errorf("SiteConsumerIdle: %v is less than 1s", c.SiteConsumerIdle)
	}
	for _, p := range c.Pools {
		if err := validatePool("Pools", p); err != nil {
			return err
		}
	}
	if c.CommandTimeout <= 0 {
		return fmt.Errorf("CommandTimeout: %v is not positive", c.CommandTimeout)
	}
	if c.PublishTimeout <= 0 {
		return fmt.Errorf("PublishTimeout: %v is not positive", c.PublishTimeout)
	}
	return nil
}

// Bus is the server side of the transport: it owns the stream and the
// consumers, publishes dispatches and sends commands. It is safe for
// concurrent use. It starts no goroutine of its own; closing its connection
// releases everything.
type Bus struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	cfg    BusConfig
	n      names

	provisioned sync.Map // consumer name → when it was last made (time.Time)
}

// publishWindow bounds one PublishBatch call's publishes awaiting their ack.
const publishWindow = 2048

// NewBus creates or updates the dispatch stream and the any-site consumer of
// every configured pool. nc must have the right to manage streams and
// consumers (ServerUser on the embedded server).
func NewBus(ctx context.Context, nc *nats.Conn, cfg BusConfig) (*Bus, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("bus config: %w", err)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(4*publishWindow),
		jetstream.WithPublishAsyncTimeout(cfg.PublishTimeout),
	)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	b := &Bus{nc: nc, js: js, cfg: cfg, n: names{cfg.Stream, cfg.SubjectPrefix}}
	storage := jetstream.FileStorage
	if cfg.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	b.stream, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        cfg.Stream,
		Description: "scanfleet task dispatches (work queue)",
		Subjects:    []string{b.n.tasksWildcard()},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     storage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.DuplicateWindow,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", cfg.Stream, err)
	}
	for _, p := range cfg.Pools {
		if err := b.Provision(ctx, p, ""); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Provision creates (or updates) the durable consumers a worker of pool and
// site ("" for none) pulls from: the site's own consumer, and the pool's
// any-site consumer. Publish calls it for each queue it publishes to; it
// asks the NATS server only for a site consumer it has not made within
// half of SiteConsumerIdle, since the server may have deleted it since.
// Idempotent.
func (b *Bus) Provision(ctx context.Context, pool, site string) error {
	return b.provision(ctx, pool, site, false)
}

// Ensure is Provision asking the NATS server in every case: call it when a
// worker joins or starts again, before the worker calls NewConsumer, as its
// site's consumer may have been deleted while no worker pulled from it.
func (b *Bus) Ensure(ctx context.Context, pool, site string) error {
	return b.provision(ctx, pool, site, true)
}

func (b *Bus) provision(ctx context.Context, pool, site string, force bool) error {
	if err := validatePool("pool", pool); err != nil {
		return err
	}
	if err := validateSite("site", site); err != nil {
		return err
	}
	sites := []string{""}
	if site != "" {
		sites = append(sites, site)
	}
	for _, s := range sites {
		name := consumerName(pool, s)
		if at, ok := b.provisioned.Load(name); ok && !force && (s == "" || time.Since(at.(time.Time)) < b.cfg.SiteConsumerIdle/2) {
			continue
		}
		var idle time.Duration
		if s != "" {
			idle = b.cfg.SiteConsumerIdle
		}
		desc := "scanfleet workers of pool " + pool + ", any site"
		if s != "" {
			desc = "scanfleet workers of pool " + pool + ", site " + s
		}
		_, err := b.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:       name,
			Description:   desc,
			FilterSubject: b.n.taskSubject(pool, s),
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       b.cfg.AckWait,
			MaxDeliver:    -1, // the server's lease reaper decides failures
			MaxAckPending: b.cfg.MaxAckPending,
			DeliverPolicy: jetstream.DeliverAllPolicy,
			// A site's consumer goes once no worker of the site pulls;
			// a pool's any-site consumer stays (0).
			InactiveThreshold: idle,
		})
		if err != nil {
			return fmt.Errorf("create consumer %s: %w", name, err)
		}
		b.provisioned.Store(name, time.Now())
	}
	return nil
}

func (b *Bus) message(d Dispatch) (*nats.Msg, error) {
	if err := d.validate(); err != nil {
		return nil, fmt.Errorf("dispatch: %w", err)
	}
	data, err := json.Marshal(payload{TaskID: d.TaskID, Attempt: d.Attempt})
	if err != nil {
		return nil, fmt.Errorf("dispatch %s: %w", d.TaskID, err)
	}
	return &nats.Msg{
		Subject: b.n.taskSubject(d.Pool, d.Site),
		Header:  nats.Header{jetstream.MsgIDHeader: []string{d.msgID()}},
		Data:    data,
	}, nil
}

// Publish stores one dispatch and returns once JetStream has acknowledged
// it. Publishing the same task and attempt again within the duplicate window
// succeeds without a second message.
func (b *Bus) Publish(ctx context.Context, d Dispatch) error {
	m, err := b.message(d)
	if err != nil {
		return err
	}
	if err := b.Provision(ctx, d.Pool, d.Site); err != nil {
		return err
	}
	if _, err := b.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish dispatch %s: %w", d.msgID(), err)
	}
	return nil
}

// PublishBatch stores many dispatches, publishing asynchronously and
// waiting for every acknowledgement. On error some dispatches may be stored
// and others not; publishing the whole batch again is safe (duplicates are
// dropped). The error names each dispatch that failed.
func (b *Bus) PublishBatch(ctx context.Context, ds []Dispatch) error {
	msgs := make([]*nats.Msg, len(ds))
	type queue struct{ pool, site string }
	queues := map[queue]bool{}
	for i, d := range ds {
		m, err := b.message(d)
		if err != nil {
			return err
		}
		if q := (queue{d.Pool, d.Site}); !queues[q] {
			if err := b.Provision(ctx, d.Pool, d.Site); err != nil {
				return err
			}
			queues[q] = true
		}
		msgs[i] = m
	}
	futs := make([]jetstream.PubAckFuture, len(msgs))
	var errs []error
	wait := func(i int) error {
		f := futs[i]
		if f == nil {
			return nil
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			errs = append(errs, fmt.Errorf("publish dispatch %s: %w", ds[i].msgID(), err))
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	for i, m := range msgs {
		if i >= publishWindow {
			if err := wait(i - publishWindow); err != nil {
				return err
			}
		}
		f, err := b.js.PublishMsgAsync(m)
		if err != nil {
			errs = append(errs, fmt.Errorf("publish dispatch %s: %w", ds[i].msgID(), err))
			continue
		}
		futs[i] = f
	}
	for i := max(0, len(msgs)-publishWindow); i < len(msgs); i++ {
		if err := wait(i); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// Command sends cmd to one worker and returns once the worker's
// subscription has taken it, or ErrWorkerUnreachable when the worker is not
// listening. Commands are not stored: see Command.
func (b *Bus) Command(ctx context.Context, workerID string, cmd Command) error {
	if err := validateWorkerID("workerID", workerID); err != nil {
		return err
	}
	if cmd.Type == "" {
		return errors.New("command: Type is empty")
	}
	data, err := json.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("command: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.cfg.CommandTimeout)
		defer cancel()
	}
	resp, err := b.nc.RequestWithContext(ctx, b.n.cmdSubject(workerID), data)
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("command %s to %s: %w", cmd.Type, workerID, ErrWorkerUnreachable)
	}
	if err != nil {
		return fmt.Errorf("command %s to %s: %w", cmd.Type, workerID, err)
	}
	var r commandReply
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return fmt.Errorf("command %s to %s: bad reply: %w", cmd.Type, workerID, err)
	}
	if r.Error != "" {
		return fmt.Errorf("command %s to %s: worker: %s", cmd.Type, workerID, r.Error)
	}
	return nil
}

// commandReply is a worker's answer to a command request.
type commandReply struct {
	Error string `json:"error,omitempty"`
}

// Pending returns how many dispatches of pool wait for a worker: stored and
// not held by one (delivered and not yet acked). A dispatch whose ack wait
// ran out but has not been redelivered yet still counts as held. This is the
// backlog the launcher starts workers for.
func (b *Bus) Pending(ctx context.Context, pool string) (int, error) {
	if err := validatePool("pool", pool); err != nil {
		return 0, err
	}
	info, err := b.stream.Info(ctx, jetstream.WithSubjectFilter(b.n.poolWildcard(pool)))
	if err != nil {
		return 0, fmt.Errorf("stream info %s: %w", b.cfg.Stream, err)
	}
	var stored uint64
	for _, n := range info.State.Subjects {
		stored += n
	}
	if stored == 0 {
		return 0, nil
	}
	var held uint64
	lister := b.stream.ListConsumers(ctx)
	for ci := range lister.Info() {
		if strings.HasPrefix(ci.Name, pool+"_") {
			held += uint64(ci.NumAckPending)
		}
	}
	if err := lister.Err(); err != nil {
		return 0, fmt.Errorf("list consumers %s: %w", b.cfg.Stream, err)
	}
	if held >= stored {
		return 0, nil
	}
	return int(stored - held), nil
}
