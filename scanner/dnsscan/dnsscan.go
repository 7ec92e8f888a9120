package dnsscan

import (
	"bufio"
	"cmp"
	"context"
	_ "embed"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
)

// TypeName is the name of the task type.
const TypeName = "dns"

//go:embed words.txt
var builtinWords string

// Limits on outside input: a word list file, and one zone transfer.
const (
	maxWordlistBytes = 16 << 20
	maxWords         = 1_000_000
	maxAXFRRecords   = 1_000_000
)

func ptr[T any](v T) *T { return &v }

// TaskType describes dns tasks: no requirements, so they run in the
// external pool.
func TaskType() *scanfleet.TaskType {
	return &scanfleet.TaskType{
		Name:        TypeName,
		Description: "Resolves the scope's names (A, AAAA, CNAME, MX, NS, TXT), brute-forces subdomains with wildcard detection and tries zone transfers.",
		Params: []scanfleet.Param{
			{Name: "resolvers", Type: scanfleet.ParamList, Description: "DNS servers to query, as address or address:port: in the workspace's scope, or among the worker's own; default the nameservers of /etc/resolv.conf."},
			{Name: "rate", Type: scanfleet.ParamInteger, Default: 50, Min: ptr[int64](1), Max: ptr[int64](100_000), Description: "Queries per second over all resolvers."},
			{Name: "timeout", Type: scanfleet.ParamDuration, Default: "2s", Description: "How long one query waits for its answer."},
			{Name: "retries", Type: scanfleet.ParamInteger, Default: 2, Min: ptr[int64](0), Max: ptr[int64](10), Description: "Further tries of a query that timed out or failed, each against the next resolver."},
			{Name: "concurrency", Type: scanfleet.ParamInteger, Default: 10, Min: ptr[int64](1), Max: ptr[int64](1000), Description: "Queries in flight at once."},
			{Name: "brute", Type: scanfleet.ParamBoolean, Default: true, Description: "Brute-force subdomains from the word list, with wildcard detection."},
			{Name: "wordlist", Type: scanfleet.ParamList, Description: "Labels to brute-force instead of the built-in list of about 500."},
			{Name: "wordlist_file", Type: scanfleet.ParamString, Description: "A file on the worker with one label a line, tried instead of the built-in list."},
			{Name: "axfr", Type: scanfleet.ParamBoolean, Default: true, Description: "Ask each in-scope nameserver of each zone for a zone transfer."},
			{Name: "axfr_port", Type: scanfleet.ParamInteger, Default: 53, Min: ptr[int64](1), Max: ptr[int64](65535), Description: "The port nameservers are asked for a zone transfer on."},
			{Name: "max_names", Type: scanfleet.ParamInteger, Default: 100_000, Min: ptr[int64](1), Max: ptr[int64](10_000_000), Description: "The most names one task resolves and reports."},
		},
	}
}

// Config is how one dns task runs.
type Config struct {
	// Resolvers are the servers queried in turn, as host:port. Default:
	// the nameservers of ResolvConf.
	Resolvers []string
	// ResolvConf is read for Resolvers when none are given. Default
	// /etc/resolv.conf.
	ResolvConf string
	// Rate is the most queries sent per second. Default 50.
	Rate int
	// Timeout bounds one query. Default 2s.
	Timeout time.Duration
	// Retries is how often a failed query is tried again. Default 0; the
	// task type's default is 2.
	Retries int
	// Concurrency is the most queries in flight. Default 10.
	Concurrency int
	// Brute enables the subdomain brute force. Default false; the task
	// type's default is true.
	Brute bool
	// Words are the labels of the brute force. Default the built-in list.
	Words []string
	// AXFR enables zone transfers. Default false; the task type's default
	// is true.
	AXFR bool
	// AXFRPort is the port of zone transfers. Default 53.
	AXFRPort int
	// MaxNames bounds the names resolved. Default 100000.
	MaxNames int
}

