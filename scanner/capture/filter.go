package capture

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/bpf"
)

// The filter language is the everyday part of tcpdump's (pcap-filter(7)),
// parsed here and compiled to classic BPF without libpcap:
//
//	expr      = unary { ("and" | "&&" | "or" | "||") unary }
//	unary     = ("not" | "!") unary | "(" expr ")" | primitive
//	primitive = [dir] "host" ADDRESS
//	          | [dir] "net" PREFIX                    (10.0.0.0/8, 2001:db8::/32)
//	          | [proto] [dir] "port" PORT
//	          | [proto] [dir] "portrange" PORT-PORT
//	          | "ip" | "ip6" | "arp" | "tcp" | "udp" | "sctp" | "icmp" | "icmp6"
//	          | "greater" NUMBER | "less" NUMBER       (len >= NUMBER, len <= NUMBER)
//	          | arith relop arith
//	dir       = "src" | "dst"
//	proto     = "tcp" | "udp" | "sctp"
//	relop     = ">" | "<" | ">=" | "<=" | "=" | "==" | "!="
//	arith     = operand { binop operand }
//	binop     = "|" | "^" | "&" | "<<" | ">>" | "+" | "-" | "*" | "/" | "%"
//	operand   = NUMBER | NAME | "len" | "-" operand | "(" arith ")"
//	          | accessor "[" arith [":" ("1" | "2" | "4")] "]"
//	accessor  = "ether" | "link" | "ip" | "ip6" | "tcp" | "udp" | "sctp" | "icmp" | "icmp6"
//
// As in tcpdump, "and" and "or" bind equally, left to right: "a or b and c"
// is "(a or b) and c". Without dir, host, net and port match either direction; port without
// proto matches TCP, UDP and SCTP, as tcpdump's does.
//
// Comparisons are tcpdump's, on unsigned 32-bit values, with its binding
// of operators from loosest to tightest: |, ^, &, << and >>, + and -,
// * / and %, unary minus (libpcap leaves ^ and % without one; parenthesize
// them to be read alike everywhere). NUMBER is decimal, 0x hexadecimal or
// 0-prefixed octal; NAME is one of tcpdump's constants (tcpflags, tcp-syn,
// icmptype, icmp-echo, icmp6type, icmp6-echo, … below). len is the
// packet's length, link header included. proto[offset:size] reads 1, 2 or
// 4 bytes big-endian at offset (itself an expression, which may read the
// packet: tcp[((tcp[12] & 0xf0) >> 2):4]) from the start of that header,
// and holds only for packets of that protocol, as tcpdump's does: ip[] and
// icmp[] IPv4, ip6[] and icmp6[] IPv6, tcp[], udp[] and sctp[] the first
// fragment of an IPv4 datagram, transport header after the IHL. Unlike
// tcpdump's, which reads them over IPv4 only, tcp[], udp[] and sctp[] also
// read IPv6 with the transport header right after the fixed 40 bytes, as
// port does. ether[] and link[] read the Ethernet header; on an interface
// without one (tun) they are false, as arp is. A read past the packet's
// end (or at a computed offset beyond 65535) drops the packet whatever
// surrounds it, "not" included, as in classic BPF and tcpdump. Division or
// modulo by a constant zero, shifts by more than 31 and constant offsets
// beyond 65535 are refused.
//
// What tcpdump reads differently or more of (qualifier reuse as in
// "host a or b", names instead of addresses, IPv6 extension headers before
// the transport header, ether host and the other link-layer primitives,
// accessors beyond those above such as arp[] or igmp[]) is refused or
// documented here rather than half-supported; anything beyond can be
// compiled with `tcpdump -ddd` elsewhere and given as raw BPF.

// maxFilterLen bounds a filter expression; maxDepth bounds its nesting,
// so that parsing cannot exhaust the stack.
const (
	maxFilterLen = 8192
	maxDepth     = 100
	// maxInstructions is the kernel's BPF_MAXINSNS.
	maxInstructions = 4096
)

// node is a parsed filter expression.
type node interface {
	String() string
}

type (
	andNode struct{ l, r node }
	orNode  struct{ l, r node }
	notNode struct{ x node }
	// protoNode is ip, ip6, arp, tcp, udp, sctp, icmp or icmp6.
	protoNode struct{ proto string }
	hostNode  struct {
		dir  string // "", "src" or "dst"
		addr netip.Addr
	}
	netNode struct {
		dir    string
		prefix netip.Prefix
	}
	portNode struct {
		proto  string // "", "tcp", "udp" or "sctp"
		dir    string
		lo, hi uint16
	}
	// scopeNode is any IP packet with a source or destination address in
	// one of the prefixes; it is built from the task's scope, never parsed.
	scopeNode struct{ prefixes []netip.Prefix }
)

func (n andNode) String() string { return "(" + n.l.String() + " and " + n.r.String() + ")" }
func (n orNode) String() string  { return "(" + n.l.String() + " or " + n.r.String() + ")" }
func (n notNode) String() string { return "not " + n.x.String() }
func (n protoNode) String() string {
	return n.proto
}
func (n hostNode) String() string { return join(n.dir, "host", n.addr.String()) }
func (n netNode) String() string  { return join(n.dir, "net", n.prefix.String()) }
func (n portNode) String() string {
	if n.lo == n.hi {
		return join(n.proto, n.dir, "port", strconv.Itoa(int(n.lo)))
	}
	return join(n.proto, n.dir, "portrange", fmt.Sprintf("%d-%d", n.lo, n.hi))
}
func (n scopeNode) String() string {
	s := make([]string, len(n.prefixes))
	for i, p := range n.prefixes {
		s[i] = p.String()
	}
	return "scope(" + strings.Join(s, " ") + ")"
}

func join(words ...string) string {
	var out []string
	for _, w := range words {
		if w != "" {
			out = append(out, w)
		}
	}
	return strings.Join(out, " ")
}

// parseFilter parses a filter expression; "" (or only blanks) is nil, which
// accepts every packet. The error says where the expression went wrong.
func parseFilter(s string) (node, error) {
	if len(s) > maxFilterLen {
		return nil, fmt.Errorf("is longer than %d characters", maxFilterLen)
	}
	toks, err := lex(s)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, nil
	}
	p := &parser{toks: toks}
	n, err := p.expr(0)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		t := p.toks[p.pos]
		if t.text == "&" || t.text == "|" {
			return nil, fmt.Errorf("unexpected %q at offset %d (use %s%s, and, or between primitives)", t.text, t.off, t.text, t.text)
		}
		return nil, fmt.Errorf("unexpected %q at offset %d", t.text, t.off)
	}
	return n, nil
}

type token struct {
	text string
	off  int
}

