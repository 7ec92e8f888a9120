package dnsscan

import (
	"net/netip"
	"slices"
	"sort"
	"strings"

	"github.com/miekg/dns"
)

// maxChain bounds the CNAME chain followed within one answer.
const maxChain = 16

// answer is what the queries of one name found. Names are lower case
// without the trailing dot.
type answer struct {
	name   string
	exists bool // not NXDOMAIN, or an alias whose target is missing
	ips    []netip.Addr
	cname  string   // the name's own CNAME target
	chain  []string // every CNAME target followed from the name
	mx     []string // exchanges, most preferred first
	ns     []string
	txt    []string
}

// found reports whether the name has any record.
func (a *answer) found() bool {
	return len(a.ips) > 0 || a.cname != "" || len(a.mx) > 0 || len(a.ns) > 0 || len(a.txt) > 0
}

// signature is the set of answers that decides whether a name is only a
// wildcard's echo: its addresses and its CNAME targets.
func (a *answer) signature() map[string]bool {
	s := map[string]bool{}
	for _, ip := range a.ips {
		s["ip "+ip.String()] = true
	}
	for _, c := range a.chain {
		s["cname "+c] = true
	}
	return s
}

// within reports whether every answer of a is among the wildcard's.
func (a *answer) within(wild map[string]bool) bool {
	sig := a.signature()
	if len(sig) == 0 {
		return false
	}
	for s := range sig {
		if !wild[s] {
			return false
		}
	}
	return true
}

// merge adds b's records to a.
func (a *answer) merge(b *answer) {
	a.exists = a.exists || b.exists
	for _, ip := range b.ips {
		if !slices.Contains(a.ips, ip) {
			a.ips = append(a.ips, ip)
		}
	}
	if a.cname == "" {
		a.cname = b.cname
	}
	a.chain = appendNew(a.chain, b.chain...)
	a.mx = appendNew(a.mx, b.mx...)
	a.ns = appendNew(a.ns, b.ns...)
	a.txt = appendNew(a.txt, b.txt...)
}

func appendNew(xs []string, ys ...string) []string {
	for _, y := range ys {
		if !slices.Contains(xs, y) {
			xs = append(xs, y)
		}
	}
	return xs
}

// parseAnswer reads the answer section of a resolver's reply to a
// question about name: the CNAME chain from the name, the addresses of
// the names on that chain, and the MX, NS and TXT records of the name
// itself. Records about other names are ignored, so a reply cannot plant
// answers for a name it was not asked about.
func parseAnswer(name string, msg *dns.Msg) *answer {
	a := &answer{name: name, exists: msg.Rcode != dns.RcodeNameError}
	aliases := map[string]string{}
	for _, rr := range msg.Answer {
		if c, ok := rr.(*dns.CNAME); ok {
			aliases[normName(c.Hdr.Name)] = normName(c.Target)
		}
	}
	owners := map[string]bool{name: true}
	cur := name
	for range maxChain {
		next, ok := aliases[cur]
		if !ok || next == "" || owners[next] {
			break
		}
		if a.cname == "" {
			a.cname = next
		}
		a.chain = append(a.chain, next)
		owners[next] = true
		cur = next
	}
	if a.cname != "" {
		a.exists = true // an alias exists even when its target does not
	}
	type mx struct {
		pref uint16
		host string
	}
	var mxs []mx
	for _, rr := range msg.Answer {
		owner := normName(rr.Header().Name)
		if !owners[owner] {
			continue
		}
		switch v := rr.(type) {
		case *dns.A:
			if ip, ok := netip.AddrFromSlice(v.A); ok && !slices.Contains(a.ips, ip.Unmap()) {
				a.ips = append(a.ips, ip.Unmap())
			}
		case *dns.AAAA:
			if ip, ok := netip.AddrFromSlice(v.AAAA); ok && !slices.Contains(a.ips, ip) {
				a.ips = append(a.ips, ip)
			}
		}
		if owner != name {
			continue
		}
		switch v := rr.(type) {
		case *dns.MX:
			if h := normName(v.Mx); h != "" {
				mxs = append(mxs, mx{v.Preference, h})
			}
		case *dns.NS:
			if h := normName(v.Ns); h != "" {
				a.ns = appendNew(a.ns, h)
			}
		case *dns.TXT:
			a.txt = appendNew(a.txt, strings.Join(v.Txt, ""))
		}
	}
	sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].pref < mxs[j].pref })
	for _, m := range mxs {
		a.mx = appendNew(a.mx, m.host)
	}
	return a
}

// answersFromZone groups the records of a zone transfer by owner, in the
// order the owners first appear.
func answersFromZone(rrs []dns.RR) []*answer {
	byOwner := map[string][]dns.RR{}
	var order []string
	for _, rr := range rrs {
		switch rr.(type) {
		case *dns.A, *dns.AAAA, *dns.CNAME, *dns.MX, *dns.NS, *dns.TXT:
		default:
			continue
		}
		owner := normName(rr.Header().Name)
		if owner == "" {
			continue
		}
		if _, ok := byOwner[owner]; !ok {
			order = append(order, owner)
		}
		byOwner[owner] = append(byOwner[owner], rr)
	}
	out := make([]*answer, 0, len(order))
	for _, owner := range order {
		out = append(out, parseAnswer(owner, &dns.Msg{Answer: byOwner[owner]}))
	}
	return out
}

// normName returns a name from a record in the form names are compared
// in: lower case, without the trailing dot.
func normName(s string) string {
	return strings.TrimSuffix(strings.ToLower(s), ".")
}
