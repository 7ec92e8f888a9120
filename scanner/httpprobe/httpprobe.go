package httpprobe

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
)

// TypeName is the name of the task type.
const TypeName = "http"

// userAgent names the prober, so that a target's operator can tell.
const userAgent = "scanfleet-httpprobe/1"

func ptr[T any](v T) *T { return &v }

// TaskType describes http tasks: no requirements, so they run in the
// external pool.
func TaskType() *scanfleet.TaskType {
	return &scanfleet.TaskType{
		Name:        TypeName,
		Description: "Requests each target over HTTP(S), follows redirects within the scope, and records status, title, server and a technology guess.",
		Params: []scanfleet.Param{
			{Name: "schemes", Type: scanfleet.ParamList, Default: []string{"https", "http"}, Description: "Schemes tried in order for targets without one."},
			{Name: "all_schemes", Type: scanfleet.ParamBoolean, Default: false, Description: "Try every scheme even after one answered."},
			{Name: "max_redirects", Type: scanfleet.ParamInteger, Default: 5, Min: ptr[int64](0), Max: ptr[int64](50), Description: "Redirects followed per target."},
			{Name: "timeout", Type: scanfleet.ParamDuration, Default: "10s", Description: "How long one request may take, body included."},
			{Name: "max_body", Type: scanfleet.ParamInteger, Default: 1 << 20, Min: ptr[int64](0), Max: ptr[int64](64 << 20), Description: "Bytes of a response body read."},
			{Name: "concurrency", Type: scanfleet.ParamInteger, Default: 20, Min: ptr[int64](1), Max: ptr[int64](1000), Description: "Targets probed at once."},
			{Name: "rate", Type: scanfleet.ParamInteger, Default: 50, Min: ptr[int64](1), Max: ptr[int64](100_000), Description: "Requests started per second."},
		},
	}
}

// Config is how one http task runs.
type Config struct {
	// Schemes are tried in order for targets without one. Default https,
	// then http.
	Schemes []string
	// AllSchemes tries every scheme. Default false.
	AllSchemes bool
	// MaxRedirects bounds the redirects followed. Default 0: none; the
	// task type's default is 5.
	MaxRedirects int
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration
	// MaxBody bounds the bytes of a body read. Default 1 MiB.
	MaxBody int64
	// Concurrency is the most targets probed at once. Default 20.
	Concurrency int
	// Rate is the most requests started per second. Default 50.
	Rate int
}

// WithDefaults returns c with its zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if len(c.Schemes) == 0 {
		c.Schemes = []string{"https", "http"}
	}
	c.Timeout = cmp.Or(c.Timeout, 10*time.Second)
	c.MaxBody = cmp.Or(c.MaxBody, 1<<20)
	c.Concurrency = cmp.Or(c.Concurrency, 20)
	c.Rate = cmp.Or(c.Rate, 50)
	return c
}

func (c Config) validate() error {
	for i, s := range c.Schemes {
		if s != "http" && s != "https" {
			return scanfleet.Errorf(scanfleet.EINVALID, "args.schemes[%d]: %q is not http or https", i, s)
		}
	}
	return nil
}

// Executor runs http tasks.
type Executor struct {
	// Resolver resolves target names; default net.DefaultResolver.
	Resolver scanner.Resolver
}

var _ scanfleet.Executor = Executor{}

// TaskType returns TaskType().
func (Executor) TaskType() *scanfleet.TaskType { return TaskType() }

func config(args scanner.Args) (Config, error) {
	c := Config{
		AllSchemes:   args.Bool("all_schemes"),
		MaxRedirects: int(args.Int("max_redirects")),
		Timeout:      args.Duration("timeout"),
		MaxBody:      args.Int("max_body"),
		Concurrency:  int(args.Int("concurrency")),
		Rate:         int(args.Int("rate")),
	}
	for _, s := range args.List("schemes") {
		s = strings.ToLower(strings.TrimSpace(s))
		if !slices.Contains(c.Schemes, s) {
			c.Schemes = append(c.Schemes, s)
		}
	}
	if _, ok := args["max_body"]; ok && c.MaxBody == 0 {
		c.MaxBody = -1 // read no body: WithDefaults keeps it
	}
	c = c.WithDefaults()
	if c.MaxBody < 0 {
		c.MaxBody = 0
	}
	return c, c.validate()
}

