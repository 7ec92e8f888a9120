package synscan

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
)

// path is how probes of one address family leave: the socket, the
// template and the source address replies must be addressed to.
type path struct {
	tx    *txSocket
	tmpl  *template
	src   netip.Addr
	iface *net.Interface
	desc  string
}

// scan is the state of one run.
type scan struct {
	p      params
	plan   *scanner.Plan
	starts []uint64 // first address number of each plan prefix
	nAddr  uint64
	total  uint64 // probes per pass: nAddr × len(ports)
	nPorts uint64
	portIx [65536]int32
	key    cookieKey
	perm   *permutation
	sport  uint16 // first source port
	v4, v6 *path

	// answered and open have one bit per probe index (nil when the scan
	// is larger than trackLimit). Only the receiver sets bits.
	answered, open []uint64
	openSeen       map[uint64]struct{} // untracked scans: opens seen

	sent, sendDrops                             atomic.Uint64
	received, matched, nAnswered                atomic.Uint64
	nOpen, nClosed, nUnreach, stray, outOfScope atomic.Uint64
	hostsUp                                     atomic.Uint64

	sendTime time.Duration // time spent sending, waits excluded

	mu     sync.Mutex
	found  []opened // opens waiting to be emitted
	wake   chan struct{}
	rstq   chan reply
	rxDone chan struct{}
}

func run(ctx context.Context, in *scanfleet.TaskInput, env scanfleet.ExecEnv, p params) error {
	began := time.Now()
	if err := scanner.RefusePorts(in.Targets); err != nil {
		return err
	}
	pl, err := scanner.NewPlan(ctx, in, nil)
	if err != nil {
		return err
	}
	for _, s := range pl.OutOfScope {
		env.Log(fmt.Sprintf("synscan: skipped %s: %s", s.Target, s.Reason))
	}
	for _, s := range pl.Unresolved {
		env.Log(fmt.Sprintf("synscan: %s did not resolve: %s", s.Target, s.Reason))
	}
	env.Result("out_of_scope", len(pl.OutOfScope))
	env.Result("unresolved", len(pl.Unresolved))
	s := &scan{p: p, plan: pl, nAddr: pl.Count(), nPorts: uint64(len(p.ports)), wake: make(chan struct{}, 1), rstq: make(chan reply, 4096), rxDone: make(chan struct{})}
	s.total = s.nAddr * s.nPorts
	if s.nAddr == 0 {
		s.results(env, began, 0)
		env.Log("synscan: no address to scan")
		return nil
	}
	if s.total/s.nPorts != s.nAddr {
		return scanfleet.Errorf(scanfleet.EINVALID, "targets: too many probes; split the scan")
	}
	var n uint64
	for _, pfx := range pl.Prefixes {
		s.starts = append(s.starts, n)
		n += 1 << (pfx.Addr().BitLen() - pfx.Bits())
	}
	for i := range s.portIx {
		s.portIx[i] = -1
	}
	for i, port := range p.ports {
		s.portIx[port] = int32(i)
	}
	var seed [48]byte
	_, _ = rand.Read(seed[:])
	s.key = cookieKey{binary.LittleEndian.Uint64(seed[0:]), binary.LittleEndian.Uint64(seed[8:])}
	s.perm = newPermutation(s.total, [4]uint64{binary.LittleEndian.Uint64(seed[16:]), binary.LittleEndian.Uint64(seed[24:]), binary.LittleEndian.Uint64(seed[32:]), binary.LittleEndian.Uint64(seed[40:])})
	if s.total <= trackLimit {
		s.answered = make([]uint64, (s.total+63)/64)
		s.open = make([]uint64, (s.total+63)/64)
	} else {
		s.openSeen = map[uint64]struct{}{}
		env.Log(fmt.Sprintf("synscan: %d probes is more than %d: answers are not tracked per probe, so retries resend every probe and closed ports may be counted twice", s.total, uint64(trackLimit)))
	}
	s.sport = p.sourcePort
	if s.sport == 0 {
		s.sport = pickSourcePorts()
	}

	rxIface, err := s.openPaths(ctx)
	if err != nil {
		return err
	}
	defer s.closePaths()
	for _, pa := range []*path{s.v4, s.v6} {
		if pa != nil {
			env.Log("synscan: " + pa.desc)
		}
	}
	rx, err := openRX(rxIface, s.sport, s.sport+SourcePorts-1, s.v4 != nil, s.v6 != nil)
	if err != nil {
		return err
	}

	// Emitter: records leave through env.Emit, which may block; the
	// receiver never waits for it.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	emitDone := make(chan struct{})
	var emitErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		emitErr = s.emitter(ctx, env, emitDone)
		if emitErr != nil {
			cancel(emitErr)
		}
	}()
	var stopRx atomic.Bool
	var rxErr error
	go func() {
		defer wg.Done()
		defer close(s.rxDone)
		rxErr = s.receive(rx, &stopRx)
		if rxErr != nil {
			cancel(rxErr)
		}
	}()

	err = s.sendPasses(ctx, env)
	stopRx.Store(true)
	<-s.rxDone
	close(emitDone)
	wg.Wait()
	drops := rx.drops()
	rx.Close()
	if emitErr != nil {
		return emitErr
	}
	if rxErr != nil {
		return fmt.Errorf("receive replies: %w", rxErr)
	}
	s.results(env, began, drops)
	if err != nil {
		return err
	}
	env.Progress(int64(s.total), int64(s.total))
	env.Log(fmt.Sprintf("synscan: %d probes to %d addresses × %d ports in %s: %d open, %d closed, %d filtered, %d no answer",
		s.sent.Load(), s.nAddr, s.nPorts, time.Since(began).Round(time.Millisecond), s.nOpen.Load(), s.nClosed.Load(), s.nUnreach.Load(), s.timeouts()))
	return nil
}

