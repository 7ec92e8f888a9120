package scanner

import (
	"context"
	"fmt"
	"iter"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
)

// Dialer connects only to addresses in a task's scope. A name is resolved
// and each of its addresses checked before anything is sent; the
// connection goes to the first in-scope address that answers. A refused
// target fails with an error that wraps ErrOutOfScope and says why.
type Dialer struct {
	// Matcher decides the scope; required.
	Matcher *scanfleet.ScopeMatcher
	// Resolver resolves names; default net.DefaultResolver.
	Resolver Resolver
	// Timeout bounds each connection attempt; default 10s.
	Timeout time.Duration
}

// DialContext connects to address ("host:port") over network ("tcp").
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	addrs, err := d.Resolve(ctx, address)
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(address)
	nd := net.Dialer{Timeout: d.Timeout}
	if nd.Timeout == 0 {
		nd.Timeout = 10 * time.Second
	}
	var last error
	for _, a := range addrs {
		c, err := nd.DialContext(ctx, network, net.JoinHostPort(a.String(), port))
		if err == nil {
			return c, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, last
}

// Resolve returns the in-scope addresses of address's host ("host:port"
// or "host"): the address itself, or those a name resolves to. A name the
// scope excludes is never resolved.
func (d *Dialer) Resolve(ctx context.Context, address string) ([]netip.Addr, error) {
	host := address
	if h, _, err := net.SplitHostPort(address); err == nil {
		host = h
	}
	if a, err := netip.ParseAddr(host); err == nil {
		a = a.Unmap().WithZone("")
		if dec := d.Matcher.Check(a.String()); !dec.In {
			return nil, fmt.Errorf("%s: %w: %s", a, ErrOutOfScope, dec.Reason)
		}
		return []netip.Addr{a}, nil
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if dec := d.Matcher.Check(name); !dec.In && dec.Rule != "" {
		return nil, fmt.Errorf("%s: %w: %s", name, ErrOutOfScope, dec.Reason)
	}
	r := d.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	found, err := r.LookupNetIP(ctx, "ip", Absolute(name)) // no search domains
	if err != nil {
		return nil, err
	}
	var in []netip.Addr
	var reason string
	for _, a := range found {
		a = a.Unmap().WithZone("")
		if dec := d.Matcher.Check(a.String()); dec.In {
			in = append(in, a)
		} else if reason == "" {
			reason = dec.Reason
		}
	}
	if len(in) == 0 {
		return nil, fmt.Errorf("%s: %w: none of its %d addresses is in scope (%s)", name, ErrOutOfScope, len(found), reason)
	}
	return in, nil
}

// PrefixAddrs returns every address of p in order.
func PrefixAddrs(p netip.Prefix) iter.Seq[netip.Addr] {
	return func(yield func(netip.Addr) bool) {
		p = p.Masked()
		for a := p.Addr(); a.IsValid() && p.Contains(a); a = a.Next() {
			if !yield(a) {
				return
			}
		}
	}
}

// Hosts returns the hosts a target stands for: host itself, or, when
// prefix is valid, every address of prefix in order.
func Hosts(host string, prefix netip.Prefix) iter.Seq[string] {
	return func(yield func(string) bool) {
		if !prefix.IsValid() {
			yield(host)
			return
		}
		for a := range PrefixAddrs(prefix) {
			if !yield(a.String()) {
				return
			}
		}
	}
}
