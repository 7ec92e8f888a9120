package traceroute

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/sys/unix"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
)

// TaskTypeName is the name of the task type.
const TaskTypeName = "traceroute"

// The probe methods.
const (
	MethodICMP = "icmp" // ICMP echo requests
	MethodUDP  = "udp"  // UDP datagrams to one port, 33434 unless set
	MethodTCP  = "tcp"  // TCP SYNs to one port, 80 unless set
)

// HopStatus is how one hop of a trace answered: a closed set, one per hop.
type HopStatus string

// The hop statuses.
const (
	HopTimeExceeded HopStatus = "time-exceeded" // a router on the way
	HopReply        HopStatus = "reply"         // the destination itself
	HopUnreachable  HopStatus = "unreachable"   // someone else said the destination cannot be reached
	HopTimeout      HopStatus = "timeout"       // no answer to any query
)

// Hop is one TTL of a trace, as stored in the "traceroute" field of the
// destination's host record.
type Hop struct {
	TTL int `json:"ttl"`
	// IP is who answered; empty on timeout. OtherIPs lists further
	// addresses that answered other queries of the same TTL, which a
	// constant flow should make rare.
	IP       string    `json:"ip,omitempty"`
	OtherIPs []string  `json:"other_ips,omitempty"`
	RTTsMS   []float64 `json:"rtts_ms"`
	Status   HopStatus `json:"status"`
	// Answer names the reply of a HopReply or HopUnreachable hop:
	// echo-reply, syn-ack, reset, port-unreachable, host-unreachable, …
	Answer string `json:"answer,omitempty"`
}

// record returns the hop as JSON-shaped values, as a record's fields are
// after a trip through the server.
func (h Hop) record() map[string]any {
	rtts := make([]any, len(h.RTTsMS))
	for i, r := range h.RTTsMS {
		rtts[i] = r
	}
	m := map[string]any{"ttl": h.TTL, "rtts_ms": rtts, "status": string(h.Status)}
	if h.IP != "" {
		m["ip"] = h.IP
	}
	if len(h.OtherIPs) > 0 {
		ips := make([]any, len(h.OtherIPs))
		for i, ip := range h.OtherIPs {
			ips[i] = ip
		}
		m["other_ips"] = ips
	}
	if h.Answer != "" {
		m["answer"] = h.Answer
	}
	return m
}

// TaskType describes traceroute tasks.
func TaskType() *scanfleet.TaskType {
	return &scanfleet.TaskType{
		Name:        TaskTypeName,
		Description: "Traces the route to each target address with TTL-limited probes (ICMP echo, UDP or TCP SYN), all hops at once with a constant flow (paris-traceroute).",
		Params: []scanfleet.Param{
			{Name: "method", Type: scanfleet.ParamString, Default: MethodICMP, Description: "Probe method: icmp, udp or tcp."},
			{Name: "port", Type: scanfleet.ParamInteger, Min: ptr[int64](1), Max: ptr[int64](65535), Description: "Destination port of udp probes (default 33434) and tcp SYNs (default 80)."},
			{Name: "max_hops", Type: scanfleet.ParamInteger, Default: float64(30), Min: ptr[int64](1), Max: ptr[int64](255), Description: "Largest TTL probed."},
			{Name: "first_ttl", Type: scanfleet.ParamInteger, Default: float64(1), Min: ptr[int64](1), Max: ptr[int64](255), Description: "Smallest TTL probed."},
			{Name: "queries", Type: scanfleet.ParamInteger, Default: float64(3), Min: ptr[int64](1), Max: ptr[int64](10), Description: "Probes per hop."},
			{Name: "timeout", Type: scanfleet.ParamDuration, Default: "2s", Description: "How long one probe waits for its answer."},
			{Name: "concurrency", Type: scanfleet.ParamInteger, Default: float64(16), Min: ptr[int64](1), Max: ptr[int64](256), Description: "Destinations traced at once."},
		},
		Requirements: []scanfleet.Requirement{scanfleet.RequireRawSockets},
		Timeout:      time.Hour,
	}
}

func ptr[T any](v T) *T { return &v }

// Config configures the executor.
type Config struct {
	// Resolver resolves target names; nil uses the system's resolver.
	Resolver scanner.Resolver
}