func lex(s string) ([]token, error) {
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		two := ""
		if i+1 < len(s) {
			two = s[i : i+2]
		}
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case two == "&&" || two == "||":
			w := "and"
			if c == '|' {
				w = "or"
			}
			toks = append(toks, token{w, i})
			i += 2
		case two == "!=" || two == "==" || two == "<=" || two == ">=" || two == "<<" || two == ">>":
			toks = append(toks, token{two, i})
			i += 2
		case c == '!':
			toks = append(toks, token{"not", i})
			i++
		case strings.IndexByte("()[]&|^+*%<>=", c) >= 0:
			toks = append(toks, token{s[i : i+1], i})
			i++
		case isWordByte(c):
			j := i
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			toks = append(toks, token{strings.ToLower(s[i:j]), i})
			i = j
		default:
			return nil, fmt.Errorf("unexpected %q at offset %d", c, i)
		}
	}
	return toks, nil
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '.' || c == ':' || c == '/' || c == '-' || c == '_'
}

type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos].text
	}
	return ""
}

func (p *parser) next() (token, error) {
	if p.pos >= len(p.toks) {
		return token{}, fmt.Errorf("ends too early")
	}
	p.pos++
	return p.toks[p.pos-1], nil
}

func (p *parser) expr(depth int) (node, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nests deeper than %d", maxDepth)
	}
	l, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	for op := p.peek(); op == "and" || op == "or"; op = p.peek() {
		p.pos++
		r, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		if op == "and" {
			l = andNode{l, r}
		} else {
			l = orNode{l, r}
		}
	}
	return l, nil
}

func (p *parser) unary(depth int) (node, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nests deeper than %d", maxDepth)
	}
	switch p.peek() {
	case "not":
		p.pos++
		x, err := p.unary(depth + 1)
		if err != nil {
			return nil, err
		}
		return notNode{x}, nil
	case "(":
		if p.parenIsArith() {
			return p.relation(depth)
		}
		open := p.toks[p.pos]
		p.pos++
		x, err := p.expr(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, fmt.Errorf("missing ) for the ( at offset %d", open.off)
		}
		p.pos++
		return x, nil
	}
	return p.primitive(depth)
}

func (p *parser) primitive(depth int) (node, error) {
	if p.startsRelation() {
		return p.relation(depth)
	}
	t, err := p.next()
	if err != nil {
		return nil, err
	}
	proto, dir := "", ""
	switch t.text {
	case "ip", "ip6", "arp", "icmp", "icmp6":
		return protoNode{t.text}, nil
	case "tcp", "udp", "sctp":
		switch p.peek() {
		case "src", "dst", "port", "portrange", "host", "net":
			proto = t.text
			if t, err = p.next(); err != nil {
				return nil, err
			}
		default:
			return protoNode{t.text}, nil
		}
	}
	if t.text == "src" || t.text == "dst" {
		dir = t.text
		if op := p.peek(); (op == "or" || op == "and") && p.pos+1 < len(p.toks) &&
			(p.toks[p.pos+1].text == "src" || p.toks[p.pos+1].text == "dst") {
			return nil, fmt.Errorf("%q at offset %d: leave out the direction to match both", dir+" "+op+" "+p.toks[p.pos+1].text, t.off)
		}
		if t, err = p.next(); err != nil {
			return nil, err
		}
	}
	kw := t
	switch kw.text {
	case "host", "net":
		if proto != "" {
			return nil, fmt.Errorf("%q at offset %d: %s cannot qualify %s (write %s and %s …)", proto+" "+kw.text, kw.off, proto, kw.text, proto, kw.text)
		}
		arg, err := p.next()
		if err != nil {
			return nil, fmt.Errorf("%s at offset %d needs an address", kw.text, kw.off)
		}
		if kw.text == "host" {
			a, err := netip.ParseAddr(arg.text)
			if err != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q at offset %d is not an IP address (names are not resolved)", arg.text, arg.off)
			}
			return hostNode{dir, a.Unmap()}, nil
		}
		pf, err := netip.ParsePrefix(arg.text)
		if err != nil {
			a, aerr := netip.ParseAddr(arg.text)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("%q at offset %d is not a prefix such as 10.0.0.0/8", arg.text, arg.off)
			}
			pf = netip.PrefixFrom(a, a.BitLen())
		}
		if pf.Addr().Is4In6() {
			return nil, fmt.Errorf("%q at offset %d: write IPv4-mapped prefixes as IPv4", arg.text, arg.off)
		}
		return netNode{dir, pf.Masked()}, nil
	case "port", "portrange":
		arg, err := p.next()
		if err != nil {
			return nil, fmt.Errorf("%s at offset %d needs a port", kw.text, kw.off)
		}
		lo, hi, isRange := strings.Cut(arg.text, "-")
		if isRange != (kw.text == "portrange") {
			return nil, fmt.Errorf("%q at offset %d: port takes one port, portrange a range such as 8000-8100", arg.text, arg.off)
		}
		if !isRange {
			hi = lo
		}
		a, errA := strconv.ParseUint(lo, 10, 16)
		b, errB := strconv.ParseUint(hi, 10, 16)
		if errA != nil || errB != nil || a > b {
			return nil, fmt.Errorf("%q at offset %d is not a port or port range between 0 and 65535", arg.text, arg.off)
		}
		return portNode{proto, dir, uint16(a), uint16(b)}, nil
	}
	if dir != "" || proto != "" {
		return nil, fmt.Errorf("%q at offset %d: expected host, net, port or portrange", kw.text, kw.off)
	}
	if kw.text == "greater" || kw.text == "less" {
		arg, err := p.next()
		if err != nil {
			return nil, fmt.Errorf("%s at offset %d needs a length", kw.text, kw.off)
		}
		v, err := parseNumber(arg.text)
		if err != nil {
			return nil, fmt.Errorf("%q at offset %d: %s takes a length in bytes (%v)", arg.text, arg.off, kw.text, err)
		}
		op := ">="
		if kw.text == "less" {
			op = "<="
		}
		return relNode{op, lenNode{}, numNode{arg.text, v}}, nil
	}
	if kw.text == ")" || kw.text == "and" || kw.text == "or" {
		return nil, fmt.Errorf("unexpected %q at offset %d", kw.text, kw.off)
	}
	return nil, fmt.Errorf("%q at offset %d is not a filter primitive (host, net, port, portrange, ip, ip6, arp, tcp, udp, sctp, icmp, icmp6, greater, less, a comparison such as tcp[13] & 2 != 0, not, and, or)", kw.text, kw.off)
}

