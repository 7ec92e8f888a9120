package dnsscan_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// testZone describes the data of a test's authoritative server, written so
// that dnsmasq and the in-process server serve the same answers.
type testZone struct {
	// Zone is served authoritatively, with NS ns1.<Zone> at 127.0.0.1.
	Zone string
	// Records are the zone's records and names outside it that a CNAME
	// points to (dnsmasq answers a CNAME only to a name it knows). Type
	// "A" takes a comma-separated list of IPv4 and IPv6 addresses.
	Records []testRR
	// Wildcards maps a domain to the address every name at or below it
	// answers with, unless Records has the name.
	Wildcards map[string]string
	// AllowAXFR allows zone transfers to 127.0.0.1.
	AllowAXFR bool
}

type testRR struct {
	Name, Type, Value string
	Pref              int // MX only
}

// testServer is an authoritative DNS server on 127.0.0.1 that tells which
// questions it was asked.
type testServer interface {
	Addr() string
	Port() int
	// Queries returns every question asked so far as "TYPE name".
	Queries(t *testing.T) []string
}

type startFunc func(t *testing.T, z testZone) testServer

// freePort finds a port free for both UDP and TCP on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := l.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port for UDP and TCP")
	return 0
}

// ---- dnsmasq ----

type dnsmasqServer struct {
	port int
	log  string
}

func (s *dnsmasqServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }
func (s *dnsmasqServer) Port() int    { return s.port }

// Queries asks a marker question and reads the query log up to it:
// dnsmasq answers in order, so every earlier question is logged by then.
func (s *dnsmasqServer) Queries(t *testing.T) []string {
	t.Helper()
	marker := fmt.Sprintf("marker-%d.invalid", time.Now().UnixNano())
	m := new(dns.Msg)
	m.SetQuestion(marker+".", dns.TypeA)
	_, _, _ = new(dns.Client).Exchange(m, s.Addr())
	var out []string
	tries := 0
	require.Eventually(t, func() bool {
		out = nil
		if tries++; tries%50 == 0 {
			// The marker went over UDP and may have been lost while the
			// machine was busy: ask again (later questions log later).
			_, _, _ = new(dns.Client).Exchange(m, s.Addr())
		}
		f, err := os.Open(s.log)
		if err != nil {
			return false
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// "Nov 21 11:55:18 dnsmasq[14376]: query[A] example.test from 127.0.0.1"
			_, rest, ok := strings.Cut(sc.Text(), ": query[")
			if !ok {
				continue
			}
			typ, rest, _ := strings.Cut(rest, "] ")
			name, _, _ := strings.Cut(rest, " ")
			if name == marker {
				return true
			}
			if strings.HasSuffix(name, ".invalid") {
				continue // the readiness probe
			}
			out = append(out, typ+" "+strings.ToLower(name))
		}
		return false
	}, 20*time.Second, 10*time.Millisecond, "dnsmasq never logged the marker question %s", marker)
	return out
}

func startDnsmasq(t *testing.T, z testZone) testServer {
	t.Helper()
	bin, err := exec.LookPath("dnsmasq")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/dnsmasq"); statErr != nil {
			t.Skip("dnsmasq is not installed (apt-get install dnsmasq); the in-process server covers the same cases")
		}
		bin = "/usr/sbin/dnsmasq"
	}
	dir := t.TempDir()
	s := &dnsmasqServer{port: freePort(t), log: filepath.Join(dir, "queries.log")}
	var conf strings.Builder
	fmt.Fprintf(&conf, "port=%d\nlisten-address=127.0.0.1\nbind-interfaces\nno-resolv\nno-hosts\nno-poll\n", s.port)
	fmt.Fprintf(&conf, "pid-file=\nlog-queries\nlog-facility=%s\nlocal-ttl=0\n", s.log)
	// The auth-server address is one dnsmasq does not listen on: queries
	// on 127.0.0.1 get the normal service, which answers the auth zone
	// (NS records and transfers included) as well as the wildcards.
	fmt.Fprintf(&conf, "auth-server=ns1.%s,127.0.0.254\nauth-zone=%s\nlocal=/%s/\n", z.Zone, z.Zone, z.Zone)
	fmt.Fprintf(&conf, "host-record=ns1.%s,127.0.0.1\n", z.Zone)
	if z.AllowAXFR {
		conf.WriteString("auth-peer=127.0.0.1\n")
	}
	for _, rr := range z.Records {
		switch rr.Type {
		case "A": // addresses, IPv4 or IPv6
			fmt.Fprintf(&conf, "host-record=%s,%s\n", rr.Name, rr.Value)
		case "CNAME":
			fmt.Fprintf(&conf, "cname=%s,%s\n", rr.Name, rr.Value)
		case "MX":
			fmt.Fprintf(&conf, "mx-host=%s,%s,%d\n", rr.Name, rr.Value, rr.Pref)
		case "TXT":
			fmt.Fprintf(&conf, "txt-record=%s,%q\n", rr.Name, rr.Value)
		default:
			t.Fatalf("dnsmasq test server: record type %s", rr.Type)
		}
		if !strings.HasSuffix(rr.Name, "."+z.Zone) && rr.Name != z.Zone {
			fmt.Fprintf(&conf, "local=/%s/\n", parentOf(rr.Name))
		}
	}
	for domain, ip := range z.Wildcards {
		fmt.Fprintf(&conf, "address=/%s/%s\nlocal=/%s/\n", domain, ip, domain)
	}
	path := filepath.Join(dir, "dnsmasq.conf")
	require.NoError(t, os.WriteFile(path, []byte(conf.String()), 0o644))
	args := []string{"--keep-in-foreground", "-C", path}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root", "--group=root")
	}
	cmd := exec.Command(bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	// Ready once it answers.
	require.Eventually(t, func() bool {
		select {
		case <-exited:
			t.Fatalf("dnsmasq exited: %s", stderr.String())
		default:
		}
		m := new(dns.Msg)
		m.SetQuestion("ready.invalid.", dns.TypeA)
		c := &dns.Client{Timeout: 200 * time.Millisecond}
		_, _, err := c.Exchange(m, s.Addr())
		return err == nil
	}, 10*time.Second, 20*time.Millisecond)
	return s
}