// Executor runs traceroute tasks.
type Executor struct {
	cfg Config
}

var _ scanfleet.Executor = (*Executor)(nil)

// New returns an executor.
func New(cfg Config) *Executor { return &Executor{cfg: cfg} }

// TaskType implements scanfleet.Executor.
func (*Executor) TaskType() *scanfleet.TaskType { return TaskType() }

// options are a task's arguments, checked.
type options struct {
	method      string
	port        uint16
	firstTTL    int
	maxTTL      int
	queries     int
	timeout     time.Duration
	concurrency int
}

func parseOptions(in *scanfleet.TaskInput) (options, error) {
	args, err := scanner.ValidateArgs(TaskType(), in)
	if err != nil {
		return options{}, err
	}
	o := options{
		method:      args.String("method"),
		port:        uint16(args.Int("port")),
		firstTTL:    int(args.Int("first_ttl")),
		maxTTL:      int(args.Int("max_hops")),
		queries:     int(args.Int("queries")),
		timeout:     args.Duration("timeout"),
		concurrency: int(args.Int("concurrency")),
	}
	switch o.method {
	case MethodICMP:
	case MethodUDP:
		if o.port == 0 {
			o.port = 33434
		}
	case MethodTCP:
		if o.port == 0 {
			o.port = 80
		}
	default:
		return options{}, scanfleet.Errorf(scanfleet.EINVALID, "args.method: %q is not one of icmp, udp, tcp", o.method)
	}
	if o.firstTTL > o.maxTTL {
		return options{}, scanfleet.Errorf(scanfleet.EINVALID, "args.first_ttl: %d is more than max_hops %d", o.firstTTL, o.maxTTL)
	}
	if o.timeout <= 0 {
		return options{}, scanfleet.Errorf(scanfleet.EINVALID, "args.timeout: must be more than 0s")
	}
	return o, nil
}

// Run traces the route to every address of the task's plan. Out-of-scope
// targets are logged and counted, never probed.
func (e *Executor) Run(ctx context.Context, in *scanfleet.TaskInput, env scanfleet.ExecEnv) error {
	o, err := parseOptions(in)
	if err != nil {
		return err
	}
	plan, err := scanner.NewPlan(ctx, in, e.cfg.Resolver)
	if err != nil {
		return err
	}
	for _, s := range plan.OutOfScope {
		env.Log(fmt.Sprintf("traceroute: not probed, out of scope: %s: %s", s.Target, s.Reason))
	}
	for _, s := range plan.Unresolved {
		env.Log(fmt.Sprintf("traceroute: not probed, does not resolve: %s: %s", s.Target, s.Reason))
	}
	env.Result("method", o.method)
	env.Result("out_of_scope", len(plan.OutOfScope))
	env.Result("unresolved", len(plan.Unresolved))
	total := plan.Count()
	env.Result("destinations", total)
	if total == 0 {
		env.Log("traceroute: no address in scope to trace")
		return nil
	}
	// Sockets first, on this goroutine (see the package comment).
	t, err := openTracer(o)
	if err != nil {
		return err
	}
	defer t.close()

	var counts scanner.Counts
	for _, k := range []string{"up", "down", "no_route", "skipped_ipv6"} {
		counts.Add(k, 0) // every key in the output, zero or not
	}
	var next, done atomic.Uint64
	var emitErr error
	var emitOnce sync.Once
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range min(uint64(o.concurrency), total) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				dst := plan.At(i)
				if err := t.traceOne(ctx, dst, plan.Names[dst], env, &counts); err != nil {
					emitOnce.Do(func() { emitErr = err })
					cancel(err)
					return
				}
				env.Progress(int64(done.Add(1)), int64(total))
			}
		})
	}
	wg.Wait()
	t.close()
	for k, v := range counts.Map() {
		env.Result(k, v)
	}
	env.Result("probes", t.sent.Load())
	if emitErr != nil {
		return emitErr
	}
	if err := context.Cause(ctx); err != nil {
		return err
	}
	env.Log(fmt.Sprintf("traceroute: traced %d destinations, %d up, %d down", total-uint64(counts.Get("skipped_ipv6")), counts.Get("up"), counts.Get("down")))
	return nil
}

