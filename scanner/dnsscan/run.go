package dnsscan

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"
	"golang.org/x/net/idna"
	"golang.org/x/time/rate"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
)

// scopeProbe is the label of the name that decides whether the names
// below a zone are in scope, so that a zone the scope only holds by its
// apex is not brute-forced candidate by candidate.
const scopeProbe = "_scanfleet-scope-probe"

// zone is one name of the targets and what the scope allows of it.
type zone struct {
	name      string
	apexIn    bool // the apex is in scope: its records are reported
	apexQuery bool // the apex may be asked for its nameservers
	belowIn   bool // names below the apex are in scope
}

// job is a name to resolve and how it was found.
type job struct {
	name   string
	source string
	pre    *answer // the brute force's A and AAAA answers, if any
}

// run is the state of one task.
type run struct {
	cfg     Config
	m       *scanfleet.ScopeMatcher
	limiter *rate.Limiter
	next    atomic.Uint64 // round-robin over the resolvers

	counts   scanner.Counts // queries, found, out_of_scope, …
	statuses scanner.Counts // per name resolved
	axfr     scanner.Counts // per zone transfer tried

	mu       sync.Mutex
	claimed  map[string]bool
	oosNames map[string]bool
	hosts    map[netip.Addr][]string
	addrs    map[string][]netip.Addr // name → addresses, for zone transfers
	pending  []job
	maxed    bool

	scanner.Tracker
}

func newRun(cfg Config, m *scanfleet.ScopeMatcher, env scanfleet.ExecEnv, cancel context.CancelCauseFunc) *run {
	return &run{
		cfg: cfg, m: m, Tracker: scanner.Tracker{Env: env, Cancel: cancel, Name: "dns"},
		limiter:  rate.NewLimiter(rate.Limit(cfg.Rate), 1),
		claimed:  map[string]bool{},
		oosNames: map[string]bool{},
		hosts:    map[netip.Addr][]string{},
		addrs:    map[string][]netip.Addr{},
	}
}

// result writes the task's output fields.
func (r *run) result() {
	for k, v := range r.counts.Map() {
		r.Env.Result(k, v)
	}
	for _, k := range []string{"queries", "found", "not_found", "wildcard_filtered", "out_of_scope"} {
		r.Env.Result(k, r.counts.Get(k))
	}
	r.Env.Result("statuses", r.statuses.Map())
	r.Env.Result("axfr", r.axfr.Map())
}

// plan turns targets into zones, logging and counting what it skips.
func (r *run) plan(targets []string) []*zone {
	var zones []*zone
	byName := map[string]*zone{}
	for _, t := range targets {
		name, wildcard, why := targetName(t)
		if why != "" {
			r.counts.Add("skipped", 1)
			r.Env.Log(fmt.Sprintf("dns: skip target %q: %s", t, why))
			continue
		}
		z := &zone{name: name}
		z.belowIn = r.m.Contains(scopeProbe + "." + name)
		d := r.m.Check(name)
		z.apexIn = d.In
		if wildcard {
			z.apexQuery = d.In || (z.belowIn && d.Rule == "")
		} else {
			z.apexQuery = d.In
		}
		if !z.apexIn && !(wildcard && z.belowIn) {
			r.counts.Add("out_of_scope", 1)
			r.statuses.Add(string(scanner.StatusOutOfScope), 1)
			r.Env.Log(fmt.Sprintf("dns: skip target %q: out of scope: %s", t, d.Reason))
			continue
		}
		if old := byName[name]; old != nil {
			old.apexIn = old.apexIn || z.apexIn
			old.apexQuery = old.apexQuery || z.apexQuery
			old.belowIn = old.belowIn || z.belowIn
			continue
		}
		byName[name] = z
		zones = append(zones, z)
	}
	return zones
}

