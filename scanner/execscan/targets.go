package execscan

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/scanfleet/scanfleet"
)

// maxNarrowed bounds how many prefixes one target prefix is split into
// around the excludes that cut into it.
const maxNarrowed = 4096

// scopeTargets returns the targets that are in scope, as written, and
// the parts left out with why. A prefix that an exclude cuts into is not
// dropped whole: it is narrowed to the largest prefixes around the
// exclude (10.0.0.0/24 without 10.0.0.1 becomes 10.0.0.0, 10.0.0.2/31,
// 10.0.0.4/30, … 10.0.0.128/25), since an external program cannot be
// trusted to honour an exclude list.
func scopeTargets(m *scanfleet.ScopeMatcher, targets []string) (in, dropped []string) {
	for _, t := range targets {
		t = strings.TrimSpace(t)
		if t == "" {
			continue
		}
		d := m.Check(t)
		if d.In {
			in = append(in, t)
			continue
		}
		p, err := netip.ParsePrefix(t)
		if err != nil || !canNarrow(p.Masked(), d) {
			dropped = append(dropped, t+": "+d.Reason)
			continue
		}
		var (
			parts, left []string
			budget      = maxNarrowed
		)
		if !narrow(m, p.Masked(), &parts, &left, &budget) {
			dropped = append(dropped, fmt.Sprintf("%s: %s, and narrowing it around its excludes would take more than %d prefixes", t, d.Reason, maxNarrowed))
			continue
		}
		in = append(in, parts...)
		dropped = append(dropped, left...)
	}
	return in, dropped
}

// narrow splits p in halves until each part is in scope or wholly out.
// It returns false when that takes more than budget parts.
func narrow(m *scanfleet.ScopeMatcher, p netip.Prefix, in, dropped *[]string, budget *int) bool {
	d := m.Check(p.String())
	switch {
	case d.In:
		*in = append(*in, prefixText(p))
		return true
	case !canNarrow(p, d):
		*dropped = append(*dropped, prefixText(p)+": "+d.Reason)
		return true
	}
	if *budget -= 2; *budget < 0 {
		return false
	}
	lo, hi := halves(p)
	return narrow(m, lo, in, dropped, budget) && narrow(m, hi, in, dropped, budget)
}

// canNarrow reports whether splitting p can leave something in scope: the
// decision was an exclude strictly inside p. A prefix outside every include
// or wholly excluded is dropped as is.
func canNarrow(p netip.Prefix, d scanfleet.ScopeDecision) bool {
	if d.Rule == "" || p.IsSingleIP() {
		return false
	}
	ex, err := netip.ParsePrefix(d.Rule)
	if err != nil {
		a, err := netip.ParseAddr(d.Rule)
		if err != nil {
			return false
		}
		ex = netip.PrefixFrom(a, a.BitLen())
	}
	return ex.Addr().BitLen() == p.Addr().BitLen() && ex.Bits() > p.Bits() && p.Overlaps(ex)
}

// halves splits a masked prefix into its two halves.
func halves(p netip.Prefix) (netip.Prefix, netip.Prefix) {
	bit := p.Bits()
	a := p.Addr()
	var hi netip.Addr
	if a.Is4() {
		b := a.As4()
		b[bit/8] |= 0x80 >> (bit % 8)
		hi = netip.AddrFrom4(b)
	} else {
		b := a.As16()
		b[bit/8] |= 0x80 >> (bit % 8)
		hi = netip.AddrFrom16(b)
	}
	return netip.PrefixFrom(a, bit+1), netip.PrefixFrom(hi, bit+1)
}

func prefixText(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// splitTargets reads a TARGET value a scan set: a list, or a string of
// targets separated by spaces or commas (as Faraday's executors read it).
func splitTargets(v any) []string {
	switch x := v.(type) {
	case []string:
		return x
	case string:
		return strings.FieldsFunc(x, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
	}
	return nil
}
