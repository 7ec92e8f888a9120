package cli_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "scanfleet nats"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	return certFile, keyFile
}

// TestNATSWithTLS: with a certificate the embedded NATS server speaks only
// TLS; a worker learns the URL and the certificate to trust at enrolment,
// and runs tasks over it; the in-process workers do too.
func TestNATSWithTLS(t *testing.T) {
	t.Parallel()
	cert, key := selfSigned(t)
	s := startServer(t, "--data-dir", t.TempDir(), "--nats-tls-cert", cert, "--nats-tls-key", key, "--local-workers=false")
	s.cli(t, "", "workspace", "create", "lab", "--include", "10.0.0.0/24")
	w := startWorker(t, s, "--transport", "nats")
	ids := runScan(t, s, "tls", []string{"records=3"}, "lab")
	done := s.waitTask(t, ids[0], 60*time.Second, status("finished"))
	require.Equal(t, w.id, done["worker_id"], "worker stderr:\n%s", w.stderr)

	// The state file holds the tls:// URL; without trusting the
	// certificate, nothing connects.
	var st struct {
		NATSURL string `json:"nats_url"`
		NATSCA  string `json:"nats_ca"`
	}
	b, err := os.ReadFile(w.state)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &st))
	require.True(t, strings.HasPrefix(st.NATSURL, "tls://"), st.NATSURL)
	require.Contains(t, st.NATSCA, "BEGIN CERTIFICATE")
	_, err = nats.Connect(strings.Replace(st.NATSURL, "tls://", "nats://", 1), nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	require.Error(t, err, "a connection without TLS is refused")
	_, err = nats.Connect(st.NATSURL, nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	require.Error(t, err, "a connection that does not trust the certificate is refused")

	// The in-process workers connect over TLS as well.
	s2 := startServer(t, "--data-dir", t.TempDir(), "--nats-tls-cert", cert, "--nats-tls-key", key)
	s2.cli(t, "", "workspace", "create", "lab", "--include", "10.0.0.0/24")
	ids = runScan(t, s2, "local", []string{"records=1"}, "lab")
	s2.waitTask(t, ids[0], 60*time.Second, status("finished"))
}