// opened is an open port waiting to be emitted.
type opened struct {
	ap   netip.AddrPort
	host uint64 // the address's number in the plan
}

// pickSourcePorts returns the first of SourcePorts ports outside the
// kernel's ephemeral range, so that no local socket owns them: the kernel
// then answers every SYN-ACK to them with a reset, which closes the
// half-open connection on the target.
func pickSourcePorts() uint16 {
	lo, hi := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			fmt.Sscan(f[0], &lo)
			fmt.Sscan(f[1], &hi)
		}
	}
	switch {
	case hi+SourcePorts <= 65535:
		return uint16(hi + 1)
	case lo-SourcePorts >= 1024:
		return uint16(lo - SourcePorts)
	}
	return 65536 - SourcePorts
}

// openPaths chooses, per address family in the plan, how probes leave
// and returns the interface to receive on ("" for all).
func (s *scan) openPaths(ctx context.Context) (string, error) {
	var v4, v6 []netip.Prefix
	for _, pfx := range s.plan.Prefixes {
		if pfx.Addr().Is4() {
			v4 = append(v4, pfx)
		} else {
			v6 = append(v6, pfx)
		}
	}
	var err error
	if len(v4) > 0 {
		if s.v4, err = openPath(ctx, v4); err != nil {
			s.closePaths()
			return "", err
		}
	}
	if len(v6) > 0 {
		if s.v6, err = openPath(ctx, v6); err != nil {
			s.closePaths()
			return "", err
		}
	}
	// One interface when every path has one, else all.
	var name string
	for _, pa := range []*path{s.v4, s.v6} {
		if pa == nil {
			continue
		}
		if pa.iface == nil || (name != "" && name != pa.iface.Name) {
			return "", nil
		}
		name = pa.iface.Name
	}
	return name, nil
}

