package scanfleet

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// Scope says what a workspace owns: the targets a scan of it may touch.
//
// Include and Exclude hold IP addresses ("10.0.0.5", "2001:db8::1"), CIDR
// prefixes ("10.0.0.0/24"), exact domain names ("example.com", which matches
// that name only) and wildcard domains ("*.example.com", which matches every
// name below example.com at any depth but not example.com itself). Exclude
// always wins over Include.
//
// A prefix wider than /8 (IPv4) or /16 (IPv6), and a wildcard on a single
// label such as "*.com", cover far more than any team owns; they are refused
// unless AllowBroad is set, so that a typo cannot aim a scan at the Internet.
type Scope struct {
	Include    []string `json:"include"`
	Exclude    []string `json:"exclude"`
	AllowBroad bool     `json:"allow_broad,omitempty"`
}

// Broad-prefix limits: a narrower prefix length than these needs AllowBroad.
const (
	broadIPv4Bits = 8
	broadIPv6Bits = 16
	maxScopeItems = 100000
)

// ScopeDecision is the answer of ScopeMatcher.Check.
type ScopeDecision struct {
	In     bool   // the target may be scanned
	Rule   string // the scope entry that decided, "" when none matched
	Reason string // why, in words a user understands
}

// ScopeMatcher is a compiled Scope. It is the one place that decides whether
// a target is in scope; build it with Scope.Compile. It is safe for
// concurrent use.
type ScopeMatcher struct {
	include, exclude scopeSet
}

type scopeSet struct {
	prefixes []scopePrefix
	names    map[string]string // exact name → entry as written
	suffixes []string          // ".example.com" for "*.example.com"
}

// scopePrefix is an address or CIDR entry with the entry as normalized, so
// that a decision names the entry the user wrote ("10.0.0.5", not
// "10.0.0.5/32").
type scopePrefix struct {
	p     netip.Prefix
	entry string
}

// Normalize validates the scope and returns it in canonical form: lower-case
// names without a trailing dot, punycode for international names, masked
// CIDR prefixes, and no duplicate entries. The error names the bad entry,
// e.g. `scope.include[2]: "10.0.0.0/33" is not a valid IP, CIDR or domain`.
func (s Scope) Normalize() (Scope, error) {
	out := Scope{Include: []string{}, Exclude: []string{}, AllowBroad: s.AllowBroad}
	if len(s.Include)+len(s.Exclude) > maxScopeItems {
		return Scope{}, Errorf(EINVALID, "scope: more than %d entries", maxScopeItems)
	}
	for _, list := range []struct {
		name string
		in   []string
		out  *[]string
	}{{"include", s.Include, &out.Include}, {"exclude", s.Exclude, &out.Exclude}} {
		seen := make(map[string]bool, len(list.in))
		for i, raw := range list.in {
			entry, err := normalizeScopeEntry(raw)
			if err != nil {
				return Scope{}, Errorf(EINVALID, "scope.%s[%d]: %q %s", list.name, i, raw, err)
			}
			if list.name == "include" && !s.AllowBroad {
				if why := broadReason(entry); why != "" {
					return Scope{}, Errorf(EINVALID, "scope.include[%d]: %q %s; set scope.allow_broad to true if that is really meant", i, raw, why)
				}
			}
			if !seen[entry] {
				seen[entry] = true
				*list.out = append(*list.out, entry)
			}
		}
	}
	return out, nil
}

// Compile validates the scope and returns its matcher.
func (s Scope) Compile() (*ScopeMatcher, error) {
	n, err := s.Normalize()
	if err != nil {
		return nil, err
	}
	m := &ScopeMatcher{include: newScopeSet(n.Include), exclude: newScopeSet(n.Exclude)}
	m.exclude.prefixes = withMappedIPv4(m.exclude.prefixes)
	return m, nil
}

// withMappedIPv4 adds, for each IPv6 exclude that covers IPv4-mapped
// addresses (::ffff:0:0/96), the IPv4 prefix those map: excluding
// ::ffff:10.0.0.0/104 excludes 10.0.0.0/8, and excluding ::/64 excludes
// all of IPv4, since a scanner reaches the mapped address as IPv4.
func withMappedIPv4(ps []scopePrefix) []scopePrefix {
	for _, x := range ps {
		switch {
		case !x.p.Addr().Is6() || !x.p.Overlaps(mapped96):
		case x.p.Bits() >= 96:
			ps = append(ps, scopePrefix{netip.PrefixFrom(x.p.Addr().Unmap(), x.p.Bits()-96).Masked(), x.entry})
		default:
			ps = append(ps, scopePrefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0), x.entry})
		}
	}
	return ps
}