// probe is one target's list of URLs to try, in order.
type probe struct {
	target string
	urls   []string
}

// run is the state of one task.
type run struct {
	cfg     Config
	m       *scanfleet.ScopeMatcher
	client  *http.Client
	limiter *rate.Limiter

	counts   scanner.Counts
	statuses scanner.Counts
	codes    scanner.Counts

	scanner.Tracker
}

// Run probes every target of in.
func (e Executor) Run(ctx context.Context, in *scanfleet.TaskInput, env scanfleet.ExecEnv) error {
	cfg, m, err := scanner.Setup(TaskType(), in, config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	dialer := &scanner.Dialer{Matcher: m, Resolver: e.Resolver, Timeout: cfg.Timeout}
	transport := &http.Transport{
		Proxy:       nil, // never an environment's proxy: the scope is about the target
		DialContext: dialer.DialContext,
		TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, // a probe records what answers; tlsscan judges certificates
			MinVersion:         tls.VersionTLS10,
		},
		DisableKeepAlives:      true,
		TLSHandshakeTimeout:    cfg.Timeout,
		ResponseHeaderTimeout:  cfg.Timeout,
		MaxResponseHeaderBytes: 64 << 10,
		DisableCompression:     true, // max_body bounds bytes on the wire
	}
	defer transport.CloseIdleConnections()
	r := &run{
		cfg: cfg, m: m, Tracker: scanner.Tracker{Env: env, Cancel: cancel, Name: "http"},
		client: &http.Client{
			Transport:     transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		limiter: rate.NewLimiter(rate.Limit(cfg.Rate), 1),
	}
	defer r.result()
	targets := r.plan(in.Targets)
	env.Log(fmt.Sprintf("http: %d targets, schemes %s, max_redirects %d", r.Total(), strings.Join(cfg.Schemes, ","), cfg.MaxRedirects))
	scanner.Each(ctx, cfg.Concurrency, r.probes(targets), func(p probe) {
		r.probe(ctx, p)
		r.Step()
	})
	if err := r.Finish(ctx); err != nil {
		return err
	}
	env.Log(fmt.Sprintf("http: done: %d responses", r.counts.Get("responses")))
	return nil
}

func (r *run) result() {
	for _, k := range []string{"targets", "responses", "out_of_scope", "skipped"} {
		r.Env.Result(k, r.counts.Get(k))
	}
	r.Env.Result("statuses", r.statuses.Map())
	r.Env.Result("status_codes", r.codes.Map())
}

// target is one parsed target.
type target struct {
	raw    string
	url    string // an http(s) URL target, as given
	host   string // a name or address without scheme
	port   int    // 0: each scheme's default
	prefix netip.Prefix
}

// parseTarget reads an http(s) URL, "host", "host:port", "[v6]:port" or a
// CIDR prefix.
func parseTarget(s string) (target, error) {
	t := target{raw: s}
	s = strings.TrimSpace(s)
	switch {
	case s == "":
		return t, fmt.Errorf("empty target")
	case strings.Contains(s, "://"):
		u, err := scanfleet.NormalizeURL(s)
		if err != nil {
			return t, fmt.Errorf("URL %v", err)
		}
		t.url = u
		return t, nil
	}
	var err error
	if t.host, t.port, t.prefix, err = scanner.SplitTarget(s); err != nil || t.prefix.IsValid() {
		return t, err
	}
	// The URL a host makes must be one the inventory can hold.
	if _, err := scanfleet.NormalizeURL("http://" + hostPort(t.host, t.port) + "/"); err != nil {
		return t, fmt.Errorf("%q is not a host: it %v", t.host, err)
	}
	return t, nil
}

// hostPort joins a host and a port (0: none), bracketing IPv6.
func hostPort(host string, port int) string {
	if port == 0 {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// plan parses the targets, clips prefixes to the scope and counts the
// probes; what it refuses is logged and counted.
func (r *run) plan(raw []string) []target {
	var out []target
	var total int64
	defer func() { r.SetTotal(total) }()
	for _, s := range raw {
		t, err := parseTarget(s)
		if err != nil {
			r.counts.Add("skipped", 1)
			r.Env.Log(fmt.Sprintf("http: skip target %q: %v", s, err))
			continue
		}
		if !t.prefix.IsValid() {
			total++
			out = append(out, t)
			continue
		}
		clipped := r.m.Clip(t.prefix)
		if len(clipped) == 0 {
			r.outOfScope(s, r.m.Check(t.prefix.String()).Reason)
			continue
		}
		for _, p := range clipped {
			if bits := p.Addr().BitLen() - p.Bits(); bits >= 40 {
				total = 1<<63 - 1
			} else if total < 1<<62 {
				total += 1 << bits
			}
			out = append(out, target{raw: s, prefix: p})
		}
	}
	return out
}

// probes yields the probe of every target, addresses of prefixes one by
// one.
func (r *run) probes(targets []target) iter.Seq[probe] {
	return func(yield func(probe) bool) {
		for _, t := range targets {
			if t.url != "" {
				if !yield(probe{target: t.raw, urls: []string{t.url}}) {
					return
				}
				continue
			}
			for h := range scanner.Hosts(t.host, t.prefix) {
				p := probe{target: t.raw}
				for _, s := range r.cfg.Schemes {
					p.urls = append(p.urls, s+"://"+hostPort(h, t.port)+"/")
				}
				if !yield(p) {
					return
				}
			}
		}
	}
}

// probe tries a target's URLs in turn and counts how it ended.
func (r *run) probe(ctx context.Context, p probe) {
	r.counts.Add("targets", 1)
	var errs []error
	answered := false
	for _, u := range p.urls {
		err := r.chain(ctx, u)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			answered = true
			if !r.cfg.AllSchemes {
				break
			}
			continue
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, err))
	}
	if answered {
		r.statuses.Add(string(scanner.StatusSuccess), 1)
		return
	}
	// The status of the last scheme tried: with https then http, a plain
	// HTTP server is a protocol error for https but answers http.
	err := errs[len(errs)-1]
	st := scanner.StatusOf(err)
	r.statuses.Add(string(st), 1)
	if st == scanner.StatusOutOfScope {
		r.outOfScope(p.target, err.Error())
		return
	}
	r.Fail(fmt.Sprintf("http: %s: %s: %v", p.target, st, errors.Join(errs...)))
}

// response is what one request got.
type response struct {
	url      string
	rec      map[string]any
	location string // a redirect's target, resolved against url
}

// chain fetches u and follows its redirects, emitting a record per URL
// fetched. The error is the first request's; a later hop that fails ends
// the chain with a log line.
func (r *run) chain(ctx context.Context, start string) error {
	var hops []*response
	seen := map[string]bool{start: true}
	cur := start
	for {
		resp, err := r.fetch(ctx, cur)
		if err != nil {
			if len(hops) == 0 {
				return err
			}
			if ctx.Err() == nil {
				r.Fail(fmt.Sprintf("http: %s: redirect to %s: %s: %v", start, cur, scanner.StatusOf(err), err))
			}
			break
		}
		hops = append(hops, resp)
		if resp.location == "" {
			break
		}
		next, stop := r.nextHop(resp.location, seen, len(hops))
		if stop != "" {
			resp.rec[stop] = true
			if stop == "redirect_out_of_scope" {
				r.counts.Add("out_of_scope", 1)
				r.Env.Log(fmt.Sprintf("http: %s redirects to %s, outside the scope; not followed", cur, resp.location))
			}
			break
		}
		seen[next] = true
		cur = next
	}
	if len(hops) > 1 {
		var urls []any
		for _, h := range hops {
			urls = append(urls, h.url)
		}
		hops[0].rec["redirect_chain"] = urls
		hops[0].rec["final_url"] = hops[len(hops)-1].url
	}
	for _, h := range hops {
		if !r.Emit(ctx, h.rec) {
			break
		}
	}
	return nil
}

// nextHop decides whether a redirect is followed: it returns the URL to
// fetch, or the record field that says why not.
func (r *run) nextHop(location string, seen map[string]bool, hops int) (string, string) {
	next, err := scanfleet.NormalizeURL(location)
	if err != nil {
		return "", "redirect_not_followed"
	}
	u, _ := url.Parse(next)
	host := u.Hostname()
	inScope := r.m.Contains(host)
	if a, err := netip.ParseAddr(host); err == nil {
		inScope = r.m.Contains(a.Unmap().String())
	}
	switch {
	case !inScope:
		return "", "redirect_out_of_scope"
	case seen[next]:
		return "", "redirect_loop"
	case hops > r.cfg.MaxRedirects:
		return "", "redirect_limit"
	}
	return next, ""
}

// fetch requests one URL and reads at most MaxBody bytes of the body.
func (r *run) fetch(ctx context.Context, u string) (*response, error) {
	if err := r.limiter.Wait(ctx); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	var remote net.Addr
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { remote = info.Conn.RemoteAddr() },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, scanner.WithStatus(scanner.StatusUnknownError, err)
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "*/*")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, classify(err)
	}
	defer resp.Body.Close()
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, r.cfg.MaxBody+1))
	truncated := int64(len(body)) > r.cfg.MaxBody
	if truncated {
		body = body[:r.cfg.MaxBody]
	}
	r.counts.Add("responses", 1)
	r.codes.Add(strconv.Itoa(resp.StatusCode), 1)

	rec := map[string]any{
		"kind": "http", "url": u, "scheme": req.URL.Scheme, "tls": resp.TLS != nil,
		"status_code": resp.StatusCode, "body_bytes": len(body),
	}
	if ap, err := netip.ParseAddrPort(fmt.Sprint(remote)); err == nil {
		rec["ip"] = ap.Addr().Unmap().String()
		rec["port"] = int(ap.Port())
	}
	if truncated {
		rec["body_truncated"] = true
	}
	if readErr != nil {
		rec["body_error"] = string(scanner.StatusOf(classify(readErr)))
	}
	if v := resp.Header.Get("Server"); v != "" {
		rec["server"] = clean(v)
	}
	if v := resp.Header.Get("Content-Type"); v != "" {
		rec["content_type"] = clean(v)
	}
	if resp.ContentLength >= 0 {
		rec["content_length"] = resp.ContentLength
	}
	var generator string
	if isHTML(resp.Header.Get("Content-Type"), body) {
		var title string
		title, generator = parseHTML(body)
		if title != "" {
			rec["title"] = title
		}
		if generator != "" {
			rec["generator"] = generator
		}
	}
	if techs := guessTech(resp.Header, body, generator); len(techs) > 0 {
		rec["technologies"] = anyList(techs)
	}
	out := &response{url: u, rec: rec}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		if loc := resp.Header.Get("Location"); loc != "" {
			if next, err := req.URL.Parse(loc); err == nil {
				out.location = next.String()
				rec["location"] = out.location
			}
		}
	}
	return out, nil
}

// isHTML reports whether a body is HTML by its type, or by its start when
// the server names no type.
func isHTML(contentType string, body []byte) bool {
	if contentType == "" {
		contentType = http.DetectContentType(body)
	}
	return strings.Contains(strings.ToLower(contentType), "html")
}

// classify gives a client error the status its type does not carry: a
// malformed response is a protocol error.
func classify(err error) error {
	if err == nil || scanner.StatusOf(err) != scanner.StatusUnknownError {
		return err
	}
	msg := err.Error()
	if strings.Contains(msg, "malformed HTTP") || strings.Contains(msg, "server gave HTTP response to HTTPS client") ||
		strings.Contains(msg, "tls:") || strings.Contains(msg, "HTTP/1.x transport connection broken") {
		return scanner.WithStatus(scanner.StatusProtocolError, err)
	}
	return err
}

func (r *run) outOfScope(target, reason string) {
	r.counts.Add("out_of_scope", 1)
	r.Env.Log(fmt.Sprintf("http: skip %q: out of scope: %s", target, reason))
}

func anyList(xs []string) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}