func parentOf(name string) string {
	_, p, _ := strings.Cut(name, ".")
	return p
}

// ---- in-process miekg/dns server ----

type inprocServer struct {
	port int
	z    testZone
	// drop makes the server read questions and never answer.
	drop bool
	// seen receives each question without blocking, for tests that wait
	// for the first one.
	seen chan string

	mu      sync.Mutex
	queries []string
}

func (s *inprocServer) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }
func (s *inprocServer) Port() int    { return s.port }

func (s *inprocServer) Queries(*testing.T) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

func startInproc(t *testing.T, z testZone) testServer {
	return startInprocServer(t, z, false)
}

func startInprocServer(t *testing.T, z testZone, drop bool) *inprocServer {
	t.Helper()
	s := &inprocServer{z: z, drop: drop, seen: make(chan string, 1)}
	var udp net.PacketConn
	var tcp net.Listener
	for range 50 {
		var err error
		udp, err = net.ListenPacket("udp", "127.0.0.1:0")
		require.NoError(t, err)
		s.port = udp.LocalAddr().(*net.UDPAddr).Port
		if tcp, err = net.Listen("tcp", s.Addr()); err == nil {
			break
		}
		udp.Close()
		udp = nil
	}
	require.NotNil(t, udp, "no free port for UDP and TCP")
	var wg sync.WaitGroup
	var servers []*dns.Server
	for _, srv := range []*dns.Server{{PacketConn: udp, Handler: s}, {Listener: tcp, Handler: s}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		servers = append(servers, srv)
		wg.Go(func() { _ = srv.ActivateAndServe() })
		<-started
	}
	t.Cleanup(func() {
		for _, srv := range servers {
			_ = srv.Shutdown()
		}
		wg.Wait()
	})
	return s
}

func (s *inprocServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
	line := dns.TypeToString[q.Qtype] + " " + name
	s.mu.Lock()
	s.queries = append(s.queries, line)
	s.mu.Unlock()
	select {
	case s.seen <- line:
	default:
	}
	if s.drop {
		return
	}
	if q.Qtype == dns.TypeAXFR {
		s.transfer(w, req, name)
		return
	}
	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.Authoritative = true
	rrs, exists := s.lookup(name)
	if !exists {
		resp.Rcode = dns.RcodeNameError
		_ = w.WriteMsg(resp)
		return
	}
	// A CNAME answers every type but CNAME with the chain to its target.
	cur := name
	for range 8 {
		var next string
		for _, rr := range rrs {
			if c, ok := rr.(*dns.CNAME); ok {
				resp.Answer = append(resp.Answer, c)
				next = strings.TrimSuffix(c.Target, ".")
			}
		}
		if next == "" || q.Qtype == dns.TypeCNAME {
			break
		}
		cur = next
		rrs, _ = s.lookup(cur)
	}
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Qtype && q.Qtype != dns.TypeCNAME {
			resp.Answer = append(resp.Answer, rr)
		}
	}
	_ = w.WriteMsg(resp)
}