// MustCompile is Compile for scopes known to be valid, such as those read
// back from the store; it panics on error.
func (s Scope) MustCompile() *ScopeMatcher {
	m, err := s.Compile()
	if err != nil {
		panic(err)
	}
	return m
}

// Check decides whether target is in scope. A target is an IP address, a
// CIDR prefix, a host name, "host:port", or a URL whose host is checked. A
// prefix is in scope only when an include entry covers all of it and no
// exclude entry overlaps it; callers that expand a prefix check each address.
// Names are not resolved here: a scanner checks the addresses a name resolves
// to before it sends anything to them.
func (m *ScopeMatcher) Check(target string) ScopeDecision {
	host, err := targetHost(target)
	if err != nil {
		return ScopeDecision{Reason: fmt.Sprintf("%q is not a valid target: %v", target, err)}
	}
	if p, err := netip.ParsePrefix(host); err == nil {
		return m.checkPrefix(p.Masked())
	}
	if a, err := netip.ParseAddr(host); err == nil {
		// The zone only picks the interface a link-local address is
		// reached through; the address decides.
		a = a.Unmap().WithZone("")
		return m.checkPrefix(netip.PrefixFrom(a, a.BitLen()))
	}
	name, err := normalizeName(host)
	if err != nil {
		return ScopeDecision{Reason: fmt.Sprintf("%q is not a valid target: %v", target, err)}
	}
	if rule, ok := m.exclude.matchName(name); ok {
		return ScopeDecision{Rule: rule, Reason: fmt.Sprintf("%s is excluded by %q", name, rule)}
	}
	if rule, ok := m.include.matchName(name); ok {
		return ScopeDecision{In: true, Rule: rule, Reason: fmt.Sprintf("%s is included by %q", name, rule)}
	}
	return ScopeDecision{Reason: fmt.Sprintf("%s matches no include entry", name)}
}

// Contains reports whether target is in scope; see Check.
func (m *ScopeMatcher) Contains(target string) bool { return m.Check(target).In }

// mapped4 is ::ffff:0.0.0.0, the first IPv4-mapped IPv6 address.
var mapped4 = netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff})

// checkPrefix decides a masked prefix. An IPv4-mapped IPv6 prefix
// (::ffff:10.0.0.0/120) reaches the IPv4 hosts it maps, so it is decided as
// the IPv4 prefix; an IPv6 prefix wide enough to hold the whole mapped range
// (::/64) is in only if all of IPv4 is in as well.
func (m *ScopeMatcher) checkPrefix(p netip.Prefix) ScopeDecision {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	} else if p.Addr().Is6() && p.Contains(mapped4) {
		if d := m.checkPrefix(netip.PrefixFrom(netip.IPv4Unspecified(), 0)); !d.In {
			d.Reason = fmt.Sprintf("%s holds the IPv4-mapped range ::ffff:0.0.0.0/96, and %s", prefixString(p), d.Reason)
			return d
		}
	}
	for _, x := range m.exclude.prefixes {
		if x.p.Overlaps(p) {
			return ScopeDecision{Rule: x.entry, Reason: fmt.Sprintf("%s is excluded by %q", prefixString(p), x.entry)}
		}
	}
	for _, in := range m.include.prefixes {
		if in.p.Bits() <= p.Bits() && in.p.Contains(p.Addr()) {
			return ScopeDecision{In: true, Rule: in.entry, Reason: fmt.Sprintf("%s is included by %q", prefixString(p), in.entry)}
		}
	}
	return ScopeDecision{Reason: fmt.Sprintf("%s matches no include entry", prefixString(p))}
}

// mapped96 is ::ffff:0.0.0.0/96, the IPv4-mapped IPv6 range.
var mapped96 = netip.PrefixFrom(mapped4, 96)

// Clip returns the parts of prefix p that are in scope: included and not
// excluded, as disjoint prefixes in address order. A scanner that expands
// a CIDR target scans exactly these. An IPv4-mapped IPv6 prefix is
// returned as the IPv4 prefixes it reaches.
func (m *ScopeMatcher) Clip(p netip.Prefix) []netip.Prefix {
	return m.clipN(p, -1)
}

// clipN is Clip stopping after n prefixes (n < 0: all).
func (m *ScopeMatcher) clipN(p netip.Prefix, n int) []netip.Prefix {
	p = p.Masked()
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	c := clipper{limit: n}
	c.clip(p, overlapping(m.include.prefixes, p), overlapping(m.exclude.prefixes, p))
	return c.out
}