// targetName returns the name a target stands for, whether it was a
// wildcard, or why it is not a name.
func targetName(t string) (name string, wildcard bool, why string) {
	t = strings.TrimSpace(t)
	if rest, ok := strings.CutPrefix(t, "*."); ok {
		t, wildcard = rest, true
	}
	host, err := scanfleet.TargetHost(t)
	if err != nil {
		return "", false, err.Error()
	}
	if _, err := netip.ParsePrefix(host); err == nil {
		return "", false, "a prefix is not a name"
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return "", false, "an address is not a name"
	}
	name = strings.TrimSuffix(strings.ToLower(host), ".")
	if ascii, err := idna.Lookup.ToASCII(name); err == nil {
		name = ascii
	}
	if len(name) > 253 || !validWord(name) {
		return "", false, "not a domain name"
	}
	return name, wildcard, ""
}

// scanZone resolves a zone's apex, brute-forces below it, resolves what
// those answers point to, and tries zone transfers.
func (r *run) scanZone(ctx context.Context, z *zone) {
	var nsNames []string
	if z.apexIn && r.claim(z.name) {
		r.AddTotal(1)
		if a := r.resolve(ctx, job{name: z.name, source: "target"}); a != nil {
			nsNames = a.ns
		}
	} else if z.apexQuery && r.cfg.AXFR {
		// Only the nameservers, for the transfer: the apex's own records
		// are not the workspace's.
		if msg, err := r.query(ctx, z.name, dns.TypeNS); err == nil {
			nsNames = parseAnswer(z.name, msg).ns
			for _, ns := range nsNames {
				r.discover(ns, "ns")
			}
		} else {
			r.fail(ctx, z.name, err)
		}
	}
	if r.cfg.Brute && z.belowIn && ctx.Err() == nil {
		r.brute(ctx, z)
	}
	r.drain(ctx)
	if r.cfg.AXFR && z.apexQuery && ctx.Err() == nil {
		r.transferZone(ctx, z, nsNames)
		r.drain(ctx)
	}
}

// brute tries every word below the zone, after learning the zone's
// wildcard answers from random labels.
func (r *run) brute(ctx context.Context, z *zone) {
	wild := r.wildcard(ctx, z.name)
	var cands []string
	for _, w := range r.cfg.Words {
		name := w + "." + z.name
		if !r.m.Contains(name) {
			r.outOfScope(name)
			continue
		}
		if !r.isClaimed(name) {
			cands = append(cands, name)
		}
	}
	r.AddTotal(int64(len(cands)))
	scanner.Each(ctx, r.cfg.Concurrency, slices.Values(cands), func(name string) {
		defer r.Step()
		a, err := r.lookupAddrs(ctx, name)
		if err != nil {
			r.fail(ctx, name, err)
			return
		}
		if !a.found() {
			r.counts.Add("not_found", 1)
			r.statuses.Add(string(scanner.StatusNameNotFound), 1)
			return
		}
		if len(wild) > 0 && a.within(wild) {
			r.counts.Add("wildcard_filtered", 1)
			r.statuses.Add(string(scanner.StatusNameNotFound), 1)
			return
		}
		if r.claim(name) {
			r.resolve(ctx, job{name: name, source: "brute", pre: a})
		}
	})
}

// wildcard resolves a few random labels below the zone and returns the
// answers they got: the zone's wildcard, empty when it has none.
func (r *run) wildcard(ctx context.Context, zone string) map[string]bool {
	sigs := map[string]bool{}
	for range 3 {
		name := randomLabel() + "." + zone
		if !r.m.Contains(name) {
			continue
		}
		a, err := r.lookupAddrs(ctx, name)
		if err != nil {
			continue
		}
		for s := range a.signature() {
			sigs[s] = true
		}
	}
	if len(sigs) > 0 {
		keys := make([]string, 0, len(sigs))
		for s := range sigs {
			keys = append(keys, s)
		}
		slices.Sort(keys)
		r.Env.Log(fmt.Sprintf("dns: %s has a wildcard (%s); names answering only that are not reported", zone, strings.Join(keys, ", ")))
	}
	return sigs
}

func randomLabel() string {
	const letters = "abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return "wc-" + string(b)
}