// lookup returns the records of name and whether the name exists.
func (s *inprocServer) lookup(name string) ([]dns.RR, bool) {
	var out []dns.RR
	for _, rr := range s.zoneRRs() {
		if strings.TrimSuffix(rr.Header().Name, ".") == name {
			out = append(out, rr)
		}
	}
	if len(out) > 0 {
		return out, true
	}
	for domain, ip := range s.z.Wildcards {
		if name == domain || strings.HasSuffix(name, "."+domain) {
			rr, _ := dns.NewRR(fmt.Sprintf("%s. 0 IN A %s", name, ip))
			return []dns.RR{rr}, true
		}
	}
	return nil, false
}

// zoneRRs returns the zone's records with its SOA, NS and ns1 address.
func (s *inprocServer) zoneRRs() []dns.RR {
	z := s.z.Zone
	texts := []string{
		fmt.Sprintf("%s. 600 IN SOA ns1.%s. hostmaster.%s. 1 1200 180 1209600 600", z, z, z),
		fmt.Sprintf("%s. 600 IN NS ns1.%s.", z, z),
		fmt.Sprintf("ns1.%s. 600 IN A 127.0.0.1", z),
	}
	for _, rr := range s.z.Records {
		switch rr.Type {
		case "MX":
			texts = append(texts, fmt.Sprintf("%s. 600 IN MX %d %s.", rr.Name, rr.Pref, rr.Value))
		case "TXT":
			texts = append(texts, fmt.Sprintf("%s. 600 IN TXT %q", rr.Name, rr.Value))
		case "CNAME":
			texts = append(texts, fmt.Sprintf("%s. 600 IN CNAME %s.", rr.Name, rr.Value))
		default: // addresses, IPv4 or IPv6
			for _, v := range strings.Split(rr.Value, ",") {
				typ := "A"
				if strings.Contains(v, ":") {
					typ = "AAAA"
				}
				texts = append(texts, fmt.Sprintf("%s. 600 IN %s %s", rr.Name, typ, v))
			}
		}
	}
	out := make([]dns.RR, 0, len(texts))
	for _, txt := range texts {
		rr, err := dns.NewRR(txt)
		if err != nil {
			panic(err)
		}
		out = append(out, rr)
	}
	return out
}

func (s *inprocServer) transfer(w dns.ResponseWriter, req *dns.Msg, name string) {
	if !s.z.AllowAXFR || name != s.z.Zone {
		resp := new(dns.Msg)
		resp.SetRcode(req, dns.RcodeRefused)
		_ = w.WriteMsg(resp)
		return
	}
	var rrs []dns.RR
	for _, rr := range s.zoneRRs() {
		n := strings.TrimSuffix(rr.Header().Name, ".")
		if n == name || strings.HasSuffix(n, "."+name) {
			rrs = append(rrs, rr)
		}
	}
	rrs = append(rrs, rrs[0]) // the SOA again ends the transfer
	ch := make(chan *dns.Envelope, 1)
	ch <- &dns.Envelope{RR: rrs}
	close(ch)
	_ = new(dns.Transfer).Out(w, req, ch)
	_ = w.Close()
}

// ---- sanity of the servers themselves ----

func TestServersAgree(t *testing.T) {
	t.Parallel()
	z := testZone{
		Zone: "example.test",
		Records: []testRR{
			{Name: "www.example.test", Type: "A", Value: "192.0.2.10"},
			{Name: "api.example.test", Type: "CNAME", Value: "www.example.test"},
		},
		Wildcards: map[string]string{"wild.test": "192.0.2.99"},
	}
	for name, start := range map[string]startFunc{"dnsmasq": startDnsmasq, "inproc": startInproc} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := start(t, z)
			ask := func(q string, qt uint16) *dns.Msg {
				m := new(dns.Msg)
				m.SetQuestion(q, qt)
				r, _, err := (&dns.Client{Timeout: 2 * time.Second}).ExchangeContext(context.Background(), m, s.Addr())
				require.NoError(t, err)
				return r
			}
			require.Len(t, ask("www.example.test.", dns.TypeA).Answer, 1)
			require.Len(t, ask("api.example.test.", dns.TypeA).Answer, 2)
			require.Len(t, ask("example.test.", dns.TypeNS).Answer, 1)
			require.Equal(t, dns.RcodeNameError, ask("nope.example.test.", dns.TypeA).Rcode)
			require.Len(t, ask("any.wild.test.", dns.TypeA).Answer, 1)
			require.Contains(t, s.Queries(t), "A www.example.test")
		})
	}
}
