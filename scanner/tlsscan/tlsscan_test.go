package tlsscan_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
	"github.com/scanfleet/scanfleet/scanner/scannertest"
	"github.com/scanfleet/scanfleet/scanner/tlsscan"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// ---- a test PKI ----

type pki struct {
	caCert *x509.Certificate
	caKey  crypto.Signer
	caFile string
}

var serial atomic.Int64

func newPKI(t *testing.T) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: "scanfleet test CA"},
		NotBefore:             time.Now().Add(-48 * time.Hour),
		NotAfter:              time.Now().Add(48 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	file := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	return &pki{caCert: ca, caKey: key, caFile: file}
}

type leafOpts struct {
	names      []string
	notBefore  time.Time
	notAfter   time.Time
	selfSigned bool
	rsaBits    int // 0: ECDSA P-256
}

func (p *pki) leaf(t *testing.T, o leafOpts) tls.Certificate {
	t.Helper()
	var key crypto.Signer
	var err error
	if o.rsaBits != 0 {
		key, err = rsa.GenerateKey(rand.Reader, o.rsaBits)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	require.NoError(t, err)
	if o.notBefore.IsZero() {
		o.notBefore = time.Now().Add(-time.Hour)
	}
	if o.notAfter.IsZero() {
		o.notAfter = time.Now().Add(24 * time.Hour)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: o.names[0]},
		DNSNames:     o.names,
		NotBefore:    o.notBefore,
		NotAfter:     o.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	parent, signer := p.caCert, p.caKey
	if o.selfSigned {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), signer)
	require.NoError(t, err)
	chain := [][]byte{der}
	if !o.selfSigned {
		chain = append(chain, p.caCert.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key}
}

// ---- TLS servers on loopback ----

type server struct {
	addr    string
	port    int
	accepts atomic.Int64
}

// startTLS serves TLS on ip:0 with cert, speaking versions min to max
// (0, 0: Go's defaults), and closes each connection after the handshake.
func startTLS(t *testing.T, ip string, cert tls.Certificate, minV, maxV uint16) *server {
	t.Helper()
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minV, MaxVersion: maxV}
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	require.NoError(t, err)
	s := &server{addr: l.Addr().String(), port: l.Addr().(*net.TCPAddr).Port}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_ = tls.Server(c, conf).Handshake()
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return s
}

func input(args map[string]any, targets ...string) *scanfleet.TaskInput {
	return &scanfleet.TaskInput{
		Type: "tls", Args: args, Targets: targets,
		Scope: &scanfleet.Scope{
			Include: []string{"127.0.0.0/8", "*.example.test"},
			Exclude: []string{"127.0.0.2"},
		},
	}
}

func findings(env *scanner.LocalEnv) []string {
	var out []string
	for _, r := range env.Records() {
		if r.Kind == scanfleet.KindFinding {
			out = append(out, r.Data["name"].(string))
		}
	}
	slices.Sort(out)
	return out
}