// tracer holds a task's sockets and the probes in flight.
type tracer struct {
	o       options
	send    *net.IPConn       // IPPROTO_RAW: we write whole IPv4 packets
	icmp    *icmp.PacketConn  // every ICMP message to this host
	tcp     net.PacketConn    // every TCP segment to this host, for tcp probes
	routeFD int               // a UDP socket, connected to find a source address
	routeMu sync.Mutex        // guards routeFD's connect-then-getsockname
	ident   uint16            // ICMP identifier of every echo probe
	sport   uint16            // source port of every UDP and TCP probe
	seqBase uint32            // TCP sequence number of probe id 0
	readers sync.WaitGroup    // the receive loops
	closeMu sync.Once         //
	mu      sync.Mutex        // guards below
	probes  map[uint16]*probe // in flight, by id
	nextID  uint16
	sent    atomic.Int64
}

// probe is one packet in flight.
type probe struct {
	tr       *trace
	ttl      int
	sent     time.Time
	answered bool
}

// trace is the state of one destination.
type trace struct {
	flow    flow
	answers chan result
}

type result struct {
	ttl int
	rtt time.Duration
	a   answer
}

func openTracer(o options) (*tracer, error) {
	t := &tracer{o: o, probes: map[uint16]*probe{}, routeFD: -1}
	var b [8]byte
	_, _ = rand.Read(b[:])
	t.ident = binary.BigEndian.Uint16(b[0:])
	t.sport = 33000 + binary.BigEndian.Uint16(b[2:])%28000
	t.seqBase = binary.BigEndian.Uint32(b[4:])
	c, err := net.ListenPacket("ip4:255", "0.0.0.0") // IPPROTO_RAW implies IP_HDRINCL
	if err != nil {
		return nil, fmt.Errorf("open raw socket: %w", err)
	}
	t.send = c.(*net.IPConn)
	if t.icmp, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0"); err != nil {
		t.close()
		return nil, fmt.Errorf("open icmp socket: %w", err)
	}
	if o.method == MethodTCP {
		if t.tcp, err = net.ListenPacket("ip4:tcp", "0.0.0.0"); err != nil {
			t.close()
			return nil, fmt.Errorf("open tcp raw socket: %w", err)
		}
	}
	if t.routeFD, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
		t.close()
		return nil, fmt.Errorf("open route socket: %w", err)
	}
	t.readers.Go(func() { t.readLoop(t.icmp, parseICMP) })
	if t.tcp != nil {
		t.readers.Go(func() { t.readLoop(t.tcp, parseTCP) })
	}
	return t, nil
}

// close closes every socket and waits for the receive loops; it may be
// called more than once.
func (t *tracer) close() {
	t.closeMu.Do(func() {
		if t.send != nil {
			t.send.Close()
		}
		if t.icmp != nil {
			t.icmp.Close()
		}
		if t.tcp != nil {
			t.tcp.Close()
		}
		if t.routeFD >= 0 {
			unix.Close(t.routeFD)
		}
		t.readers.Wait()
	})
}

// readLoop reads answers from c until it is closed.
func (t *tracer) readLoop(c net.PacketConn, parse func([]byte, netip.Addr) (answer, bool)) {
	buf := make([]byte, 1500)
	for {
		n, peer, err := c.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		ipa, ok := peer.(*net.IPAddr)
		if !ok {
			continue
		}
		from, ok := netip.AddrFromSlice(ipa.IP)
		if !ok {
			continue
		}
		if a, ok := parse(buf[:n], from.Unmap()); ok {
			t.deliver(a, time.Now())
		}
	}
}