// drain resolves the names that answers pointed to until none is left.
func (r *run) drain(ctx context.Context) {
	for ctx.Err() == nil {
		r.mu.Lock()
		jobs := r.pending
		r.pending = nil
		r.mu.Unlock()
		if len(jobs) == 0 {
			return
		}
		scanner.Each(ctx, r.cfg.Concurrency, slices.Values(jobs), func(j job) { r.resolve(ctx, j) })
	}
}

// resolve looks a claimed name up, reports it, and counts how it ended.
func (r *run) resolve(ctx context.Context, j job) *answer {
	if j.pre == nil {
		defer r.Step()
	}
	a, err := r.lookup(ctx, j)
	if err != nil {
		r.fail(ctx, j.name, err)
		return nil
	}
	if !a.found() {
		r.counts.Add("not_found", 1)
		r.statuses.Add(string(scanner.StatusNameNotFound), 1)
		return a
	}
	r.report(ctx, a, j.source)
	return a
}

// lookup queries every type of a name: A and AAAA (unless the brute
// force already did), then MX, NS and TXT unless the name is an alias.
func (r *run) lookup(ctx context.Context, j job) (*answer, error) {
	a := j.pre
	if a == nil {
		var err error
		if a, err = r.lookupAddrs(ctx, j.name); err != nil {
			return nil, err
		}
	}
	if !a.exists || a.cname != "" {
		return a, nil
	}
	for _, qt := range []uint16{dns.TypeMX, dns.TypeNS, dns.TypeTXT} {
		msg, err := r.query(ctx, j.name, qt)
		if err != nil {
			return nil, err
		}
		a.merge(parseAnswer(j.name, msg))
	}
	return a, nil
}

// lookupAddrs queries A, then AAAA unless the name does not exist.
func (r *run) lookupAddrs(ctx context.Context, name string) (*answer, error) {
	msg, err := r.query(ctx, name, dns.TypeA)
	if err != nil {
		return nil, err
	}
	a := parseAnswer(name, msg)
	if !a.exists {
		return a, nil
	}
	msg, err = r.query(ctx, name, dns.TypeAAAA)
	if err != nil {
		return nil, err
	}
	a.merge(parseAnswer(name, msg))
	return a, nil
}

// query sends one question, retrying against the next resolver after a
// failure, over TCP when the answer was truncated.
func (r *run) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.SetEdns0(1232, false)
	var last error
	for range r.cfg.Retries + 1 {
		server := r.cfg.Resolvers[int(r.next.Add(1)-1)%len(r.cfg.Resolvers)]
		resp, err := r.exchange(ctx, q, server, "udp")
		if err == nil && resp.Truncated {
			resp, err = r.exchange(ctx, q, server, "tcp")
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if err == nil {
			switch resp.Rcode {
			case dns.RcodeSuccess, dns.RcodeNameError:
				return resp, nil
			}
			err = scanner.WithStatus(scanner.StatusApplicationError, fmt.Errorf("%s answered %s", server, dns.RcodeToString[resp.Rcode]))
		}
		last = err
	}
	return nil, last
}

// exchange sends q to server once, waiting for the rate limiter first.
// The connection is closed when ctx is cancelled, so that a query never
// outlives its task by its timeout.
func (r *run) exchange(ctx context.Context, q *dns.Msg, server, network string) (*dns.Msg, error) {
	if err := r.limiter.Wait(ctx); err != nil {
		return nil, err
	}
	r.counts.Add("queries", 1)
	c := &dns.Client{Net: network, Timeout: r.cfg.Timeout}
	conn, err := c.DialContext(ctx, server)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, q, conn)
	return resp, classify(err)
}

// classify gives a miekg/dns error the status its type does not carry.
func classify(err error) error {
	if err == nil || scanner.StatusOf(err) != scanner.StatusUnknownError {
		return err
	}
	var de *dns.Error
	if errors.As(err, &de) {
		if strings.Contains(de.Error(), "rcode") {
			return scanner.WithStatus(scanner.StatusApplicationError, err)
		}
		return scanner.WithStatus(scanner.StatusProtocolError, err)
	}
	return err
}