// Relations compare two arithmetic expressions on 32-bit unsigned values,
// as tcpdump's do.
type (
	relNode struct {
		op   string // ">", ">=", "=", "!=", "<" or "<="
		l, r arith
	}
	// arith is an arithmetic expression: numNode, lenNode, loadNode,
	// negNode or binNode.
	arith interface {
		String() string
		// konst is the value of an expression without loads.
		konst() (uint32, bool)
		// slots is how many of BPF's 16 scratch memory slots computing
		// the expression takes.
		slots() int
	}
	// numNode is a literal or a named constant such as tcp-syn; text is
	// how it was written.
	numNode struct {
		text string
		val  uint32
	}
	// lenNode is the length of the packet, link header included.
	lenNode struct{}
	// loadNode is proto[off:size]: size bytes, big-endian, at off from
	// the start of proto's header.
	loadNode struct {
		proto string
		off   arith
		size  int
	}
	negNode struct {
		x    arith
		k    uint32
		isK  bool
		need int
	}
	binNode struct {
		op   string
		l, r arith
		k    uint32
		isK  bool
		need int
	}
)

func (n relNode) String() string { return n.l.String() + " " + n.op + " " + n.r.String() }
func (n numNode) String() string { return n.text }
func (lenNode) String() string   { return "len" }
func (n negNode) String() string { return "-" + n.x.String() }
func (n binNode) String() string { return "(" + n.l.String() + " " + n.op + " " + n.r.String() + ")" }
func (n loadNode) String() string {
	if n.size == 1 {
		return n.proto + "[" + n.off.String() + "]"
	}
	return n.proto + "[" + n.off.String() + ":" + strconv.Itoa(n.size) + "]"
}

func (n numNode) konst() (uint32, bool) { return n.val, true }
func (lenNode) konst() (uint32, bool)   { return 0, false }
func (loadNode) konst() (uint32, bool)  { return 0, false }
func (n negNode) konst() (uint32, bool) { return n.k, n.isK }
func (n binNode) konst() (uint32, bool) { return n.k, n.isK }
func (numNode) slots() int              { return 0 }
func (lenNode) slots() int              { return 0 }
func (n loadNode) slots() int           { return n.off.slots() }
func (n negNode) slots() int            { return n.need }
func (n binNode) slots() int            { return n.need }

// isLeaf says whether computing a into A leaves X alone and takes no slot.
func isLeaf(a arith) bool {
	_, isLen := a.(lenNode)
	_, isK := a.konst()
	return isLen || isK
}

// pairSlots is what computing l into A and r into X takes: see evalPair.
func pairSlots(l, r arith) int {
	switch nl, nr := l.slots(), r.slots(); {
	case isLeaf(l):
		return nr
	case nl >= nr:
		return max(nl, nr+1)
	default:
		return max(nr, nl+1)
	}
}

// maxScratch is the number of BPF scratch memory slots, M[0] to M[15].
const maxScratch = 16

// maxLoadOffset bounds offsets in accessors: no packet is longer, and
// larger offsets would reach the kernel's negative offsets for ancillary
// data once added to a header's.
const maxLoadOffset = 65535

// accessors are the protocols with a proto[offset] accessor.
var accessors = map[string]bool{
	"ether": true, "link": true, "ip": true, "ip6": true,
	"tcp": true, "udp": true, "sctp": true, "icmp": true, "icmp6": true,
}

// constants are tcpdump's names for header offsets and field values.
var constants = map[string]uint32{
	"tcpflags": 13, "tcp-fin": 0x01, "tcp-syn": 0x02, "tcp-rst": 0x04, "tcp-push": 0x08,
	"tcp-ack": 0x10, "tcp-urg": 0x20, "tcp-ece": 0x40, "tcp-cwr": 0x80,

	"icmptype": 0, "icmpcode": 1,
	"icmp-echoreply": 0, "icmp-unreach": 3, "icmp-sourcequench": 4, "icmp-redirect": 5,
	"icmp-echo": 8, "icmp-routeradvert": 9, "icmp-routersolicit": 10, "icmp-timxceed": 11,
	"icmp-paramprob": 12, "icmp-tstamp": 13, "icmp-tstampreply": 14, "icmp-ireq": 15,
	"icmp-ireqreply": 16, "icmp-maskreq": 17, "icmp-maskreply": 18,

	"icmp6type": 0, "icmp6code": 1,
	"icmp6-destinationunreach": 1, "icmp6-packettoobig": 2, "icmp6-timeexceeded": 3,
	"icmp6-parameterproblem": 4, "icmp6-echo": 128, "icmp6-echoreply": 129,
	"icmp6-multicastlistenerquery": 130, "icmp6-multicastlistenerreportv1": 131,
	"icmp6-multicastlistenerdone": 132, "icmp6-routersolicit": 133, "icmp6-routeradvert": 134,
	"icmp6-neighborsolicit": 135, "icmp6-neighboradvert": 136, "icmp6-redirect": 137,
	"icmp6-routerrenum": 138, "icmp6-nodeinformationquery": 139,
	"icmp6-nodeinformationresponse": 140, "icmp6-ineighbordiscoverysolicit": 141,
	"icmp6-ineighbordiscoveryadvert": 142, "icmp6-multicastlistenerreportv2": 143,
	"icmp6-homeagentdiscoveryrequest": 144, "icmp6-homeagentdiscoveryreply": 145,
	"icmp6-mobileprefixsolicit": 146, "icmp6-mobileprefixadvert": 147,
	"icmp6-certpathsolicit": 148, "icmp6-certpathadvert": 149,
	"icmp6-multicastrouteradvert": 151, "icmp6-multicastroutersolicit": 152,
	"icmp6-multicastrouterterm": 153,
}

// binPrec is each binary operator's precedence, tightest last: tcpdump's,
// with ^ between | and & as in C (libpcap gives % and ^ none, so that
// they take everything to their right; parenthesize to be portable).
var binPrec = map[string]int{
	"|": 1, "^": 2, "&": 3, "<<": 4, ">>": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6,
}

const tightest = 6

var relops = map[string]string{">": ">", ">=": ">=", "=": "=", "==": "=", "!=": "!=", "<": "<", "<=": "<="}

// parseNumber reads a decimal, 0x hexadecimal or 0-prefixed octal
// integer of 32 bits, as tcpdump does.
func parseNumber(s string) (uint32, error) {
	digits, base := s, 10
	switch {
	case strings.HasPrefix(s, "0x"):
		digits, base = s[2:], 16
	case len(s) > 1 && s[0] == '0':
		digits, base = s[1:], 8
	}
	v, err := strconv.ParseUint(digits, base, 32)
	if errors.Is(err, strconv.ErrRange) {
		return 0, fmt.Errorf("does not fit in 32 bits")
	} else if err != nil || digits == "" {
		return 0, fmt.Errorf("is not a number")
	}
	return uint32(v), nil
}