// deliver hands an answer to the trace whose probe it answers; answers to
// no probe of ours in flight are dropped.
func (t *tracer) deliver(a answer, now time.Time) {
	if a.kind == answerSynAck || a.kind == answerReset {
		off := a.ack - 1 - t.seqBase
		if off > math.MaxUint16 {
			return
		}
		a.id = uint16(off)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.probes[a.id]
	if p == nil || p.answered || a.dst != p.tr.flow.dst {
		return
	}
	f := &p.tr.flow
	switch f.method {
	case MethodICMP:
		if a.proto != protoICMP || a.ident != f.ident {
			return
		}
	case MethodUDP:
		if a.proto != protoUDP || a.ident != f.sport || a.port != f.dport {
			return
		}
	case MethodTCP:
		if a.proto != protoTCP || a.ident != f.sport || a.port != f.dport {
			return
		}
	}
	p.answered = true
	// The channel has room for every probe of a round, and each probe is
	// answered once: this never blocks.
	p.tr.answers <- result{ttl: p.ttl, rtt: now.Sub(p.sent), a: a}
}

// source returns the address the kernel would send to dst from. Connecting
// a UDP socket sends nothing.
func (t *tracer) source(dst netip.Addr) (netip.Addr, error) {
	t.routeMu.Lock()
	defer t.routeMu.Unlock()
	if err := unix.Connect(t.routeFD, &unix.SockaddrInet4{Port: 33434, Addr: dst.As4()}); err != nil {
		return netip.Addr{}, err
	}
	sa, err := unix.Getsockname(t.routeFD)
	if err != nil {
		return netip.Addr{}, err
	}
	s4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		return netip.Addr{}, fmt.Errorf("getsockname: %T is not an IPv4 address", sa)
	}
	return netip.AddrFrom4(s4.Addr), nil
}

// register allocates an id for a probe; it reports false when 65535 probes
// are in flight.
func (t *tracer) register(p *probe) (uint16, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for range math.MaxUint16 {
		t.nextID++
		if t.nextID == 0 {
			t.nextID = 1 // an IPv4 id of 0 would be replaced by the kernel's
		}
		if t.probes[t.nextID] == nil {
			t.probes[t.nextID] = p
			return t.nextID, true
		}
	}
	return 0, false
}

func (t *tracer) unregister(ids []uint16) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		delete(t.probes, id)
	}
}

// hopState gathers the answers of one TTL.
type hopState struct {
	status HopStatus
	ip     netip.Addr
	others []string
	answer string
	rtts   []float64
}

// ends reports whether the path ends at this hop: the destination, or
// someone saying it cannot be reached, answered.
func (h *hopState) ends() bool { return h.status == HopReply || h.status == HopUnreachable }

// traceOne traces dst and emits its host record. Only an emit error is
// returned: a destination that does not answer is data.
func (t *tracer) traceOne(ctx context.Context, dst netip.Addr, names []string, env scanfleet.ExecEnv, counts *scanner.Counts) error {
	if !dst.Is4() {
		env.Log(fmt.Sprintf("traceroute: %s: IPv6 destinations are not traced yet", dst))
		counts.Add("skipped_ipv6", 1)
		return nil
	}
	o := t.o
	hops := make([]hopState, o.maxTTL+1) // by TTL
	end := 0                             // smallest TTL where the path ends, 0 while unknown
	src, err := t.source(dst)
	if err != nil {
		env.Log(fmt.Sprintf("traceroute: %s: no route: %v", dst, err))
		counts.Add("no_route", 1)
		return t.emit(ctx, env, counts, dst, names, hops, end)
	}
	tr := &trace{
		flow: flow{method: o.method, src: src, dst: dst, ident: t.ident, sport: t.sport, dport: o.port, seqBase: t.seqBase},
		// Room for every probe of a round; see deliver.
		answers: make(chan result, o.maxTTL-o.firstTTL+1),
	}
	got := make([]bool, o.maxTTL+1) // answered in this round, by TTL
	apply := func(r result) {
		got[r.ttl] = true
		h := &hops[r.ttl]
		h.rtts = append(h.rtts, math.Round(float64(r.rtt.Microseconds()))/1000)
		switch {
		case !h.ip.IsValid():
			h.ip = r.a.from
			h.status, h.answer = classify(r.a, dst)
		case h.ip != r.a.from && !containsStr(h.others, r.a.from.String()):
			h.others = append(h.others, r.a.from.String())
		}
		if h.ends() && (end == 0 || r.ttl < end) {
			end = r.ttl
		}
	}
	for q := 0; q < o.queries && ctx.Err() == nil; q++ {
		last := o.maxTTL
		if end != 0 {
			last = end
		}
		clear(got)
		ids := make([]uint16, 0, last-o.firstTTL+1)
		for ttl := o.firstTTL; ttl <= last && ctx.Err() == nil; ttl++ {
			p := &probe{tr: tr, ttl: ttl}
			id, ok := t.register(p)
			if !ok {
				break
			}
			ids = append(ids, id)
			pkt := tr.flow.build(id, uint8(ttl))
			t.mu.Lock()
			p.sent = time.Now()
			t.mu.Unlock()
			if _, err := t.send.WriteToIP(pkt, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
				env.Log(fmt.Sprintf("traceroute: %s: send ttl %d: %v", dst, ttl, err))
				continue
			}
			t.sent.Add(1)
		}
		// Wait until every hop up to the end has answered this round, or
		// the timeout.
		pending := func() bool {
			stop := last
			if end != 0 {
				stop = min(stop, end)
			}
			for ttl := o.firstTTL; ttl <= stop; ttl++ {
				if !got[ttl] {
					return true
				}
			}
			return false
		}
		timer := time.NewTimer(o.timeout)
	wait:
		for pending() {
			select {
			case r := <-tr.answers:
				apply(r)
			case <-timer.C:
				break wait
			case <-ctx.Done():
				break wait
			}
		}
		timer.Stop()
		t.unregister(ids)
		for len(tr.answers) > 0 {
			apply(<-tr.answers)
		}
	}
	if ctx.Err() != nil {
		return nil // cancelled: a partial trace is not recorded
	}
	return t.emit(ctx, env, counts, dst, names, hops, end)
}