// WithDefaults returns c with its zero fields set to their defaults; it
// reads ResolvConf when no resolver is given.
func (c Config) WithDefaults() (Config, error) {
	c.ResolvConf = cmp.Or(c.ResolvConf, "/etc/resolv.conf")
	c.Rate = cmp.Or(c.Rate, 50)
	c.Timeout = cmp.Or(c.Timeout, 2*time.Second)
	c.Concurrency = cmp.Or(c.Concurrency, 10)
	c.AXFRPort = cmp.Or(c.AXFRPort, 53)
	c.MaxNames = cmp.Or(c.MaxNames, 100_000)
	if len(c.Words) == 0 {
		c.Words, _ = parseWordlist(strings.NewReader(builtinWords))
	}
	if len(c.Resolvers) == 0 {
		cc, err := dns.ClientConfigFromFile(c.ResolvConf)
		if err != nil {
			return c, scanfleet.Errorf(scanfleet.EINVALID, "resolvers: none given, and %s: %v", c.ResolvConf, err)
		}
		for _, s := range cc.Servers {
			c.Resolvers = append(c.Resolvers, net.JoinHostPort(s, cmp.Or(cc.Port, "53")))
		}
		if len(c.Resolvers) == 0 {
			return c, scanfleet.Errorf(scanfleet.EINVALID, "resolvers: none given, and %s lists none", c.ResolvConf)
		}
	}
	return c, c.validate()
}

func (c Config) validate() error {
	for i, r := range c.Resolvers {
		host, port, err := net.SplitHostPort(r)
		if _, perr := strconv.ParseUint(port, 10, 16); err != nil || host == "" || perr != nil || port == "0" {
			return scanfleet.Errorf(scanfleet.EINVALID, "args.resolvers[%d]: %q is not host:port", i, r)
		}
	}
	switch {
	case c.Rate < 1:
		return scanfleet.Errorf(scanfleet.EINVALID, "args.rate: must be at least 1")
	case c.Retries < 0:
		return scanfleet.Errorf(scanfleet.EINVALID, "args.retries: must not be negative")
	case c.Concurrency < 1:
		return scanfleet.Errorf(scanfleet.EINVALID, "args.concurrency: must be at least 1")
	case c.AXFRPort < 1 || c.AXFRPort > 65535:
		return scanfleet.Errorf(scanfleet.EINVALID, "args.axfr_port: must be a port between 1 and 65535")
	}
	return nil
}

// Executor runs dns tasks.
type Executor struct {
	// ResolvConf is where the default resolvers are read; default
	// /etc/resolv.conf.
	ResolvConf string
	// Trusted are resolvers, besides ResolvConf's, that a task may name
	// although they are outside its scope (the worker's configuration).
	Trusted []netip.Addr
}

var _ scanfleet.Executor = Executor{}

// TaskType returns TaskType().
func (Executor) TaskType() *scanfleet.TaskType { return TaskType() }

// config turns a task's arguments into a Config.
func (e Executor) config(args scanner.Args) (Config, error) {
	c := Config{
		ResolvConf:  e.ResolvConf,
		Rate:        int(args.Int("rate")),
		Timeout:     args.Duration("timeout"),
		Retries:     int(args.Int("retries")),
		Concurrency: int(args.Int("concurrency")),
		Brute:       args.Bool("brute"),
		AXFR:        args.Bool("axfr"),
		AXFRPort:    int(args.Int("axfr_port")),
		MaxNames:    int(args.Int("max_names")),
	}
	for _, r := range args.List("resolvers") {
		r = strings.TrimSpace(r)
		if _, err := netip.ParseAddr(r); err == nil {
			r = net.JoinHostPort(r, "53") // a bare address means port 53
		}
		c.Resolvers = append(c.Resolvers, r)
	}
	if list := args.List("wordlist"); len(list) > 0 {
		words, bad := parseWordlist(strings.NewReader(strings.Join(list, "\n")))
		if len(bad) > 0 {
			return c, scanfleet.Errorf(scanfleet.EINVALID, "args.wordlist: %s", bad[0])
		}
		c.Words = append(c.Words, words...)
	}
	if path := args.String("wordlist_file"); path != "" {
		f, err := os.Open(path)
		if err != nil {
			return c, scanfleet.Errorf(scanfleet.EINVALID, "args.wordlist_file: %v", err)
		}
		defer f.Close()
		words, bad := parseWordlist(io.LimitReader(f, maxWordlistBytes+1))
		if len(bad) > 0 {
			// The line itself is not repeated: the path is the task's to
			// choose, the file's content is the worker's.
			msg := bad[0]
			if line, _, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(line, "line ") {
				msg = line + " is not a DNS label (one label per line)"
			}
			return c, scanfleet.Errorf(scanfleet.EINVALID, "args.wordlist_file: %s: %s", path, msg)
		}
		c.Words = append(c.Words, words...)
	}
	if len(c.Words) > maxWords {
		return c, scanfleet.Errorf(scanfleet.EINVALID, "args.wordlist: more than %d words", maxWords)
	}
	return c.WithDefaults()
}