// splitArith cuts a word of the lexer into the pieces arithmetic sees:
// numbers, names (the longest known one, as tcp-syn, wins over a minus:
// len-14 is len - 14) and the one-byte operators - / : that words may
// hold, since addresses, prefixes and port ranges need them in a word.
func splitArith(w string) []string {
	var out []string
	for i := 0; i < len(w); {
		if c := w[i]; c == '-' || c == ':' || c == '/' {
			out = append(out, w[i:i+1])
			i++
			continue
		}
		run, plain := i, i
		for run < len(w) && w[run] != ':' && w[run] != '/' {
			run++
		}
		for plain < run && w[plain] != '-' {
			plain++
		}
		end := plain
		if c := w[i]; c >= 'a' && c <= 'z' {
			// A name: the longest known one, else all of it, for the
			// error to quote.
			end = run
			for k := run; k >= plain; k-- {
				if k == run || w[k] == '-' {
					if _, ok := constants[w[i:k]]; ok || w[i:k] == "len" || w[i:k] == "length" {
						end = k
						break
					}
				}
			}
		}
		out = append(out, w[i:end])
		i = end
	}
	return out
}

func isWord(t string) bool { return t != "" && isWordByte(t[0]) }

// splitWord replaces the word at pos with its arithmetic pieces.
func (p *parser) splitWord() {
	if p.pos >= len(p.toks) || !isWord(p.toks[p.pos].text) {
		return
	}
	t := p.toks[p.pos]
	pieces := splitArith(t.text)
	if len(pieces) < 2 {
		return
	}
	ins := make([]token, len(pieces))
	off := t.off
	for i, s := range pieces {
		ins[i] = token{s, off}
		off += len(s)
	}
	p.toks = slices.Replace(p.toks, p.pos, p.pos+1, ins...)
}

// startsRelation says whether the primitive at pos is a comparison: it
// starts with a number, a named constant, len, a minus or an accessor.
func (p *parser) startsRelation() bool {
	if p.pos >= len(p.toks) {
		return false
	}
	t := p.toks[p.pos].text
	if t == "(" {
		return p.parenIsArith()
	}
	if !isWord(t) {
		return false
	}
	if p.pos+1 < len(p.toks) && p.toks[p.pos+1].text == "[" {
		return true
	}
	first := splitArith(t)[0]
	if _, ok := constants[first]; ok || first == "-" || first == "len" || first == "length" {
		return true
	}
	_, err := parseNumber(first)
	return err == nil
}

// parenIsArith says whether the ( at pos opens an arithmetic expression
// rather than a boolean one: what follows its ) tells.
func (p *parser) parenIsArith() bool {
	depth := 0
	for i := p.pos; i < len(p.toks); i++ {
		switch p.toks[i].text {
		case "(":
			depth++
		case ")":
			depth--
			if depth > 0 {
				continue
			}
			if i+1 >= len(p.toks) {
				return false
			}
			next := p.toks[i+1].text
			_, isOp := binPrec[next]
			_, isRel := relops[next]
			return isOp || isRel || next[0] == '-' || next[0] == '/'
		}
	}
	return false
}

// relation parses arith relop arith.
func (p *parser) relation(depth int) (node, error) {
	start := p.toks[p.pos]
	l, err := p.arith(depth)
	if err != nil {
		return nil, err
	}
	if p.pos >= len(p.toks) {
		return nil, fmt.Errorf("the expression at offset %d needs a comparison (>, <, >=, <=, =, !=)", start.off)
	}
	opTok := p.toks[p.pos]
	op, ok := relops[opTok.text]
	if !ok {
		return nil, fmt.Errorf("unexpected %q at offset %d: the expression at offset %d needs a comparison (>, <, >=, <=, =, !=)", opTok.text, opTok.off, start.off)
	}
	p.pos++
	r, err := p.arith(depth)
	if err != nil {
		return nil, err
	}
	need := l.slots()
	if _, ok := r.konst(); !ok {
		need = pairSlots(l, r)
	}
	// Unreachable within maxFilterLen today (the count grows with the
	// logarithm of an expression's size), but the kernel would refuse M[16].
	if need > maxScratch {
		return nil, fmt.Errorf("the comparison at offset %d needs more than BPF's %d scratch memory slots; simplify it", start.off, maxScratch)
	}
	return relNode{op, l, r}, nil
}

func (p *parser) arith(depth int) (arith, error) { return p.binary(1, depth) }

// binary parses operators of precedence prec and tighter, left to right.
func (p *parser) binary(prec, depth int) (arith, error) {
	if prec > tightest {
		return p.operand(depth)
	}
	l, err := p.binary(prec+1, depth)
	if err != nil {
		return nil, err
	}
	for {
		if p.pos >= len(p.toks) {
			return l, nil
		}
		if c := p.toks[p.pos].text[0]; c == '-' || c == '/' {
			p.splitWord() // len -14, len/2: the operator is in a word
		}
		opTok := p.toks[p.pos]
		if binPrec[opTok.text] != prec {
			return l, nil
		}
		p.pos++
		r, err := p.binary(prec+1, depth)
		if err != nil {
			return nil, err
		}
		k, isK := r.konst()
		switch {
		case isK && k == 0 && opTok.text == "/":
			return nil, fmt.Errorf("division by zero: %q at offset %d divides by %s", opTok.text, opTok.off, r)
		case isK && k == 0 && opTok.text == "%":
			return nil, fmt.Errorf("modulo by zero: %q at offset %d takes the remainder of a division by %s", opTok.text, opTok.off, r)
		case isK && k > 31 && (opTok.text == "<<" || opTok.text == ">>"):
			return nil, fmt.Errorf("%q at offset %d shifts by %d, more than 31 bits", opTok.text, opTok.off, k)
		}
		b := binNode{op: opTok.text, l: l, r: r, need: l.slots()}
		if !isK {
			b.need = pairSlots(l, r)
		}
		if lk, ok := l.konst(); ok && isK {
			b.k, b.isK, b.need = fold(opTok.text, lk, k), true, 0
		}
		l = b
	}
}

func fold(op string, a, b uint32) uint32 {
	switch op {
	case "+":
		return a + b
	case "-":
		return a - b
	case "*":
		return a * b
	case "/":
		return a / b
	case "%":
		return a % b
	case "&":
		return a & b
	case "|":
		return a | b
	case "^":
		return a ^ b
	case "<<":
		return a << b
	default: // ">>"
		return a >> b
	}
}

// operand parses a number, a name, len, an accessor, a parenthesized
// expression or a negation.
func (p *parser) operand(depth int) (arith, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nests deeper than %d", maxDepth)
	}
	p.splitWord()
	t, err := p.next()
	if err != nil {
		return nil, err
	}
	switch {
	case t.text == "-":
		x, err := p.operand(depth + 1)
		if err != nil {
			return nil, err
		}
		n := negNode{x: x, need: x.slots()}
		if k, ok := x.konst(); ok {
			n.k, n.isK, n.need = -k, true, 0
		}
		return n, nil
	case t.text == "(":
		x, err := p.arith(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, fmt.Errorf("missing ) for the ( at offset %d", t.off)
		}
		p.pos++
		return x, nil
	case t.text == "len" || t.text == "length":
		return lenNode{}, nil
	case p.peek() == "[":
		return p.load(t, depth)
	}
	if v, ok := constants[t.text]; ok {
		return numNode{t.text, v}, nil
	}
	if !isWord(t.text) {
		return nil, fmt.Errorf("unexpected %q at offset %d: expected a number, a name such as tcp-syn, len or an accessor such as tcp[13]", t.text, t.off)
	}
	v, err := parseNumber(t.text)
	if err != nil {
		if t.text[0] >= '0' && t.text[0] <= '9' {
			return nil, fmt.Errorf("%q at offset %d %v", t.text, t.off, err)
		}
		return nil, fmt.Errorf("%q at offset %d is not a number, a name such as tcp-syn, len or an accessor such as tcp[13]", t.text, t.off)
	}
	return numNode{t.text, v}, nil
}

