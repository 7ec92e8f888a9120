package tlsscan

import (
	"crypto/tls"
	"crypto/x509"
	"maps"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

// FuzzAnalyze feeds certificates as a server could send them: whatever
// parses as X.509 yields records that the server's ingest accepts.
func FuzzAnalyze(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		at := sighting{ip: netip.MustParseAddr("192.0.2.1"), port: 443, hostname: "www.example.test", versions: []uint16{tls.VersionTLS10, tls.VersionTLS13}}
		a := analyze([]*x509.Certificate{cert}, x509.NewCertPool(), at, time.Now())
		_, err = scanfleet.NewRecord(maps.Clone(a.record))
		require.NoError(t, err)
		for _, f := range a.findings {
			_, err := scanfleet.NewRecord(maps.Clone(f))
			require.NoError(t, err)
		}
		for _, n := range a.names {
			require.NotEmpty(t, n.name)
		}
	})
}

// FuzzParseTarget feeds targets: a target parses to a host or a prefix,
// with a port in range, or is refused with a reason.
func FuzzParseTarget(f *testing.F) {
	f.Add("www.example.com:443")
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := parseTarget(s)
		if err != nil {
			return
		}
		require.True(t, tg.port >= 0 && tg.port <= 65535)
		if tg.prefix.IsValid() {
			require.Empty(t, tg.host)
			return
		}
		require.NotEmpty(t, tg.host)
		require.NotContains(t, tg.host, "/")
	})
}
