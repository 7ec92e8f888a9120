package tlsscan

import (
	"bytes"
	"crypto/dsa" //nolint:staticcheck // DSA keys are still found in the wild and must be sized
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// sighting is where and how a certificate was seen.
type sighting struct {
	ip       netip.Addr
	port     int
	hostname string // the SNI sent, "" for an address target
	versions []uint16
}

// certName is a DNS name among a certificate's SANs.
type certName struct {
	name     string
	wildcard bool // the SAN was "*." + name
}

// analysis is what one certificate yields: its record, its DNS names and
// the findings about it.
type analysis struct {
	record   map[string]any
	names    []certName
	findings []map[string]any
}

// analyze checks the leaf of a chain a server sent. The chain comes from
// the network: nothing in it is trusted, and fields that cannot be shown
// faithfully (a year outside 0–9999) are left out rather than guessed.
func analyze(chain []*x509.Certificate, roots *x509.CertPool, at sighting, now time.Time) analysis {
	leaf := chain[0]
	sum := sha256.Sum256(leaf.Raw)
	keyType, keyBits := keyInfo(leaf.PublicKey)
	selfSigned := bytes.Equal(leaf.RawIssuer, leaf.RawSubject) &&
		leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil
	trustErr := verifyChain(chain, roots)
	seenAt := net.JoinHostPort(at.ip.String(), strconv.Itoa(at.port))

	rec := map[string]any{
		"kind":                "certificate",
		"sha256":              hex.EncodeToString(sum[:]),
		"subject":             leaf.Subject.String(),
		"issuer":              leaf.Issuer.String(),
		"key_type":            keyType,
		"key_bits":            keyBits,
		"signature_algorithm": leaf.SignatureAlgorithm.String(),
		"self_signed":         selfSigned,
		"trusted":             trustErr == nil,
		"seen_at":             seenAt,
		"ip":                  at.ip.String(),
		"port":                at.port,
	}
	if leaf.SerialNumber != nil {
		rec["serial"] = leaf.SerialNumber.Text(16)
	}
	if s, ok := rfc3339(leaf.NotBefore); ok {
		rec["not_before"] = s
	}
	if s, ok := rfc3339(leaf.NotAfter); ok {
		rec["not_after"] = s
	}
	if at.hostname != "" {
		rec["hostname"] = at.hostname
	}
	sans := []any{}
	var names []certName
	for _, n := range leaf.DNSNames {
		sans = append(sans, n)
		n = strings.TrimSuffix(strings.ToLower(n), ".")
		if base, ok := strings.CutPrefix(n, "*."); ok {
			names = append(names, certName{base, true})
		} else if n != "" {
			names = append(names, certName{n, false})
		}
	}
	for _, ip := range leaf.IPAddresses {
		sans = append(sans, ip.String())
	}
	rec["sans"] = sans
	var versions []any
	for _, v := range at.versions {
		versions = append(versions, tls.VersionName(v))
	}
	rec["versions"] = versions

	a := analysis{record: rec, names: names}
	find := func(name, severity, format string, args ...any) {
		f := map[string]any{
			"kind": "finding", "name": name, "severity": severity,
			"ip": at.ip.String(), "port": at.port, "proto": "tcp",
			"certificate": rec["sha256"],
			"description": fmt.Sprintf("%s: ", seenAt) + fmt.Sprintf(format, args...),
		}
		if at.hostname != "" {
			f["hostname"] = at.hostname
		}
		a.findings = append(a.findings, f)
	}
	switch {
	case now.After(leaf.NotAfter):
		find("tls-certificate-expired", "high", "the certificate of %s expired on %s.", leaf.Subject, leaf.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		find("tls-certificate-not-yet-valid", "medium", "the certificate of %s is valid only from %s.", leaf.Subject, leaf.NotBefore.UTC().Format(time.DateOnly))
	}
	var unknown x509.UnknownAuthorityError
	switch {
	case selfSigned:
		find("tls-certificate-self-signed", "medium", "the certificate of %s is self-signed.", leaf.Subject)
	case trustErr != nil && errors.As(trustErr, &unknown):
		find("tls-certificate-untrusted", "medium", "the certificate of %s does not chain to a trusted root: %v.", leaf.Subject, trustErr)
	case trustErr != nil:
		find("tls-certificate-untrusted", "medium", "the certificate chain of %s does not verify: %v.", leaf.Subject, trustErr)
	}
	if weak, sev := weakKey(keyType, keyBits); weak {
		find("tls-weak-key", sev, "the certificate's %s key has %d bits.", strings.ToUpper(keyType), keyBits)
	}
	if at.hostname != "" && leaf.VerifyHostname(at.hostname) != nil {
		find("tls-certificate-name-mismatch", "medium", "the certificate is not valid for %s (it names %s).", at.hostname, strings.Join(leaf.DNSNames, ", "))
	}
	for _, v := range at.versions {
		if v == tls.VersionTLS10 || v == tls.VersionTLS11 {
			find("tls-deprecated-protocol", "low", "the server accepts %s, which RFC 8996 deprecates.", tls.VersionName(v))
			break
		}
	}
	return a
}

// verifyChain checks that the chain leads to one of roots (the system's
// when nil), at a time inside the leaf's validity: expiry is its own
// finding, so an expired certificate is not also called untrusted.
func verifyChain(chain []*x509.Certificate, roots *x509.CertPool) error {
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	at := time.Now()
	if at.After(leaf.NotAfter) {
		at = leaf.NotAfter
	}
	if at.Before(leaf.NotBefore) {
		at = leaf.NotBefore
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: at,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	return err
}

// keyInfo names a public key's type and its size in bits.
func keyInfo(pub any) (string, int) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N == nil {
			return "rsa", 0
		}
		return "rsa", k.N.BitLen()
	case *ecdsa.PublicKey:
		if k.Curve == nil {
			return "ecdsa", 0
		}
		return "ecdsa", k.Curve.Params().BitSize
	case ed25519.PublicKey:
		return "ed25519", 256
	case *dsa.PublicKey:
		if k.P == nil {
			return "dsa", 0
		}
		return "dsa", k.P.BitLen()
	}
	return "unknown", 0
}

// weakKey says whether a key is too small, and how bad that is: RSA and
// DSA under 2048 bits (high under 1024), EC under 224.
func weakKey(keyType string, bits int) (bool, string) {
	switch keyType {
	case "rsa", "dsa":
		if bits < 1024 {
			return true, "high"
		}
		return bits < 2048, "medium"
	case "ecdsa":
		return bits < 224, "medium"
	}
	return false, ""
}

// rfc3339 formats t when RFC 3339 can hold it.
func rfc3339(t time.Time) (string, bool) {
	t = t.UTC()
	if t.Year() < 0 || t.Year() > 9999 {
		return "", false
	}
	return t.Format(time.RFC3339), true
}