// load parses proto[offset] or proto[offset:size] after proto.
func (p *parser) load(proto token, depth int) (arith, error) {
	if !accessors[proto.text] {
		return nil, fmt.Errorf("%q at offset %d: byte access is supported for ether, link, ip, ip6, tcp, udp, sctp, icmp and icmp6", proto.text+"[", proto.off)
	}
	open := p.toks[p.pos]
	p.pos++
	off, err := p.arith(depth + 1)
	if err != nil {
		return nil, err
	}
	if k, ok := off.konst(); ok && k > maxLoadOffset {
		return nil, fmt.Errorf("%s[%s] at offset %d: offset %d is beyond any packet (at most %d)", proto.text, off, proto.off, k, maxLoadOffset)
	}
	size := 1
	p.splitWord()
	if p.peek() == ":" {
		p.pos++
		t, err := p.next()
		if err != nil {
			return nil, err
		}
		if t.text != "1" && t.text != "2" && t.text != "4" {
			return nil, fmt.Errorf("size %q at offset %d: a load is 1, 2 or 4 bytes", t.text, t.off)
		}
		size = int(t.text[0] - '0')
	}
	if p.peek() != "]" {
		return nil, fmt.Errorf("missing ] for the [ at offset %d", open.off)
	}
	p.pos++
	return loadNode{proto.text, off, size}, nil
}

// linkType says how a captured frame starts.
type linkType int

const (
	linkEthernet linkType = iota // a 14-byte Ethernet header, then the network header
	linkRawIP                    // the IP header at once (tun devices)
)

// program is classic BPF with symbolic forward labels; assemble resolves
// them, turning jumps too far for an 8-bit offset into long jumps.
type program struct {
	link    linkType
	snaplen uint32
	insns   []pinsn
	labels  int
	// reject is the label that drops the packet whatever the rest of
	// the filter says, as a load past the packet's end does.
	reject int
}

// pinsn is a pseudo-instruction: a plain instruction, a conditional jump
// to labels, an unconditional jump to a label, or a label's place.
type pinsn struct {
	plain  bpf.Instruction
	cond   bool
	x      bool // compares A with X rather than val
	test   bpf.JumpTest
	val    uint32
	jt, jf int
	ja     bool
	target int
	label  int // > 0: this is where label sits
}

func (p *program) newLabel() int { p.labels++; return p.labels }

func (p *program) place(l int) { p.insns = append(p.insns, pinsn{label: l}) }

func (p *program) emit(i bpf.Instruction) { p.insns = append(p.insns, pinsn{plain: i}) }

func (p *program) jump(test bpf.JumpTest, val uint32, t, f int) {
	p.insns = append(p.insns, pinsn{cond: true, test: test, val: val, jt: t, jf: f})
}

func (p *program) jumpX(test bpf.JumpTest, t, f int) {
	p.insns = append(p.insns, pinsn{cond: true, x: true, test: test, jt: t, jf: f})
}

func (p *program) goTo(l int) { p.insns = append(p.insns, pinsn{ja: true, target: l}) }

// l3 is the offset of the network header.
func (p *program) l3() uint32 {
	if p.link == linkEthernet {
		return 14
	}
	return 0
}

// compileFilter compiles n (nil accepts everything) to a program that
// returns snaplen for a packet n selects and 0 otherwise.
func compileFilter(n node, link linkType, snaplen uint32) ([]bpf.RawInstruction, error) {
	p := &program{link: link, snaplen: snaplen}
	t, f := p.newLabel(), p.newLabel()
	p.reject = f
	if n != nil {
		p.gen(n, t, f)
	}
	p.place(t)
	p.emit(bpf.RetConstant{Val: snaplen})
	p.place(f)
	p.emit(bpf.RetConstant{Val: 0})
	return p.assemble(nil)
}

// prefixRaw compiles n in front of a raw program: packets n rejects are
// dropped, the others are left to raw.
func prefixRaw(n node, link linkType, raw []bpf.RawInstruction) ([]bpf.RawInstruction, error) {
	p := &program{link: link}
	t, f := p.newLabel(), p.newLabel()
	p.reject = f
	p.gen(n, t, f)
	p.place(f)
	p.emit(bpf.RetConstant{Val: 0})
	p.place(t)
	return p.assemble(raw)
}

func (p *program) gen(n node, t, f int) {
	switch n := n.(type) {
	case andNode:
		m := p.newLabel()
		p.gen(n.l, m, f)
		p.place(m)
		p.gen(n.r, t, f)
	case orNode:
		m := p.newLabel()
		p.gen(n.l, t, m)
		p.place(m)
		p.gen(n.r, t, f)
	case notNode:
		p.gen(n.x, f, t)
	case protoNode:
		p.genProto(n.proto, t, f)
	case hostNode:
		p.genAddr(n.dir, netip.PrefixFrom(n.addr, n.addr.BitLen()), t, f)
	case netNode:
		p.genAddr(n.dir, n.prefix, t, f)
	case portNode:
		p.genPort(n, t, f)
	case scopeNode:
		p.genScope(n.prefixes, t, f)
	case relNode:
		p.genRel(n, t, f)
	default:
		panic(fmt.Sprintf("capture: no code for %T", n))
	}
}

// isFamily jumps to t for IPv4 (4) or IPv6 (6) packets.
func (p *program) isFamily(v int, t, f int) {
	if p.link == linkEthernet {
		p.emit(bpf.LoadAbsolute{Off: 12, Size: 2})
		p.jump(bpf.JumpEqual, map[int]uint32{4: 0x0800, 6: 0x86dd}[v], t, f)
		return
	}
	p.emit(bpf.LoadAbsolute{Off: 0, Size: 1})
	p.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
	p.jump(bpf.JumpEqual, uint32(v)<<4, t, f)
}

// inProto jumps to t for IPv4 packets whose protocol or IPv6 packets whose
// next header is one of protos.
func (p *program) inProto(v int, protos []uint32, t, f int) {
	off := p.l3() + 9
	if v == 6 {
		off = p.l3() + 6
	}
	m := p.newLabel()
	p.isFamily(v, m, f)
	p.place(m)
	p.emit(bpf.LoadAbsolute{Off: off, Size: 1})
	for i, proto := range protos {
		next := f
		if i < len(protos)-1 {
			next = p.newLabel()
		}
		p.jump(bpf.JumpEqual, proto, t, next)
		if next != f {
			p.place(next)
		}
	}
}