// clipper collects the in-scope parts of a prefix. Each step of the
// recursion gets only the entries that overlap its prefix, so a scope of
// many entries costs in proportion to the entries near each part.
type clipper struct {
	out   []netip.Prefix
	limit int
}

func (c *clipper) full() bool { return c.limit >= 0 && len(c.out) >= c.limit }

func (c *clipper) clip(p netip.Prefix, inc, exc []scopePrefix) {
	if c.full() {
		return
	}
	if p.Addr().Is6() && p.Overlaps(mapped96) {
		if p.Bits() >= 96 {
			v4 := netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			c.clip(v4, inc, exc) // the IPv4 entries were passed down with p's
			return
		}
		c.split(p, inc, exc) // decide the mapped range on its own
		return
	}
	for _, x := range exc {
		if x.p.Bits() <= p.Bits() && x.p.Contains(p.Addr()) {
			return // all of p is excluded
		}
	}
	if len(exc) == 0 {
		for _, in := range inc {
			if in.p.Bits() <= p.Bits() && in.p.Contains(p.Addr()) {
				c.out = append(c.out, p)
				return
			}
		}
	}
	if len(inc) == 0 {
		return
	}
	c.split(p, inc, exc)
}

// split clips both halves of p.
func (c *clipper) split(p netip.Prefix, inc, exc []scopePrefix) {
	lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
	hi := netip.PrefixFrom(lastAddr(lo).Next(), p.Bits()+1)
	for _, h := range []netip.Prefix{lo, hi} {
		c.clip(h, overlapping(inc, h), overlapping(exc, h))
	}
}

// overlapping returns the entries that overlap p; for an IPv6 p that
// holds IPv4-mapped addresses, the IPv4 entries too.
func overlapping(list []scopePrefix, p netip.Prefix) []scopePrefix {
	var v4 netip.Prefix
	mapped := p.Addr().Is6() && p.Overlaps(mapped96)
	if mapped {
		v4 = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if p.Bits() >= 96 {
			v4 = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
	}
	var out []scopePrefix
	for _, x := range list {
		if x.p.Overlaps(p) || (mapped && x.p.Overlaps(v4)) {
			out = append(out, x)
		}
	}
	return out
}

// lastAddr returns the last address of a masked prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func prefixString(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

func newScopeSet(entries []string) scopeSet {
	s := scopeSet{names: map[string]string{}}
	for _, e := range entries {
		switch {
		case strings.HasPrefix(e, "*."):
			s.suffixes = append(s.suffixes, e[1:])
		case strings.ContainsAny(e, ":/") || isIPv4(e):
			if p, err := netip.ParsePrefix(e); err == nil {
				s.prefixes = append(s.prefixes, scopePrefix{p, e})
			} else if a, err := netip.ParseAddr(e); err == nil {
				s.prefixes = append(s.prefixes, scopePrefix{netip.PrefixFrom(a, a.BitLen()), e})
			}
		default:
			s.names[e] = e
		}
	}
	return s
}

func (s scopeSet) matchName(name string) (string, bool) {
	if e, ok := s.names[name]; ok {
		return e, true
	}
	for _, suf := range s.suffixes {
		if strings.HasSuffix(name, suf) {
			return "*" + suf, true
		}
	}
	return "", false
}

func isIPv4(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is4()
}

// normalizeScopeEntry returns the canonical form of one scope entry.
func normalizeScopeEntry(raw string) (string, error) {
	e := strings.TrimSpace(raw)
	if e == "" {
		return "", fmt.Errorf("is empty")
	}
	if strings.Contains(e, "/") {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return "", fmt.Errorf("is not a valid CIDR prefix")
		}
		if p.Addr().Zone() != "" {
			return "", fmt.Errorf("has an IPv6 zone, which a scope cannot hold")
		}
		// Mask first: "::ffff:10.0.0.5/64" is the IPv6 prefix ::/64, and
		// only a prefix inside ::ffff:0:0/96 is an IPv4 prefix.
		p = p.Masked()
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.String(), nil
	}
	if a, err := netip.ParseAddr(e); err == nil {
		if a.Zone() != "" {
			return "", fmt.Errorf("has an IPv6 zone, which a scope cannot hold")
		}
		return a.Unmap().String(), nil
	}
	if strings.HasPrefix(e, "*.") {
		name, err := normalizeName(e[2:])
		if err != nil {
			return "", err
		}
		return "*." + name, nil
	}
	if strings.Contains(e, "*") {
		return "", fmt.Errorf("has a wildcard that is not a leading \"*.\"")
	}
	if looksNumeric(e) {
		return "", fmt.Errorf("is not a valid IP, CIDR or domain")
	}
	return normalizeName(e)
}