func (s *scan) closePaths() {
	for _, pa := range []*path{s.v4, s.v6} {
		if pa != nil && pa.tx != nil {
			pa.tx.Close()
			pa.tx = nil
		}
	}
}

// openPath asks the kernel for the route to the first and last address
// of every prefix. When they all leave through one Ethernet interface to
// one gateway (or go to one on-link host), probes are Ethernet frames to
// that next hop on an AF_PACKET socket; otherwise (several on-link hosts,
// addresses of this host, interfaces without Ethernet) they go through a
// raw IP socket and the kernel routes each.
func openPath(ctx context.Context, prefixes []netip.Prefix) (*path, error) {
	var routes []route
	for _, pfx := range prefixes {
		first := pfx.Masked().Addr()
		last := lastAddr(pfx)
		for _, a := range []netip.Addr{first, last} {
			r, err := lookupRoute(a)
			if err != nil {
				return nil, err
			}
			routes = append(routes, r)
			if a == last {
				break
			}
		}
	}
	r0 := routes[0]
	same := true
	for _, r := range routes[1:] {
		if r.ifindex != r0.ifindex || r.gateway != r0.gateway || r.local != r0.local || r.src != r0.src {
			same = false
		}
		if r.src != r0.src {
			return nil, scanfleet.Errorf(scanfleet.EINVALID, "targets: %s and others leave from different source addresses (%s, %s); split the scan", prefixes[0], r0.src, r.src)
		}
	}
	single := len(prefixes) == 1 && prefixes[0].IsSingleIP()
	probe := prefixes[0].Masked().Addr()
	ifi, err := ifaceName(r0.ifindex)
	if err != nil {
		return nil, err
	}
	pa := &path{src: r0.src, iface: ifi}
	if same {
		var dstMAC net.HardwareAddr
		ok := true
		switch {
		case r0.local || ifi.Flags&net.FlagLoopback != 0:
			// A frame injected on loopback has no route attached, and
			// the kernel drops a 127/8 source arriving without one as
			// martian: local targets go through the raw socket.
			ok = false
		case len(ifi.HardwareAddr) != 6:
			ok = false // not Ethernet: no frame to build
		case r0.gateway.IsValid():
			if dstMAC, err = resolveNeighbor(ctx, r0.ifindex, r0.gateway, probe); err != nil {
				return nil, err
			}
		case single:
			if dstMAC, err = resolveNeighbor(ctx, r0.ifindex, probe, probe); err != nil {
				return nil, err
			}
		default:
			ok = false // several on-link hosts: the kernel resolves each
		}
		if ok {
			if pa.tx, err = openPacketTX(r0.ifindex); err != nil {
				return nil, err
			}
			if pa.tmpl, err = newTemplate(r0.src, ifi.HardwareAddr, dstMAC); err != nil {
				pa.tx.Close()
				return nil, err
			}
			hop := "next hop " + dstMAC.String()
			if r0.gateway.IsValid() {
				hop += " (" + r0.gateway.String() + ")"
			}
			pa.desc = fmt.Sprintf("sending Ethernet frames on %s from %s to %s", ifi.Name, r0.src, hop)
			return pa, nil
		}
	}
	if pa.tx, err = openRawTX(r0.src.Is6()); err != nil {
		return nil, err
	}
	if pa.tmpl, err = newTemplate(r0.src, nil, nil); err != nil {
		pa.tx.Close()
		return nil, err
	}
	if !same {
		pa.iface = nil
	}
	pa.desc = fmt.Sprintf("sending through a raw IP socket from %s (the kernel routes each probe)", r0.src)
	return pa, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// probe returns the target of probe index i.
func (s *scan) target(i uint64) (netip.Addr, uint16) {
	return s.plan.At(i / s.nPorts), s.p.ports[i%s.nPorts]
}

// index returns the probe index of a target address (in the plan) and a
// probed port.
func (s *scan) index(a netip.Addr, pi int32) uint64 {
	ps := s.plan.Prefixes
	k := sort.Search(len(ps), func(k int) bool { return a.Less(ps[k].Addr()) }) - 1
	if k < 0 || !ps[k].Contains(a) {
		return ^uint64(0) // not in the plan; handle never asks for one
	}
	base := ps[k].Addr().As16()
	x := a.As16()
	off := binary.BigEndian.Uint64(x[8:]) - binary.BigEndian.Uint64(base[8:])
	return (s.starts[k]+off)*s.nPorts + uint64(pi)
}

func (s *scan) sourcePort(h uint64) uint16 { return s.sport + uint16((h>>32)%SourcePorts) }

func testBit(b []uint64, i uint64) bool { return atomic.LoadUint64(&b[i/64])&(1<<(i%64)) != 0 }

// setBit sets bit i and reports whether it was clear. Only the receiver
// writes, so load-then-or is not racy among writers.
func setBit(b []uint64, i uint64) bool {
	m := uint64(1) << (i % 64)
	if atomic.LoadUint64(&b[i/64])&m != 0 {
		return false
	}
	atomic.OrUint64(&b[i/64], m)
	return true
}

// receive reads replies until stop is set.
func (s *scan) receive(rx *rxSocket, stop *atomic.Bool) error {
	for !stop.Load() {
		data, err := rx.read()
		if err != nil {
			return err
		}
		if data == nil {
			continue
		}
		s.received.Add(1)
		s.handle(data)
	}
	return nil
}

// handle matches one packet to a probe: it must parse as a reply, be
// addressed to our source address and a source port of this scan, come
// from an address of the plan and a probed port, and carry the probe's
// cookie. Anything else is counted and dropped.
func (s *scan) handle(data []byte) {
	r, ok := parseReply(data)
	if !ok {
		s.stray.Add(1)
		return
	}
	pa := s.v4
	if r.us.Is6() {
		pa = s.v6
	}
	if pa == nil || r.us != pa.src {
		s.stray.Add(1)
		return
	}
	// The reply's source must be of the family of the address it came to:
	// an IPv4-mapped IPv6 source (::ffff:a.b.c.d) would pass the plan as
	// its IPv4 address and is never the answer to a probe.
	if r.target.Is4In6() || r.target.Is4() != r.us.Is4() {
		s.stray.Add(1)
		return
	}
	if !s.plan.Contains(r.target) {
		s.outOfScope.Add(1)
		return
	}
	pi := s.portIx[r.tport]
	h := s.key.cookie(r.target, r.tport)
	if pi < 0 || r.uport != s.sourcePort(h) || r.seq != uint32(h) {
		s.stray.Add(1)
		return
	}
	idx := s.index(r.target, pi)
	if idx >= s.nPorts*s.plan.Count() {
		s.stray.Add(1)
		return
	}
	s.matched.Add(1)
	first := true
	if s.answered != nil {
		first = setBit(s.answered, idx)
	}
	if first {
		s.nAnswered.Add(1)
	}
	switch r.kind {
	case replySynAck:
		isNew := false
		if s.open != nil {
			isNew = setBit(s.open, idx)
		} else if _, seen := s.openSeen[idx]; !seen {
			s.openSeen[idx] = struct{}{}
			isNew = true
		}
		if isNew {
			s.nOpen.Add(1)
			s.mu.Lock()
			s.found = append(s.found, opened{netip.AddrPortFrom(r.target, r.tport), idx / s.nPorts})
			s.mu.Unlock()
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
		if s.p.sendRST {
			select {
			case s.rstq <- r:
			default: // the kernel resets it anyway
			}
		}
	case replyRst:
		if first {
			s.nClosed.Add(1)
		}
	case replyUnreach:
		if first {
			s.nUnreach.Add(1)
		}
	}
}

// emitter hands open ports to env: a host record the first time a host
// shows an open port, then the service record. It is the scan's one
// consumer of CPU beside the kernel (a record is a map, validated by env),
// so it keeps the rest cheap: hosts seen are one bit per address when the
// scan is tracked, and the two batches are swapped, not reallocated.
func (s *scan) emitter(ctx context.Context, env scanfleet.ExecEnv, done <-chan struct{}) error {
	var seenBits []uint64
	var seenMap map[uint64]bool
	if s.answered != nil {
		seenBits = make([]uint64, (s.nAddr+63)/64)
	} else {
		seenMap = map[uint64]bool{}
	}
	firstSeen := func(h uint64) bool {
		if seenBits != nil {
			m := uint64(1) << (h % 64)
			if seenBits[h/64]&m != 0 {
				return false
			}
			seenBits[h/64] |= m
			return true
		}
		if seenMap[h] {
			return false
		}
		seenMap[h] = true
		return true
	}
	var batch []opened
	flush := func() error {
		for {
			s.mu.Lock()
			batch, s.found = s.found, batch[:0]
			s.mu.Unlock()
			if len(batch) == 0 {
				return nil
			}
			for _, o := range batch {
				a := o.ap.Addr()
				ip := a.String()
				if firstSeen(o.host) {
					s.hostsUp.Add(1)
					rec := map[string]any{"kind": "host", "ip": ip, "state": "up"}
					if names := s.plan.Names[a]; len(names) > 0 {
						rec["hostnames"] = names
					}
					if err := env.Emit(ctx, rec); err != nil {
						return err
					}
				}
				if err := env.Emit(ctx, map[string]any{"kind": "service", "ip": ip, "port": int(o.ap.Port()), "proto": "tcp", "state": "open"}); err != nil {
					return err
				}
			}
		}
	}
	for {
		select {
		case <-s.wake:
			if err := flush(); err != nil {
				return err
			}
		case <-done:
			return flush()
		case <-ctx.Done():
			return nil
		}
	}
}

// sendPasses sends every probe, waits for replies, then resends those
// without an answer, p.retries times. Each pass is shared by p.senders
// goroutines, each on its own slice of the permutation: on a veth or
// loopback the kernel does the whole round trip of a probe (the target's
// answer included) inside the sending system call, so one sender per core
// is what keeps every core busy.
func (s *scan) sendPasses(ctx context.Context, env scanfleet.ExecEnv) error {
	n := s.p.senders
	if n <= 0 {
		n = min(runtime.GOMAXPROCS(0), 64)
	}
	n = int(min(int64(n), max(s.p.rate, 1))) // each sender sends at least 1/s
	rate := max(s.p.rate/int64(n), 1)
	size := int(min(max(rate/1000, 1), maxBatch))
	senders := make([]*sender, n)
	for k := range senders {
		senders[k] = s.newSender(size)
	}
	resets := s.newSender(64)
	for pass := 0; pass <= s.p.retries; pass++ {
		if pass > 0 && s.answered != nil && s.nAnswered.Load() >= s.total {
			break
		}
		began := time.Now()
		errs := make(chan error, n)
		var next atomic.Uint64
		for k, sd := range senders {
			go func() {
				var progress func(done uint64)
				if k == 0 && pass == 0 {
					last := time.Now()
					progress = func(done uint64) {
						if time.Since(last) > 200*time.Millisecond {
							env.Progress(int64(done), int64(s.total))
							last = time.Now()
						}
					}
				}
				errs <- sd.pass(ctx, pass, k == 0, &next, rate, progress)
			}()
		}
		var err error
		for range senders {
			err = cmp.Or(err, <-errs)
		}
		if err != nil {
			return err
		}
		sending := time.Since(began)
		s.sendTime += sending
		sentBefore := s.sent.Load()
		if err := s.waitReplies(ctx, resets); err != nil {
			return err
		}
		if s.p.retries > 0 {
			// The times tell whether the retries and the waits, not the
			// sending, make a scan's tail.
			env.Log(fmt.Sprintf("synscan: pass %d: %d probes sent in all, %d of %d answered; sent in %s, waited %s",
				pass+1, sentBefore, s.nAnswered.Load(), s.total, sending.Round(time.Millisecond), (time.Since(began) - sending).Round(time.Millisecond)))
		}
	}
	return nil
}

// maxBatch is the most frames one sendmmsg call sends (a sender's batch
// is a millisecond of its rate, up to this). On a veth each call runs
// the round trips of its probes, and each return to Go may have to wait
// for a P: 64 a call left a core idle 13% of the time on net20, 256 4%.
const maxBatch = 256

// sender sends a share of the probes, and the resets the receiver asks
// for.
type sender struct {
	s      *scan
	b4, b6 *batcher
}

func (s *scan) newSender(size int) *sender {
	sd := &sender{s: s}
	if s.v4 != nil {
		sd.b4 = newBatcher(s, s.v4, size)
	}
	if s.v6 != nil {
		sd.b6 = newBatcher(s, s.v6, size)
	}
	return sd
}

// claimSize is how many positions of the permutation a sender claims at
// a time: small enough that the senders finish a pass together (a sender
// sharing its core with the receiver goes slower, and a fixed share would
// leave the other core idle at the end), large enough that the shared
// counter costs nothing.
const claimSize = 1024

// pass sends the probes of the chunks of the permutation it claims from
// next, skipping those already answered after the first pass, at rate
// probes per second. The first sender also sends the resets the receiver
// queues.
func (sd *sender) pass(ctx context.Context, pass int, first bool, next *atomic.Uint64, rate int64, progress func(uint64)) error {
	s := sd.s
	lim := newLimiter(rate, len(firstBatcher(sd).frames))
	var i, end uint64
	for {
		if i == end {
			i = next.Add(claimSize) - claimSize
			if i >= s.total || i > math.MaxUint64-claimSize {
				break
			}
			end = min(i+claimSize, s.total)
		}
		idx := s.perm.At(i)
		i++
		if pass > 0 && s.answered != nil && testBit(s.answered, idx) {
			continue
		}
		addr, port := s.target(idx)
		b := sd.batcherFor(addr)
		b.addProbe(addr, port)
		if !b.full() {
			continue
		}
		if err := lim.wait(ctx, len(b.dsts)); err != nil {
			return err
		}
		if err := b.flush(); err != nil {
			return err
		}
		if first {
			if err := sd.sendResets(); err != nil {
				return err
			}
		}
		if progress != nil {
			progress(i)
		}
	}
	return sd.flush()
}

func firstBatcher(sd *sender) *batcher { return cmp.Or(sd.b4, sd.b6) }

// waitReplies waits p.wait for late replies, or less once every probe is
// answered.
func (s *scan) waitReplies(ctx context.Context, sd *sender) error {
	deadline := time.Now().Add(s.p.wait)
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for time.Now().Before(deadline) {
		if s.answered != nil && s.nAnswered.Load() >= s.total {
			// Let the ring hand over what it still holds.
			time.Sleep(5 * time.Millisecond)
			return sd.sendResets()
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-s.rxDone:
			return nil
		case <-t.C:
		}
		if err := sd.sendResets(); err != nil {
			return err
		}
	}
	return nil
}

func (sd *sender) batcherFor(a netip.Addr) *batcher {
	if a.Is4() {
		return sd.b4
	}
	return sd.b6
}

func (sd *sender) flush() error {
	for _, b := range []*batcher{sd.b4, sd.b6} {
		if b != nil {
			if err := b.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// sendResets resets the half-open connections the receiver queued.
func (sd *sender) sendResets() error {
	for {
		select {
		case r := <-sd.s.rstq:
			b := sd.batcherFor(r.target)
			f := b.frames[len(b.dsts)]
			f = f[:b.pa.tmpl.fill(f, r.target, r.tport, r.uport, r.seq+1, tcpRST)]
			b.out = append(b.out, f)
			b.dsts = append(b.dsts, r.target)
			if b.full() {
				if err := b.flush(); err != nil {
					return err
				}
			}
		default:
			return sd.flush()
		}
	}
}

// batcher collects the frames of one path for one sendmmsg call.
type batcher struct {
	s      *scan
	pa     *path
	frames [][]byte
	out    [][]byte
	dsts   []netip.Addr
	mb     mmsgBuf
}

func newBatcher(s *scan, pa *path, size int) *batcher {
	b := &batcher{s: s, pa: pa, frames: make([][]byte, size)}
	for i := range b.frames {
		b.frames[i] = make([]byte, len(pa.tmpl.frame))
	}
	return b
}

func (b *batcher) full() bool { return len(b.dsts) == len(b.frames) }

func (b *batcher) addProbe(addr netip.Addr, port uint16) {
	h := b.s.key.cookie(addr, port)
	f := b.frames[len(b.dsts)]
	f = f[:b.pa.tmpl.fill(f, addr, port, b.s.sourcePort(h), uint32(h), tcpSYN)]
	b.out = append(b.out, f)
	b.dsts = append(b.dsts, addr)
}

func (b *batcher) flush() error {
	if len(b.dsts) == 0 {
		return nil
	}
	sent, dropped, err := b.pa.tx.send(&b.mb, b.out, b.dsts)
	b.s.sent.Add(uint64(sent))
	b.s.sendDrops.Add(uint64(dropped))
	b.out, b.dsts = b.out[:0], b.dsts[:0]
	return err
}

// limiter paces probes to rate per second on an absolute schedule, so
// that a late wake-up is made up by the next batches (burst: one batch).
type limiter struct {
	rate  float64
	burst int
	start time.Time
	sent  float64
}

func newLimiter(rate int64, burst int) *limiter {
	return &limiter{rate: float64(rate), burst: burst, start: time.Now()}
}

func (l *limiter) wait(ctx context.Context, n int) error {
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	l.sent += float64(n)
	for {
		allowed := time.Since(l.start).Seconds()*l.rate + float64(l.burst)
		if l.sent <= allowed {
			return nil
		}
		d := time.Duration((l.sent - allowed) / l.rate * float64(time.Second))
		if d < 20*time.Microsecond {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(d):
		}
	}
}

func (s *scan) timeouts() uint64 {
	if s.answered != nil {
		return s.total - s.nAnswered.Load()
	}
	got := s.nOpen.Load() + s.nClosed.Load() + s.nUnreach.Load()
	if got > s.total {
		return 0
	}
	return s.total - got
}

func (s *scan) results(env scanfleet.ExecEnv, began time.Time, rxDrops uint64) {
	elapsed := time.Since(began)
	// One count per state of the closed set, at the top level where
	// `scanfleet scan` prints them.
	env.Result("open", s.nOpen.Load())
	env.Result("closed", s.nClosed.Load())
	env.Result("filtered", s.nUnreach.Load())
	env.Result("timeout", s.timeouts())
	env.Result("out-of-scope", len(s.plan.OutOfScope))
	env.Result("hosts_up", s.hostsUp.Load())
	env.Result("addresses", s.nAddr)
	env.Result("ports", s.nPorts)
	env.Result("probes", s.total)
	env.Result("probes_sent", s.sent.Load())
	env.Result("send_drops", s.sendDrops.Load())
	env.Result("packets_received", s.received.Load())
	env.Result("replies_matched", s.matched.Load())
	env.Result("replies_out_of_plan", s.outOfScope.Load())
	env.Result("replies_unmatched", s.stray.Load())
	env.Result("receive_drops", rxDrops)
	env.Result("duration_s", elapsed.Seconds())
	if s.sendTime > 0 {
		env.Result("rate_pps", float64(s.sent.Load())/s.sendTime.Seconds())
	}
}