var protoNumbers = map[string]uint32{"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1, "icmp6": 58}

func (p *program) genProto(proto string, t, f int) {
	switch proto {
	case "ip":
		p.isFamily(4, t, f)
	case "ip6":
		p.isFamily(6, t, f)
	case "arp":
		if p.link != linkEthernet {
			p.goTo(f)
			return
		}
		p.emit(bpf.LoadAbsolute{Off: 12, Size: 2})
		p.jump(bpf.JumpEqual, 0x0806, t, f)
	case "icmp":
		p.inProto(4, []uint32{1}, t, f)
	case "icmp6":
		p.inProto(6, []uint32{58}, t, f)
	default: // tcp, udp, sctp: either family
		m := p.newLabel()
		p.inProto(4, []uint32{protoNumbers[proto]}, t, m)
		p.place(m)
		p.inProto(6, []uint32{protoNumbers[proto]}, t, f)
	}
}

// genRel jumps to t when the relation holds. Its accessors first require
// their protocols: tcp[] a TCP packet, ip[] an IPv4 one, and so on, as
// tcpdump's do; transport accessors on IPv4 also require the first (or
// only) fragment. tcp[], udp[] and sctp[] read either family, as port
// does: each family the relation allows is tried in turn.
func (p *program) genRel(n relNode, t, f int) {
	protos := map[string]bool{}
	accessed(n.l, protos)
	accessed(n.r, protos)
	if (protos["ether"] || protos["link"]) && p.link != linkEthernet {
		p.goTo(f) // no link header on this interface, as arp
		return
	}
	v4, v6, ipNeeded := true, true, false
	for proto := range protos {
		switch proto {
		case "ip", "icmp":
			v6, ipNeeded = false, true
		case "ip6", "icmp6":
			v4, ipNeeded = false, true
		case "tcp", "udp", "sctp":
			ipNeeded = true
		}
	}
	var fams []int
	switch {
	case !ipNeeded:
		fams = []int{0}
	case v4 && v6:
		fams = []int{4, 6}
	case v4:
		fams = []int{4}
	case v6:
		fams = []int{6}
	default: // both ip[] and ip6[]: no packet is both
		p.goTo(f)
		return
	}
	var transports []string
	for _, proto := range []string{"tcp", "udp", "sctp", "icmp", "icmp6"} {
		if protos[proto] {
			transports = append(transports, proto)
		}
	}
	for i, fam := range fams {
		next := f
		if i < len(fams)-1 {
			next = p.newLabel()
		}
		p.guard(fam, transports, next)
		p.compare(n, fam, t, f)
		if next != f {
			p.place(next)
		}
	}
}

// accessed adds the protocols a's accessors read.
func accessed(a arith, protos map[string]bool) {
	switch a := a.(type) {
	case loadNode:
		protos[a.proto] = true
		accessed(a.off, protos)
	case negNode:
		accessed(a.x, protos)
	case binNode:
		accessed(a.l, protos)
		accessed(a.r, protos)
	}
}

// guard jumps to miss unless the packet is of family fam (0: any) and
// carries each of transports right after the IP header, in the first
// fragment for IPv4.
func (p *program) guard(fam int, transports []string, miss int) {
	if fam == 0 {
		return
	}
	m := p.newLabel()
	p.isFamily(fam, m, miss)
	p.place(m)
	off := p.l3() + 9
	if fam == 6 {
		off = p.l3() + 6
	}
	for _, proto := range transports {
		m := p.newLabel()
		p.emit(bpf.LoadAbsolute{Off: off, Size: 1})
		p.jump(bpf.JumpEqual, protoNumbers[proto], m, miss)
		p.place(m)
	}
	if fam == 4 && len(transports) > 0 {
		m := p.newLabel()
		p.emit(bpf.LoadAbsolute{Off: p.l3() + 6, Size: 2})
		p.jump(bpf.JumpBitsSet, 0x1fff, miss, m)
		p.place(m)
	}
}

// compare computes both sides for family fam and jumps on the relation.
func (p *program) compare(n relNode, fam int, t, f int) {
	test := map[string]bpf.JumpTest{
		">": bpf.JumpGreaterThan, ">=": bpf.JumpGreaterOrEqual, "=": bpf.JumpEqual,
		"!=": bpf.JumpEqual, "<": bpf.JumpGreaterOrEqual, "<=": bpf.JumpGreaterThan,
	}[n.op]
	if n.op == "!=" || n.op == "<" || n.op == "<=" { // the negation of a test BPF has
		t, f = f, t
	}
	if k, ok := n.r.konst(); ok {
		p.eval(n.l, fam, 0)
		p.jump(test, k, t, f)
		return
	}
	p.evalPair(n.l, n.r, fam, 0)
	p.jumpX(test, t, f)
}

var aluOps = map[string]bpf.ALUOp{
	"+": bpf.ALUOpAdd, "-": bpf.ALUOpSub, "*": bpf.ALUOpMul, "/": bpf.ALUOpDiv, "%": bpf.ALUOpMod,
	"&": bpf.ALUOpAnd, "|": bpf.ALUOpOr, "^": bpf.ALUOpXor, "<<": bpf.ALUOpShiftLeft, ">>": bpf.ALUOpShiftRight,
}

// eval computes a into A for family fam, with scratch slots from slot on.
func (p *program) eval(a arith, fam, slot int) {
	if k, ok := a.konst(); ok {
		p.emit(bpf.LoadConstant{Dst: bpf.RegA, Val: k})
		return
	}
	switch a := a.(type) {
	case lenNode:
		p.emit(bpf.LoadExtension{Num: bpf.ExtLen})
	case negNode:
		// -A as ^A + 1: x/net/bpf's VM, which the tests run, has no
		// BPF_NEG.
		p.eval(a.x, fam, slot)
		p.emit(bpf.ALUOpConstant{Op: bpf.ALUOpXor, Val: ^uint32(0)})
		p.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAdd, Val: 1})
	case binNode:
		if k, ok := a.r.konst(); ok {
			p.eval(a.l, fam, slot)
			p.emit(bpf.ALUOpConstant{Op: aluOps[a.op], Val: k})
			return
		}
		p.evalPair(a.l, a.r, fam, slot)
		p.emit(bpf.ALUOpX{Op: aluOps[a.op]})
	case loadNode:
		p.load(a, fam, slot)
	default:
		panic(fmt.Sprintf("capture: no code for %T", a))
	}
}