// broadReason says why a normalized include entry is too broad, or "".
func broadReason(entry string) string {
	if p, err := netip.ParsePrefix(entry); err == nil {
		if p.Addr().Is4() && p.Bits() < broadIPv4Bits {
			return fmt.Sprintf("covers %s of the IPv4 Internet (wider than /%d)", fraction(p.Bits()), broadIPv4Bits)
		}
		if p.Addr().Is6() && p.Bits() < broadIPv6Bits {
			return fmt.Sprintf("covers %s of the IPv6 Internet (wider than /%d)", fraction(p.Bits()), broadIPv6Bits)
		}
		return ""
	}
	if strings.HasPrefix(entry, "*.") && !strings.Contains(entry[2:], ".") {
		return "matches every name under a top-level domain"
	}
	return ""
}

func fraction(bits int) string {
	if bits == 0 {
		return "all"
	}
	return fmt.Sprintf("1/%d", 1<<bits)
}

// looksNumeric reports whether s is made of digits and dots only: such a
// string is a mistyped address, never a host name.
func looksNumeric(s string) bool {
	for _, r := range s {
		if (r < '0' || r > '9') && r != '.' {
			return false
		}
	}
	return true
}

// normalizeName validates a DNS name and returns it lower-case, without a
// trailing dot, in ASCII (punycode) form. Underscores are accepted because
// real zones use them (_dmarc, _sip._tcp).
func normalizeName(s string) (string, error) {
	name := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
	if name == "" {
		return "", fmt.Errorf("is an empty name")
	}
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			ascii, err := idna.Lookup.ToASCII(name)
			if err != nil {
				return "", fmt.Errorf("is not a valid international domain name")
			}
			name = ascii
			break
		}
	}
	if len(name) > 253 {
		return "", fmt.Errorf("is longer than 253 characters")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return "", fmt.Errorf("has an empty label")
		}
		if len(label) > 63 {
			return "", fmt.Errorf("has a label longer than 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("has a label that starts or ends with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("has the character %q, which a domain name cannot hold", c)
			}
		}
	}
	if looksNumeric(name) {
		return "", fmt.Errorf("is not a valid IP address or domain name")
	}
	if endsInNumber(name) {
		return "", fmt.Errorf("ends in a numeric label, which browsers and inet_aton read as an IPv4 address")
	}
	return name, nil
}

// endsInNumber reports whether the last label of name is a number in the
// sense of the WHATWG URL standard (all decimal digits, or "0x" and hex
// digits). Such a name is not a host name: "0x7f.1" and "127.1" are read as
// 127.0.0.1 by browsers and by C's inet_aton, so a scope must never hold or
// match one as a name.
func endsInNumber(name string) bool {
	last := name[strings.LastIndexByte(name, '.')+1:]
	digits := "0123456789"
	if strings.HasPrefix(last, "0x") {
		last, digits = last[2:], "0123456789abcdef"
		if last == "" {
			return true
		}
	}
	return last != "" && strings.Trim(last, digits) == ""
}

// targetHost extracts the host part of a target: the host of a URL, the host
// of "host:port" or "[v6]:port", or the target itself.
func targetHost(target string) (string, error) {
	t := strings.TrimSpace(target)
	if t == "" {
		return "", fmt.Errorf("empty")
	}
	if strings.Contains(t, "://") {
		u, err := url.Parse(t)
		if err != nil || u.Hostname() == "" {
			return "", fmt.Errorf("not a URL with a host")
		}
		return u.Hostname(), nil
	}
	if strings.HasPrefix(t, "[") || strings.Count(t, ":") == 1 {
		host, port, err := net.SplitHostPort(t)
		if err != nil {
			return "", err
		}
		// A port is a number: "example.com:evil.com" must not pass as
		// example.com to a tool that reads the target its own way.
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '+' {
			return "", fmt.Errorf("port %q is not a number between 1 and 65535", port)
		}
		return host, nil
	}
	return t, nil
}

// TargetHost returns the host part of a target: the address, prefix or
// name of "host", "host:port", "[v6]:port" or a URL. The error says what is
// wrong with the target.
func TargetHost(target string) (string, error) { return targetHost(target) }