// parseWordlist reads one label a line: blank lines and lines starting
// with "#" are skipped, labels are lower-cased and de-duplicated, and a
// word may hold several labels ("dev.api"). It returns the words and, for
// each line that is not a valid label, a message naming the line.
func parseWordlist(r io.Reader) (words, bad []string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 4096)
	seen := map[string]bool{}
	n := 0
	total := 0
	for sc.Scan() {
		n++
		total += len(sc.Bytes()) + 1
		if total > maxWordlistBytes {
			bad = append(bad, fmt.Sprintf("longer than %d bytes", maxWordlistBytes))
			break
		}
		w := strings.ToLower(strings.TrimSpace(sc.Text()))
		if w == "" || strings.HasPrefix(w, "#") {
			continue
		}
		if !validWord(w) {
			bad = append(bad, fmt.Sprintf("line %d: %q is not a DNS label", n, truncate(w, 70)))
			continue
		}
		if !seen[w] {
			seen[w] = true
			words = append(words, w)
		}
	}
	if err := sc.Err(); err != nil {
		bad = append(bad, fmt.Sprintf("line %d: %v", n+1, err))
	}
	return words, bad
}

// validWord reports whether w is one or more DNS labels of letters,
// digits, '-' and '_' that a name below a zone may start with.
func validWord(w string) bool {
	if len(w) > 253 {
		return false
	}
	for _, l := range strings.Split(w, ".") {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Run resolves, brute-forces and transfers the zones of in's targets.
func (e Executor) Run(ctx context.Context, in *scanfleet.TaskInput, env scanfleet.ExecEnv) error {
	args, err := scanner.ValidateArgs(TaskType(), in)
	if err != nil {
		return err
	}
	cfg, err := e.config(args)
	if err != nil {
		return err
	}
	m, err := in.Matcher()
	if err != nil {
		return err
	}
	if len(args.List("resolvers")) > 0 {
		if err := checkResolvers(cfg, m, e.Trusted); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r := newRun(cfg, m, env, cancel)
	defer r.result()
	zones := r.plan(in.Targets)
	env.Log(fmt.Sprintf("dns: %d zones, %d resolvers, rate %d/s, brute %v (%d words), axfr %v", len(zones), len(cfg.Resolvers), cfg.Rate, cfg.Brute, len(cfg.Words), cfg.AXFR))
	for _, z := range zones {
		if ctx.Err() != nil {
			break
		}
		r.scanZone(ctx, z)
	}
	r.Progress(true)
	if err := r.EmitErr(); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	env.Log(fmt.Sprintf("dns: done: %d names found, %d queries", r.counts.Get("found"), r.counts.Get("queries")))
	return nil
}

// checkResolvers refuses resolvers a task names that are neither in the
// workspace's scope nor the worker's own (its resolv.conf): a scan's
// queries go to infrastructure the worker trusts or to targets it may
// touch, nowhere else. A resolver is an address, never a name.
func checkResolvers(cfg Config, m *scanfleet.ScopeMatcher, trusted []netip.Addr) error {
	system := map[netip.Addr]bool{}
	for _, a := range trusted {
		system[a.Unmap()] = true
	}
	if cc, err := dns.ClientConfigFromFile(cfg.ResolvConf); err == nil {
		for _, s := range cc.Servers {
			if a, err := netip.ParseAddr(s); err == nil {
				system[a.Unmap()] = true
			}
		}
	}
	for i, r := range cfg.Resolvers {
		host, _, _ := net.SplitHostPort(r)
		a, err := netip.ParseAddr(host)
		if err != nil {
			return scanfleet.Errorf(scanfleet.EINVALID, "args.resolvers[%d]: %q: give the resolver's address, not a name", i, r)
		}
		if a = a.Unmap(); !system[a] && !m.Contains(a.String()) {
			return scanfleet.Errorf(scanfleet.EINVALID, "args.resolvers[%d]: %s is outside the workspace's scope and is not one of the worker's resolvers (%s)", i, a, cfg.ResolvConf)
		}
	}
	return nil
}
