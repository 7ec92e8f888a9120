package scanner

import (
	"context"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/scanfleet/scanfleet"
)

// MaxPlanAddresses bounds the addresses one task may expand to: all of
// IPv4. A wider IPv6 target must be split by the scan.
const MaxPlanAddresses = 1 << 32

// Resolver resolves host names; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Skipped is a target, or an address a name resolved to, that a scan
// does not touch, with the reason.
type Skipped struct {
	Target string `json:"target"`
	Reason string `json:"reason"`
}

// Plan is the addresses a network scan may touch: its targets clipped to
// the scope, names resolved and each address checked, overlaps merged.
// Addresses are numbered 0..Count()-1 so that a scanner can visit them in
// any order (At).
type Plan struct {
	// Prefixes are disjoint and sorted, IPv4 before IPv6.
	Prefixes []netip.Prefix
	// Names maps an address to the host names it was resolved from.
	Names map[netip.Addr][]string
	// OutOfScope lists what was refused, each with the reason.
	OutOfScope []Skipped
	// Unresolved lists names that did not resolve.
	Unresolved []Skipped

	starts []uint64 // starts[i] is the number of the first address of Prefixes[i]
	count  uint64
}

// NewPlan expands in's targets. Every target and every address a name
// resolves to is checked with in.Matcher() first; nothing outside the
// scope is in the plan. A target that is not an address, prefix, name,
// host:port or URL is an error naming it. A nil resolver uses net's.
func NewPlan(ctx context.Context, in *scanfleet.TaskInput, r Resolver) (*Plan, error) {
	m, err := in.Matcher()
	if err != nil {
		return nil, err
	}
	if r == nil {
		r = net.DefaultResolver
	}
	pl := &Plan{Names: map[netip.Addr][]string{}}
	var prefixes []netip.Prefix
	for _, target := range in.Targets {
		host, err := scanfleet.TargetHost(target)
		if err != nil {
			return nil, scanfleet.Errorf(scanfleet.EINVALID, "targets: %q: %v", target, err)
		}
		if p, err := netip.ParsePrefix(host); err == nil {
			clipped := m.Clip(p)
			if len(clipped) == 0 {
				pl.OutOfScope = append(pl.OutOfScope, Skipped{target, m.Check(host).Reason})
			} else if !slices.Equal(clipped, []netip.Prefix{p.Masked()}) {
				pl.OutOfScope = append(pl.OutOfScope, Skipped{target, "partly out of scope: only " + prefixList(clipped) + " is scanned"})
			}
			prefixes = append(prefixes, clipped...)
			continue
		}
		if a, err := netip.ParseAddr(host); err == nil {
			a = a.Unmap().WithZone("")
			if d := m.Check(a.String()); !d.In {
				pl.OutOfScope = append(pl.OutOfScope, Skipped{target, d.Reason})
				continue
			}
			prefixes = append(prefixes, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		name := strings.TrimSuffix(strings.ToLower(host), ".")
		if d := m.Check(name); !d.In && d.Rule != "" {
			// Excluded by name: never resolved, never touched.
			pl.OutOfScope = append(pl.OutOfScope, Skipped{target, d.Reason})
			continue
		}
		// As a fully qualified name: a resolver's search domains must not
		// turn "admin" into an excluded admin.example.com.
		addrs, err := r.LookupNetIP(ctx, "ip", Absolute(name))
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			pl.Unresolved = append(pl.Unresolved, Skipped{target, err.Error()})
			continue
		}
		for _, a := range addrs {
			a = a.Unmap().WithZone("")
			if d := m.Check(a.String()); !d.In {
				pl.OutOfScope = append(pl.OutOfScope, Skipped{name + " → " + a.String(), d.Reason})
				continue
			}
			if !slices.Contains(pl.Names[a], name) {
				pl.Names[a] = append(pl.Names[a], name)
			}
			prefixes = append(prefixes, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	pl.Prefixes = mergePrefixes(prefixes)
	total := new(big.Int)
	for _, p := range pl.Prefixes {
		pl.starts = append(pl.starts, total.Uint64())
		total.Add(total, new(big.Int).Lsh(big.NewInt(1), uint(p.Addr().BitLen()-p.Bits())))
		if total.Cmp(big.NewInt(MaxPlanAddresses)) > 0 {
			return nil, scanfleet.Errorf(scanfleet.EINVALID, "targets: more than %d addresses; split the scan into chunks", uint64(MaxPlanAddresses))
		}
	}
	pl.count = total.Uint64()
	return pl, nil
}

// RefusePorts is for scanners whose ports come from their arguments (port
// scans): a target that names a port ("10.0.0.5:8080") or is a URL would
// have its port silently ignored, so it is refused, naming the target.
func RefusePorts(targets []string) error {
	for i, target := range targets {
		host, err := scanfleet.TargetHost(target)
		if err != nil {
			return scanfleet.Errorf(scanfleet.EINVALID, "targets[%d]: %q: %v", i, target, err)
		}
		if t := strings.TrimSpace(target); host != t {
			return scanfleet.Errorf(scanfleet.EINVALID, "targets[%d]: %q names a port or is a URL; give the host, and the ports in the ports argument (-p)", i, target)
		}
	}
	return nil
}

// SplitTarget reads a trimmed target that is a CIDR prefix (returned
// masked), "host:port", "[v6]:port" or a host alone (port 0), as scanners
// that take endpoints read them.
func SplitTarget(s string) (host string, port int, prefix netip.Prefix, err error) {
	switch {
	case strings.Contains(s, "/"):
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return "", 0, netip.Prefix{}, fmt.Errorf("not a CIDR prefix")
		}
		return "", 0, p.Masked(), nil
	case strings.HasPrefix(s, "[") || strings.Count(s, ":") == 1:
		h, p, err := net.SplitHostPort(s)
		if err != nil {
			return "", 0, netip.Prefix{}, err
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 || p[0] == '+' {
			return "", 0, netip.Prefix{}, fmt.Errorf("port %q is not between 1 and 65535", p)
		}
		return h, n, netip.Prefix{}, nil
	}
	return s, 0, netip.Prefix{}, nil
}

// Count returns the number of addresses in the plan.
func (p *Plan) Count() uint64 { return p.count }

// At returns address number i, 0 <= i < Count().
func (p *Plan) At(i uint64) netip.Addr {
	k := sort.Search(len(p.starts), func(k int) bool { return p.starts[k] > i }) - 1
	return addAddr(p.Prefixes[k].Addr(), i-p.starts[k])
}

// Contains reports whether a is in the plan: replies from anywhere else
// are not the scan's.
func (p *Plan) Contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	k := sort.Search(len(p.Prefixes), func(k int) bool { return a.Less(p.Prefixes[k].Addr()) }) - 1
	return k >= 0 && p.Prefixes[k].Contains(a)
}

// Absolute returns name as a fully qualified name (a trailing dot), so
// that a resolver's search domains cannot turn "admin" into an excluded
// admin.example.com; localhost names stay as they are, for the hosts file.
func Absolute(name string) string {
	name = strings.TrimSuffix(name, ".")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return name
	}
	return name + "."
}

// addAddr returns a+n within one address family.
func addAddr(a netip.Addr, n uint64) netip.Addr {
	b := a.As16()
	carry := n
	for i := 15; i >= 0 && carry > 0; i-- {
		s := uint64(b[i]) + carry&0xff
		b[i] = byte(s)
		carry = carry>>8 + s>>8
	}
	out := netip.AddrFrom16(b)
	if a.Is4() {
		return out.Unmap()
	}
	return out
}

// mergePrefixes sorts prefixes and drops those inside another.
func mergePrefixes(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	var out []netip.Prefix
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return out
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, 0, min(len(ps), 5))
	for i, p := range ps {
		if i == 4 && len(ps) > 5 {
			s = append(s, fmt.Sprintf("and %d more", len(ps)-4))
			break
		}
		s = append(s, p.String())
	}
	return strings.Join(s, ", ")
}