// evalPair computes l into A and r into X. The side that needs more
// scratch slots goes first, so that a relation needs as few as it can
// (pairSlots counts them).
func (p *program) evalPair(l, r arith, fam, slot int) {
	switch {
	case isLeaf(l):
		p.eval(r, fam, slot)
		p.emit(bpf.TAX{})
		p.eval(l, fam, slot)
	case l.slots() >= r.slots():
		p.eval(l, fam, slot)
		p.emit(bpf.StoreScratch{Src: bpf.RegA, N: slot})
		p.eval(r, fam, slot+1)
		p.emit(bpf.TAX{})
		p.emit(bpf.LoadScratch{Dst: bpf.RegA, N: slot})
	default:
		p.eval(r, fam, slot)
		p.emit(bpf.StoreScratch{Src: bpf.RegA, N: slot})
		p.eval(l, fam, slot+1)
		p.emit(bpf.LoadScratch{Dst: bpf.RegX, N: slot})
	}
}

// load reads a's bytes into A. Transport headers start after the IPv4
// header's length (IHL) or the fixed IPv6 header. A variable offset
// beyond maxLoadOffset rejects the packet, as a load past its end does.
func (p *program) load(a loadNode, fam, slot int) {
	var base uint32
	ihl := false
	switch a.proto {
	case "ip", "ip6":
		base = p.l3()
	case "icmp6":
		base = p.l3() + 40
	case "tcp", "udp", "sctp", "icmp":
		base = p.l3()
		if fam == 6 {
			base += 40
		} else {
			ihl = true
		}
	}
	if k, ok := a.off.konst(); ok {
		if ihl {
			p.emit(bpf.LoadMemShift{Off: p.l3()})
			p.emit(bpf.LoadIndirect{Off: base + k, Size: a.size})
		} else {
			p.emit(bpf.LoadAbsolute{Off: base + k, Size: a.size})
		}
		return
	}
	p.eval(a.off, fam, slot)
	ok := p.newLabel()
	p.jump(bpf.JumpGreaterThan, maxLoadOffset, p.reject, ok)
	p.place(ok)
	if ihl {
		p.emit(bpf.LoadMemShift{Off: p.l3()})
		p.emit(bpf.ALUOpX{Op: bpf.ALUOpAdd})
	}
	p.emit(bpf.TAX{})
	p.emit(bpf.LoadIndirect{Off: base, Size: a.size})
}

// genAddr jumps to t for packets whose source and/or destination address
// (dir) is in pf.
func (p *program) genAddr(dir string, pf netip.Prefix, t, f int) {
	v := 4
	if pf.Addr().Is6() {
		v = 6
	}
	m := p.newLabel()
	p.isFamily(v, m, f)
	p.place(m)
	var offs []uint32
	if v == 4 {
		offs = []uint32{p.l3() + 12, p.l3() + 16}
	} else {
		offs = []uint32{p.l3() + 8, p.l3() + 24}
	}
	switch dir {
	case "src":
		offs = offs[:1]
	case "dst":
		offs = offs[1:]
	}
	for i, off := range offs {
		next := f
		if i < len(offs)-1 {
			next = p.newLabel()
		}
		p.prefixMatch(off, pf, t, next)
		if next != f {
			p.place(next)
		}
	}
}

// prefixMatch jumps to t when the address at off is in pf, word by word.
func (p *program) prefixMatch(off uint32, pf netip.Prefix, t, f int) {
	b := pf.Addr().AsSlice()
	bits := pf.Bits()
	words := 0
	for w := 0; w*32 < bits; w++ {
		words++
	}
	if words == 0 { // 0.0.0.0/0 or ::/0: every packet of the family
		p.goTo(t)
		return
	}
	for w := range words {
		n := min(32, bits-w*32)
		mask := ^uint32(0) << (32 - n)
		val := uint32(b[4*w])<<24 | uint32(b[4*w+1])<<16 | uint32(b[4*w+2])<<8 | uint32(b[4*w+3])
		p.emit(bpf.LoadAbsolute{Off: off + uint32(4*w), Size: 4})
		if mask != ^uint32(0) {
			p.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: mask})
		}
		next := t
		if w < words-1 {
			next = p.newLabel()
		}
		p.jump(bpf.JumpEqual, val&mask, next, f)
		if next != t {
			p.place(next)
		}
	}
}

// genPort jumps to t for TCP, UDP or SCTP packets (n.proto, or any) whose
// source and/or destination port is in n's range. IPv4 fragments after the
// first carry no ports; IPv6 extension headers are not followed.
func (p *program) genPort(n portNode, t, f int) {
	protos := []uint32{6, 17, 132}
	if n.proto != "" {
		protos = []uint32{protoNumbers[n.proto]}
	}
	portOffs := []uint32{0, 2}
	switch n.dir {
	case "src":
		portOffs = portOffs[:1]
	case "dst":
		portOffs = portOffs[1:]
	}
	v6 := p.newLabel()
	// IPv4: not a later fragment, then ports after the variable header.
	m := p.newLabel()
	p.inProto(4, protos, m, v6)
	p.place(m)
	p.emit(bpf.LoadAbsolute{Off: p.l3() + 6, Size: 2})
	m2 := p.newLabel()
	p.jump(bpf.JumpBitsSet, 0x1fff, v6, m2)
	p.place(m2)
	for i, off := range portOffs {
		next := v6
		if i < len(portOffs)-1 {
			next = p.newLabel()
		}
		p.emit(bpf.LoadMemShift{Off: p.l3()})
		p.emit(bpf.LoadIndirect{Off: p.l3() + off, Size: 2})
		p.portTest(n.lo, n.hi, t, next)
		if next != v6 {
			p.place(next)
		}
	}
	// IPv6: ports right after the fixed header.
	p.place(v6)
	m3 := p.newLabel()
	p.inProto(6, protos, m3, f)
	p.place(m3)
	for i, off := range portOffs {
		next := f
		if i < len(portOffs)-1 {
			next = p.newLabel()
		}
		p.emit(bpf.LoadAbsolute{Off: p.l3() + 40 + off, Size: 2})
		p.portTest(n.lo, n.hi, t, next)
		if next != f {
			p.place(next)
		}
	}
}

// portTest jumps on the value in A: lo <= A <= hi.
func (p *program) portTest(lo, hi uint16, t, f int) {
	if lo == hi {
		p.jump(bpf.JumpEqual, uint32(lo), t, f)
		return
	}
	m := p.newLabel()
	p.jump(bpf.JumpGreaterOrEqual, uint32(lo), m, f)
	p.place(m)
	p.jump(bpf.JumpGreaterThan, uint32(hi), f, t)
}