// report emits a found name's domain record and host records for its
// in-scope addresses, and queues the in-scope names it points to.
func (r *run) report(ctx context.Context, a *answer, source string) {
	r.counts.Add("found", 1)
	r.statuses.Add(string(scanner.StatusSuccess), 1)
	rec := map[string]any{"kind": "domain", "name": a.name, "source": source}
	var ips, oos []any
	var inScope []netip.Addr
	for _, ip := range a.ips {
		ips = append(ips, ip.String())
		if r.m.Contains(ip.String()) {
			inScope = append(inScope, ip)
		} else {
			oos = append(oos, ip.String())
		}
	}
	if len(ips) > 0 {
		rec["ips"] = ips
	}
	if a.cname != "" {
		rec["cname"] = a.cname
		if len(a.chain) > 1 {
			rec["cname_chain"] = anyList(a.chain)
		}
	}
	for k, v := range map[string][]string{"mx": a.mx, "ns": a.ns, "txt": a.txt} {
		if len(v) > 0 {
			rec[k] = anyList(v)
		}
	}
	if len(oos) > 0 {
		rec["out_of_scope"] = true
		rec["out_of_scope_ips"] = oos
		r.counts.Add("out_of_scope_ips", int64(len(oos)))
		r.Env.Log(fmt.Sprintf("dns: %s resolves to %d address(es) outside the scope; recorded, not expanded", a.name, len(oos)))
	}
	r.mu.Lock()
	r.addrs[a.name] = a.ips
	r.mu.Unlock()
	if !r.Emit(ctx, rec) {
		return
	}
	for _, ip := range inScope {
		r.mu.Lock()
		names := r.hosts[ip]
		added := !slices.Contains(names, a.name)
		if added {
			names = append(names, a.name)
			r.hosts[ip] = names
		}
		hostnames := anyList(names)
		r.mu.Unlock()
		if added && !r.Emit(ctx, map[string]any{"kind": "host", "ip": ip.String(), "hostnames": hostnames}) {
			return
		}
	}
	for _, n := range a.chain {
		r.discover(n, "cname")
	}
	for _, n := range a.mx {
		r.discover(n, "mx")
	}
	for _, n := range a.ns {
		r.discover(n, "ns")
	}
}

// discover queues a name an answer pointed to, if the scope holds it.
func (r *run) discover(name, source string) {
	if name == "" {
		return
	}
	if !r.m.Contains(name) {
		r.outOfScope(name)
		return
	}
	if r.claim(name) {
		r.AddTotal(1)
		r.mu.Lock()
		r.pending = append(r.pending, job{name: name, source: source})
		r.mu.Unlock()
	}
}

// outOfScope counts a name that is not queried, once.
func (r *run) outOfScope(name string) {
	r.mu.Lock()
	seen := r.oosNames[name]
	r.oosNames[name] = true
	r.mu.Unlock()
	if !seen {
		r.counts.Add("out_of_scope", 1)
	}
}

// claim marks a name as resolved by this task; false if it already was,
// or if the task reached MaxNames.
func (r *run) claim(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.claimed[name] {
		return false
	}
	if len(r.claimed) >= r.cfg.MaxNames {
		if !r.maxed {
			r.maxed = true
			r.Env.Log(fmt.Sprintf("dns: reached max_names (%d); further names are not resolved", r.cfg.MaxNames))
		}
		r.counts.Add("skipped_max_names", 1)
		return false
	}
	r.claimed[name] = true
	return true
}

func (r *run) isClaimed(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.claimed[name]
}

// fail counts a name whose resolution failed and logs the first few.
func (r *run) fail(ctx context.Context, name string, err error) {
	if ctx.Err() != nil {
		return // the task was cancelled: not the name's failure
	}
	st := scanner.StatusOf(err)
	r.statuses.Add(string(st), 1)
	r.Fail(fmt.Sprintf("dns: %s: %s: %v", name, st, err))
}