// emit sends dst's host record with its trace.
func (t *tracer) emit(ctx context.Context, env scanfleet.ExecEnv, counts *scanner.Counts, dst netip.Addr, names []string, hops []hopState, end int) error {
	o := t.o
	last := end
	if last == 0 {
		// Not reached: up to the last hop that answered.
		for ttl := o.maxTTL; ttl >= o.firstTTL && last == 0; ttl-- {
			if hops[ttl].ip.IsValid() {
				last = ttl
			}
		}
	}
	trace := make([]any, 0, max(0, last-o.firstTTL+1))
	state := "down"
	for ttl := o.firstTTL; ttl <= last; ttl++ {
		h := hops[ttl]
		hop := Hop{TTL: ttl, RTTsMS: h.rtts, Status: HopTimeout, OtherIPs: h.others}
		if h.ip.IsValid() {
			hop.IP, hop.Status, hop.Answer = h.ip.String(), h.status, h.answer
		}
		if hop.Status == HopReply {
			state = "up"
		}
		if hop.RTTsMS == nil {
			hop.RTTsMS = []float64{}
		}
		trace = append(trace, hop.record())
	}
	counts.Add(state, 1)
	rec := map[string]any{"kind": "host", "ip": dst.String(), "state": state, "traceroute": trace}
	if len(names) > 0 {
		hn := make([]any, len(names))
		for i, n := range names {
			hn[i] = n
		}
		rec["hostnames"] = hn
	}
	if err := env.Emit(ctx, rec); err != nil {
		return fmt.Errorf("emit %s: %w", dst, err)
	}
	return nil
}

// classify names the status of a hop from its first answer.
func classify(a answer, dst netip.Addr) (HopStatus, string) {
	switch a.kind {
	case answerTimeExceeded:
		return HopTimeExceeded, ""
	case answerEchoReply:
		return HopReply, "echo-reply"
	case answerSynAck:
		return HopReply, "syn-ack"
	case answerReset:
		return HopReply, "reset"
	}
	name := unreachableNames[a.code]
	if name == "" {
		name = fmt.Sprintf("unreachable-code-%d", a.code)
	}
	if a.from == dst {
		// The destination itself answered: it is up, whatever it said.
		return HopReply, name
	}
	return HopUnreachable, name
}

var unreachableNames = map[uint8]string{
	0:  "net-unreachable",
	1:  "host-unreachable",
	2:  "protocol-unreachable",
	3:  "port-unreachable",
	4:  "fragmentation-needed",
	9:  "net-prohibited",
	10: "host-prohibited",
	13: "admin-prohibited",
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