func records(env *scanner.LocalEnv, kind scanfleet.RecordKind) []scanfleet.Record {
	var out []scanfleet.Record
	for _, r := range env.Records() {
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

func TestCertificates(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	resolver := scannertest.Resolver(t, map[string][]string{
		"good.example.test": {"127.0.0.1"},
		"gone.example.test": {"198.51.100.1"},
	})
	cases := []struct {
		name     string
		cert     leafOpts
		minV     uint16
		maxV     uint16
		byIP     bool // target the address, not good.example.test
		findings []string
		versions []any
	}{
		{name: "good", cert: leafOpts{names: []string{"good.example.test", "api.example.test", "*.example.test", "www.other.test"}},
			versions: []any{"TLS 1.2", "TLS 1.3"}},
		{name: "expired", cert: leafOpts{names: []string{"good.example.test"}, notBefore: time.Now().Add(-40 * time.Hour), notAfter: time.Now().Add(-time.Hour)},
			findings: []string{"tls-certificate-expired"}},
		{name: "not yet valid", cert: leafOpts{names: []string{"good.example.test"}, notBefore: time.Now().Add(time.Hour), notAfter: time.Now().Add(40 * time.Hour)},
			findings: []string{"tls-certificate-not-yet-valid"}},
		{name: "self-signed", cert: leafOpts{names: []string{"good.example.test"}, selfSigned: true},
			findings: []string{"tls-certificate-self-signed"}},
		{name: "wrong name", cert: leafOpts{names: []string{"other.example.test"}},
			findings: []string{"tls-certificate-name-mismatch"}},
		{name: "wrong name by address", cert: leafOpts{names: []string{"other.example.test"}}, byIP: true},
		{name: "weak key", cert: leafOpts{names: []string{"good.example.test"}, rsaBits: 1024},
			findings: []string{"tls-weak-key"}},
		{name: "legacy versions", cert: leafOpts{names: []string{"good.example.test"}}, minV: tls.VersionTLS10, maxV: tls.VersionTLS11,
			findings: []string{"tls-deprecated-protocol"}, versions: []any{"TLS 1.0", "TLS 1.1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cert := p.leaf(t, c.cert)
			s := startTLS(t, "127.0.0.1", cert, c.minV, c.maxV)
			target := "good.example.test:" + strconv.Itoa(s.port)
			if c.byIP {
				target = s.addr
			}
			env := &scanner.LocalEnv{}
			in := input(map[string]any{"ca_file": p.caFile}, target)
			require.NoError(t, tlsscan.Executor{Resolver: resolver}.Run(context.Background(), in, env))

			require.Equal(t, c.findings, findings(env))
			certs := records(env, scanfleet.KindCertificate)
			require.Len(t, certs, 1)
			rec := certs[0].Data
			leaf, err := x509.ParseCertificate(cert.Certificate[0])
			require.NoError(t, err)
			require.Equal(t, certs[0].Key, rec["sha256"])
			require.Equal(t, leaf.Subject.String(), rec["subject"])
			require.Equal(t, leaf.NotAfter.UTC().Format(time.RFC3339), rec["not_after"])
			require.Equal(t, s.addr, rec["seen_at"])
			require.Equal(t, leaf.SerialNumber.Text(16), rec["serial"])
			if c.cert.rsaBits != 0 {
				require.Equal(t, "rsa", rec["key_type"])
				require.Equal(t, 1024, rec["key_bits"])
			} else {
				require.Equal(t, "ecdsa", rec["key_type"])
				require.Equal(t, 256, rec["key_bits"])
			}
			require.Equal(t, c.cert.selfSigned, rec["self_signed"])
			if c.versions != nil {
				require.Equal(t, c.versions, rec["versions"])
			}
			if c.byIP {
				require.NotContains(t, rec, "hostname", "no SNI for an address target")
			} else {
				require.Equal(t, "good.example.test", rec["hostname"])
			}
			require.Equal(t, map[string]int64{"success": 1}, env.Results()["statuses"])
		})
	}

	t.Run("sans become domains", func(t *testing.T) {
		t.Parallel()
		s := startTLS(t, "127.0.0.1", p.leaf(t, leafOpts{names: []string{"good.example.test", "api.example.test", "*.dev.example.test", "www.other.test"}}), 0, 0)
		env := &scanner.LocalEnv{}
		in := input(map[string]any{"ca_file": p.caFile, "versions": false}, "good.example.test:"+strconv.Itoa(s.port))
		require.NoError(t, tlsscan.Executor{Resolver: resolver}.Run(context.Background(), in, env))
		got := map[string]map[string]any{}
		for _, r := range records(env, scanfleet.KindDomain) {
			got[r.Key] = r.Data
		}
		require.Len(t, got, 3, "%v", got)
		require.Equal(t, "tls-san", got["api.example.test"]["source"])
		require.Equal(t, true, got["dev.example.test"]["wildcard_san"])
		require.Contains(t, got, "good.example.test")
		require.NotContains(t, got, "www.other.test", "outside the scope")
		require.Equal(t, true, records(env, scanfleet.KindCertificate)[0].Data["trusted"])
	})

	t.Run("untrusted without the CA", func(t *testing.T) {
		t.Parallel()
		s := startTLS(t, "127.0.0.1", p.leaf(t, leafOpts{names: []string{"good.example.test"}}), 0, 0)
		env := &scanner.LocalEnv{}
		require.NoError(t, tlsscan.Executor{Resolver: resolver}.Run(context.Background(), input(map[string]any{"versions": false}, "good.example.test:"+strconv.Itoa(s.port)), env))
		require.Equal(t, []string{"tls-certificate-untrusted"}, findings(env))
	})

	t.Run("name resolving outside the scope", func(t *testing.T) {
		t.Parallel()
		env := &scanner.LocalEnv{}
		require.NoError(t, tlsscan.Executor{Resolver: resolver}.Run(context.Background(), input(nil, "gone.example.test:443", "nowhere.example.test:443"), env))
		require.Empty(t, env.Records())
		res := env.Results()
		require.Equal(t, int64(1), res["out_of_scope"])
		require.Equal(t, map[string]int64{"out-of-scope": 1, "name-not-found": 1}, res["statuses"])
	})
}

func TestStatusesAndScope(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	cert := p.leaf(t, leafOpts{names: []string{"good.example.test"}})
	good := startTLS(t, "127.0.0.1", cert, 0, 0)
	excluded := startTLS(t, "127.0.0.2", cert, 0, 0)

	closedAddr := scannertest.ClosedAddr(t)

	// A plain TCP server that answers with something that is not TLS.
	notTLS := scannertest.Banner(t, "SSH-2.0-OpenSSH_9.6\r\n")

	env := &scanner.LocalEnv{}
	in := input(map[string]any{"versions": false, "ports": strconv.Itoa(good.port)},
		"127.0.0.1/32", closedAddr, notTLS, excluded.addr, "10.1.2.3:443", "http://127.0.0.1/", "not a target:x")
	require.NoError(t, tlsscan.Executor{}.Run(context.Background(), in, env))
	require.Len(t, records(env, scanfleet.KindCertificate), 1, "the /32 on the ports parameter")
	require.Zero(t, excluded.accepts.Load(), "an excluded address is never connected to")
	res := env.Results()
	require.Equal(t, map[string]int64{"success": 1, "connection-refused": 1, "protocol-error": 1, "out-of-scope": 2}, res["statuses"])
	require.Equal(t, int64(2), res["skipped"], "the http URL and the malformed target")
	require.Equal(t, int64(2), res["out_of_scope"])
	done, total := env.LastProgress()
	require.Equal(t, int64(5), done)
	require.Equal(t, total, done)
}

func TestCancel(t *testing.T) {
	t.Parallel()
	// A server that accepts and never speaks: the handshake waits.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted := make(chan net.Conn, 100)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
		close(accepted)
		for c := range accepted {
			c.Close()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in := input(map[string]any{"timeout": "1h", "concurrency": float64(2)}, l.Addr().String(), l.Addr().String(), l.Addr().String())
	done := make(chan error, 1)
	go func() { done <- tlsscan.Executor{}.Run(ctx, in, &scanner.LocalEnv{}) }()
	c := <-accepted
	accepted <- c // keep it for the cleanup
	cancel()
	scannertest.RequireCanceled(t, done)
}

func TestBadArgs(t *testing.T) {
	t.Parallel()
	garbage := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(garbage, []byte("not pem"), 0o644))
	for _, c := range []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"ports": "0"}, "args.ports"},
		{map[string]any{"ca_file": "/nonexistent.pem"}, "args.ca_file"},
		{map[string]any{"ca_file": garbage}, "args.ca_file"},
		{map[string]any{"concurrency": float64(0)}, "args.concurrency"},
	} {
		t.Run(c.want, func(t *testing.T) {
			t.Parallel()
			err := tlsscan.Executor{}.Run(context.Background(), input(c.args, "127.0.0.1:1"), &scanner.LocalEnv{})
			require.Equal(t, scanfleet.EINVALID, scanfleet.ErrorCode(err), "%v", err)
			require.Contains(t, scanfleet.ErrorMessage(err), c.want)
		})
	}
}

func TestTaskType(t *testing.T) {
	t.Parallel()
	tt := tlsscan.Executor{}.TaskType()
	require.NoError(t, tt.Validate())
	require.Equal(t, "tls", tt.Name)
	require.Equal(t, scanfleet.PoolExternal, tt.Pool())
}