// transferZone asks each in-scope address of each in-scope nameserver of
// the zone for a transfer, reports the names it gets and flags a server
// that allowed it.
func (r *run) transferZone(ctx context.Context, z *zone, nsNames []string) {
	if len(nsNames) == 0 {
		r.Env.Log(fmt.Sprintf("dns: axfr %s: no NS records", z.name))
		return
	}
	for _, ns := range nsNames {
		if ctx.Err() != nil {
			return
		}
		if d := r.m.Check(ns); !d.In {
			r.axfr.Add(string(scanner.StatusOutOfScope), 1)
			r.Env.Log(fmt.Sprintf("dns: axfr %s: nameserver %s not tried: %s", z.name, ns, d.Reason))
			continue
		}
		r.mu.Lock()
		addrs := r.addrs[ns]
		r.mu.Unlock()
		if len(addrs) == 0 {
			r.Env.Log(fmt.Sprintf("dns: axfr %s: nameserver %s has no address", z.name, ns))
			continue
		}
		for _, ip := range addrs {
			if d := r.m.Check(ip.String()); !d.In {
				r.axfr.Add(string(scanner.StatusOutOfScope), 1)
				r.Env.Log(fmt.Sprintf("dns: axfr %s: nameserver %s at %s not tried: %s", z.name, ns, ip, d.Reason))
				continue
			}
			r.transfer(ctx, z, ns, ip)
		}
	}
}

// transfer runs one zone transfer and reports what it got.
func (r *run) transfer(ctx context.Context, z *zone, ns string, ip netip.Addr) {
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(r.cfg.AXFRPort))
	rrs, err := r.axfrIn(ctx, z.name, addr)
	if ctx.Err() != nil {
		return
	}
	st := scanner.StatusOf(err)
	r.axfr.Add(string(st), 1)
	if err != nil {
		r.Env.Log(fmt.Sprintf("dns: axfr %s from %s (%s): %s: %v", z.name, ns, addr, st, err))
		return
	}
	r.Env.Log(fmt.Sprintf("dns: axfr %s from %s (%s): %d records", z.name, ns, addr, len(rrs)))
	r.Emit(ctx, map[string]any{
		"kind": "finding", "name": "dns-zone-transfer-allowed", "severity": "medium",
		"ip": ip.String(), "port": r.cfg.AXFRPort, "proto": "tcp", "host_name": ns, "zone": z.name,
		"description": fmt.Sprintf("Nameserver %s (%s) transferred the whole zone %s (%d records) to an unauthenticated client.", ns, addr, z.name, len(rrs)),
	})
	for _, a := range answersFromZone(rrs) {
		if ctx.Err() != nil {
			return
		}
		if !r.m.Contains(a.name) {
			r.outOfScope(a.name)
			continue
		}
		if !r.claim(a.name) {
			continue
		}
		r.AddTotal(1)
		r.Step()
		if a.found() {
			r.report(ctx, a, "axfr")
		}
	}
}

// axfrIn receives one zone transfer. The connection is closed when ctx is
// cancelled; the transfer's goroutine always ends, since its channel is
// read until it closes.
func (r *run) axfrIn(ctx context.Context, zone, addr string) ([]dns.RR, error) {
	if err := r.limiter.Wait(ctx); err != nil {
		return nil, err
	}
	r.counts.Add("queries", 1)
	d := net.Dialer{Timeout: r.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	t := &dns.Transfer{Conn: &dns.Conn{Conn: conn}, ReadTimeout: r.cfg.Timeout, WriteTimeout: r.cfg.Timeout}
	q := new(dns.Msg)
	q.SetAxfr(dns.Fqdn(zone))
	ch, err := t.In(q, addr)
	if err != nil {
		return nil, classify(err)
	}
	var rrs []dns.RR
	var first error
	for env := range ch {
		switch {
		case env.Error != nil:
			if first == nil {
				first = classify(env.Error)
			}
		case len(rrs)+len(env.RR) > maxAXFRRecords:
			if first == nil {
				first = scanner.WithStatus(scanner.StatusProtocolError, fmt.Errorf("more than %d records", maxAXFRRecords))
			}
			conn.Close() // the transfer's goroutine ends on the read error
		default:
			rrs = append(rrs, env.RR...)
		}
	}
	if first != nil {
		return nil, first
	}
	return rrs, nil
}

func anyList(xs []string) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}