// genScope jumps to t for IP packets from or to an address in prefixes.
// IPv4 prefixes are compared as ranges on one load of each address, two
// instructions a prefix, so that a scope of many prefixes still fits.
func (p *program) genScope(prefixes []netip.Prefix, t, f int) {
	var v4, v6 []netip.Prefix
	for _, pf := range prefixes {
		if pf.Addr().Is4() {
			v4 = append(v4, pf)
		} else {
			v6 = append(v6, pf)
		}
	}
	notV4 := p.newLabel()
	if len(v4) > 0 {
		m := p.newLabel()
		p.isFamily(4, m, notV4)
		p.place(m)
		dst := p.newLabel()
		// Two instructions a prefix and direction, on one load of the
		// address: A keeps it across the comparisons.
		for k, off := range []uint32{p.l3() + 12, p.l3() + 16} {
			miss := dst
			if k == 1 {
				miss = f
			}
			p.emit(bpf.LoadAbsolute{Off: off, Size: 4})
			// Matches jump to a long jump placed after every group of
			// ranges, so that each stays within a short jump's reach.
			const group = 100
			for g := 0; g < len(v4); g += group {
				hit, after := p.newLabel(), p.newLabel()
				end := min(g+group, len(v4))
				for i := g; i < end; i++ {
					next := after
					if i < end-1 {
						next = p.newLabel()
					}
					lo, hi := rangeOf(v4[i])
					m := p.newLabel()
					p.jump(bpf.JumpGreaterOrEqual, lo, m, next)
					p.place(m)
					p.jump(bpf.JumpGreaterThan, hi, next, hit)
					if next != after {
						p.place(next)
					}
				}
				p.place(hit)
				p.goTo(t)
				p.place(after)
			}
			p.goTo(miss)
			if k == 0 {
				p.place(dst)
			}
		}
	}
	p.place(notV4)
	if len(v6) == 0 {
		p.goTo(f)
		return
	}
	for i, pf := range v6 {
		next := f
		if i < len(v6)-1 {
			next = p.newLabel()
		}
		p.genAddr("", pf, t, next)
		if next != f {
			p.place(next)
		}
	}
}

func rangeOf(pf netip.Prefix) (lo, hi uint32) {
	b := pf.Masked().Addr().As4()
	lo = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	hi = lo | ^uint32(0)>>pf.Bits()
	if pf.Bits() == 0 {
		hi = ^uint32(0)
	}
	return lo, hi
}

// assemble lays the program out, appends tail unchanged, and returns raw
// instructions. A conditional jump whose target is more than 255
// instructions ahead becomes a conditional jump over two long jumps.
func (p *program) assemble(tail []bpf.RawInstruction) ([]bpf.RawInstruction, error) {
	long := make([]bool, len(p.insns))
	pos := make([]int, len(p.insns))
	labelPos := make([]int, p.labels+1)
	for {
		n := 0
		for i, in := range p.insns {
			pos[i] = n
			switch {
			case in.label > 0:
				labelPos[in.label] = n
			case in.cond && long[i]:
				n += 3
			default:
				n++
			}
		}
		if n+len(tail) > maxInstructions {
			return nil, fmt.Errorf("compiles to %d BPF instructions, more than the kernel's %d", n+len(tail), maxInstructions)
		}
		// A label at the very end points at the tail.
		changed := false
		for i, in := range p.insns {
			if in.cond && !long[i] && (labelPos[in.jt]-pos[i]-1 > 255 || labelPos[in.jf]-pos[i]-1 > 255) {
				long[i] = true
				changed = true
			}
		}
		if !changed {
			break
		}
	}
	var out []bpf.Instruction
	for i, in := range p.insns {
		switch {
		case in.label > 0:
		case in.cond && long[i]:
			out = append(out,
				condJump(in, 0, 1),
				bpf.Jump{Skip: uint32(labelPos[in.jt] - pos[i] - 2)},
				bpf.Jump{Skip: uint32(labelPos[in.jf] - pos[i] - 3)})
		case in.cond:
			out = append(out, condJump(in, uint8(labelPos[in.jt]-pos[i]-1), uint8(labelPos[in.jf]-pos[i]-1)))
		case in.ja:
			out = append(out, bpf.Jump{Skip: uint32(labelPos[in.target] - pos[i] - 1)})
		default:
			out = append(out, in.plain)
		}
	}
	raw, err := bpf.Assemble(out)
	if err != nil {
		return nil, fmt.Errorf("assemble: %w", err)
	}
	return append(raw, tail...), nil
}

func condJump(in pinsn, skipTrue, skipFalse uint8) bpf.Instruction {
	if in.x {
		return bpf.JumpIfX{Cond: in.test, SkipTrue: skipTrue, SkipFalse: skipFalse}
	}
	return bpf.JumpIf{Cond: in.test, Val: in.val, SkipTrue: skipTrue, SkipFalse: skipFalse}
}

// parseRawBPF reads a classic BPF program as `tcpdump -ddd` prints it: the
// instruction count, then one "code jt jf k" line per instruction, in
// decimal; lines may also be separated by commas, as iptables' bpf match
// takes them. Jumps must stay inside the program and it must end in a
// return; the kernel checks the rest when the filter is attached.
func parseRawBPF(s string) ([]bpf.RawInstruction, error) {
	if len(s) > 64*maxInstructions {
		return nil, fmt.Errorf("is longer than %d characters", 64*maxInstructions)
	}
	var lines []string
	for line := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == '\n' || r == ',' || r == '\r' }) {
		if line = strings.TrimSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("is empty")
	}
	count, err := strconv.Atoi(lines[0])
	if err != nil {
		return nil, fmt.Errorf("line 1: %q is not the instruction count", lines[0])
	}
	if count < 1 || count > maxInstructions {
		return nil, fmt.Errorf("line 1: %d instructions, want 1 to %d", count, maxInstructions)
	}
	if count != len(lines)-1 {
		return nil, fmt.Errorf("line 1 says %d instructions, %d follow", count, len(lines)-1)
	}
	prog := make([]bpf.RawInstruction, count)
	for i, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) != 4 {
			return nil, fmt.Errorf("line %d: %q is not \"code jt jf k\"", i+2, line)
		}
		code, e1 := strconv.ParseUint(f[0], 10, 16)
		jt, e2 := strconv.ParseUint(f[1], 10, 8)
		jf, e3 := strconv.ParseUint(f[2], 10, 8)
		k, e4 := strconv.ParseUint(f[3], 10, 32)
		if e1 != nil || e2 != nil || e3 != nil || e4 != nil {
			return nil, fmt.Errorf("line %d: %q is not four decimal numbers", i+2, line)
		}
		in := bpf.RawInstruction{Op: uint16(code), Jt: uint8(jt), Jf: uint8(jf), K: uint32(k)}
		if in.Op&0x07 == 0x05 { // BPF_JMP
			if in.Op&0xf0 == 0x00 { // BPF_JA
				if uint64(i)+1+uint64(in.K) >= uint64(count) {
					return nil, fmt.Errorf("line %d: jumps past the end", i+2)
				}
			} else if i+1+int(in.Jt) >= count || i+1+int(in.Jf) >= count {
				return nil, fmt.Errorf("line %d: jumps past the end", i+2)
			}
		}
		prog[i] = in
	}
	if prog[count-1].Op&0x07 != 0x06 { // BPF_RET
		return nil, fmt.Errorf("line %d: the program must end in a return", count+1)
	}
	return prog, nil
}
