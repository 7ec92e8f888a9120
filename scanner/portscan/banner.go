package portscan

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// maxBanner bounds the banner a service record carries, in characters of
// its printable form.
const maxBanner = 256

// maxRead bounds what is read from a service.
const maxRead = 4096

// service is what the banner grab learned about an open port.
type service struct {
	name   string // "" when unknown
	banner string // printable, bounded
	tls    bool
	tlsCN  string
}

// grabber grabs the banner of one open port. dial opens a new connection
// to it when the first one is spent.
type grabber struct {
	addr    netip.AddrPort
	host    string // for SNI and the Host header: a name the address came from, or ""
	timeout time.Duration
	dial    func(ctx context.Context) (net.Conn, error)
}

// grab reads what the server says first; a silent server gets a TLS
// handshake on the same connection and, when that fails, an HTTP request
// and then a Redis PING on new ones. Each step waits for g.timeout at
// most. conn is closed.
func (g *grabber) grab(ctx context.Context, conn net.Conn) service {
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	buf := make([]byte, maxRead)
	conn.SetReadDeadline(time.Now().Add(g.timeout))
	n, err := conn.Read(buf)
	if n > 0 {
		return guessGreeting(buf[:n], g.addr.Port())
	}
	var ne net.Error
	if ctx.Err() != nil || !errors.As(err, &ne) || !ne.Timeout() {
		// Closed without a word (a TCP wrapper), or cancelled.
		return service{}
	}

	// Silent: perhaps TLS. What a non-TLS server answers to the
	// ClientHello is kept, since it often names the service already (an
	// HTTP 400, a Redis error).
	rec := &recordingConn{Conn: conn}
	if s, ok := g.tryTLS(ctx, rec); ok {
		return s
	}
	// One connection at a time: per-host concurrency counts connections.
	conn.Close()
	// An HTTP server's answer to a ClientHello is a 400 that often lacks
	// the Server header a real request gets: ask again properly.
	answer := guessAnswer(rec.read.Bytes(), g.addr.Port())
	if (answer.name != "" && answer.name != "http") || ctx.Err() != nil {
		return answer
	}
	if s := g.ask(ctx, g.httpRequest(), buf); s.name != "" || s.banner != "" {
		return s
	}
	// Redis neither greets nor answers a request with a Host header (it
	// takes one for an attack and hangs up), but it answers PING.
	if s := g.ask(ctx, "PING\r\n", buf); s.name != "" || s.banner != "" {
		return s
	}
	return answer
}

// ask sends req on a new connection and guesses from the answer.
func (g *grabber) ask(ctx context.Context, req string, buf []byte) service {
	if ctx.Err() != nil {
		return service{}
	}
	conn, err := g.dial(ctx)
	if err != nil {
		return service{}
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn.SetDeadline(time.Now().Add(g.timeout))
	if _, err := io.WriteString(conn, req); err != nil {
		return service{}
	}
	return guessAnswer(readSome(conn, buf), g.addr.Port())
}

// tryTLS shakes hands over conn and, when that works, asks for / over
// HTTP to tell HTTPS from other TLS services.
func (g *grabber) tryTLS(ctx context.Context, conn net.Conn) (service, bool) {
	cfg := &tls.Config{
		InsecureSkipVerify: true, // a scanner records certificates, it does not trust them
		MinVersion:         tls.VersionTLS10,
	}
	if g.host != "" {
		cfg.ServerName = g.host
	}
	tc := tls.Client(conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	conn.SetDeadline(time.Now().Add(g.timeout))
	if err := tc.HandshakeContext(hctx); err != nil {
		return service{}, false
	}
	s := service{name: "tls", tls: true}
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 {
		s.tlsCN = certs[0].Subject.CommonName
	}
	conn.SetDeadline(time.Now().Add(g.timeout))
	if _, err := io.WriteString(tc, g.httpRequest()); err == nil {
		a := guessAnswer(readSome(tc, make([]byte, maxRead)), g.addr.Port())
		if a.name == "http" {
			s.name = "https"
		}
		s.banner = a.banner
	}
	return s, true
}

func (g *grabber) httpRequest() string {
	host := g.host
	if host == "" {
		host = g.addr.Addr().String()
		if g.addr.Addr().Is6() {
			host = "[" + host + "]"
		}
	}
	if p := g.addr.Port(); p != 80 && p != 443 {
		host += ":" + strconv.Itoa(int(p))
	}
	return "GET / HTTP/1.0\r\nHost: " + host + "\r\nUser-Agent: scanfleet-portscan\r\nAccept: */*\r\n\r\n"
}

// readSome reads into buf until it holds an answer: the header of an HTTP
// response, or a line of anything else. It stops early when the buffer is
// full, the peer closes or the deadline passes.
func readSome(r io.Reader, buf []byte) []byte {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			break
		}
		got := buf[:n]
		if isHTTP := bytes.HasPrefix(got, []byte("HTTP/")) || len(got) < 5 && bytes.HasPrefix([]byte("HTTP/"), got); isHTTP {
			if bytes.Contains(got, []byte("\r\n\r\n")) {
				break
			}
		} else if bytes.IndexByte(got, '\n') >= 0 {
			break
		}
	}
	return buf[:n]
}

// recordingConn keeps the first bytes read through it.
type recordingConn struct {
	net.Conn
	read bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if room := maxRead - c.read.Len(); room > 0 {
		c.read.Write(p[:min(n, room)])
	}
	return n, err
}

// guessGreeting names the service from what it sent unprompted.
func guessGreeting(b []byte, port uint16) service {
	s := service{banner: printable(trimBanner(b), maxBanner)}
	switch {
	case bytes.HasPrefix(b, []byte("SSH-")):
		s.name = "ssh"
	case bytes.HasPrefix(b, []byte("220")):
		s.name = ftpOrSMTP(b, port)
	case bytes.HasPrefix(b, []byte("+OK")):
		s.name = "pop3"
	case bytes.HasPrefix(b, []byte("* OK")), bytes.HasPrefix(b, []byte("* PREAUTH")):
		s.name = "imap"
	case bytes.HasPrefix(b, []byte("RFB ")):
		s.name = "vnc"
	case bytes.HasPrefix(b, []byte("-DENIED")), bytes.HasPrefix(b, []byte("-ERR")), bytes.HasPrefix(b, []byte("-NOAUTH")),
		bytes.HasPrefix(b, []byte("+PONG")):
		s.name = "redis"
	case bytes.HasPrefix(b, []byte("INFO {")):
		s.name = "nats"
	case bytes.HasPrefix(b, []byte("AMQP")):
		s.name = "amqp"
	case len(b) > 1 && b[0] == 0xff && b[1] >= 0xfb && b[1] <= 0xfe: // IAC WILL/WONT/DO/DONT
		s.name = "telnet"
	default:
		if version, ok := mysqlGreeting(b); ok {
			s.name, s.banner = "mysql", printable([]byte(version), maxBanner)
		}
	}
	return s
}

// guessAnswer names the service from its answer to a request it did not
// expect to come first: an HTTP request or a TLS ClientHello.
func guessAnswer(b []byte, port uint16) service {
	if len(b) == 0 {
		return service{}
	}
	if bytes.HasPrefix(b, []byte("HTTP/")) {
		return service{name: "http", banner: printable(httpSummary(b), maxBanner)}
	}
	return guessGreeting(b, port)
}

// httpSummary is an HTTP response's status line and Server header.
func httpSummary(b []byte) []byte {
	head, _, _ := bytes.Cut(b, []byte("\r\n\r\n"))
	lines := bytes.Split(head, []byte("\n"))
	out := bytes.TrimRight(lines[0], "\r")
	for _, l := range lines[1:] {
		name, value, ok := bytes.Cut(l, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Server")) {
			out = append(append(append([]byte{}, out...), "\r\nServer: "...), bytes.TrimSpace(value)...)
			break
		}
	}
	return out
}

func ftpOrSMTP(b []byte, port uint16) string {
	lower := strings.ToLower(string(trimBanner(b)))
	switch {
	case strings.Contains(lower, "smtp"):
		return "smtp"
	case strings.Contains(lower, "ftp"):
		return "ftp"
	case port == 25 || port == 465 || port == 587 || port == 2525 || strings.Contains(lower, "mail"):
		return "smtp"
	}
	return "ftp"
}

// mysqlGreeting recognizes a MySQL initial handshake (protocol 10) or the
// error packet a server sends a client it refuses, returning the server
// version or the error message.
func mysqlGreeting(b []byte) (string, bool) {
	if len(b) < 5 || b[3] != 0 {
		return "", false
	}
	size := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
	if size < 2 || size > len(b)-4 {
		return "", false
	}
	payload := b[4 : 4+size]
	switch payload[0] {
	case 10: // protocol version, then the NUL-terminated server version
		version, _, ok := bytes.Cut(payload[1:], []byte{0})
		if !ok || len(version) == 0 {
			return "", false
		}
		for _, c := range version {
			if c < 0x20 || c > 0x7e {
				return "", false
			}
		}
		return string(version), true
	case 0xff: // error: code (2 bytes), then the message
		if len(payload) < 4 {
			return "", false
		}
		return string(payload[3:]), true
	}
	return "", false
}

// trimBanner drops trailing line ends and blanks.
func trimBanner(b []byte) []byte {
	return bytes.TrimRight(b, "\r\n\t ")
}

// printable writes b as printable ASCII, escaping line ends as \r and \n
// and any other byte outside the printable range as \xNN, cut at max
// characters.
func printable(b []byte, max int) string {
	const hex = "0123456789abcdef"
	var sb strings.Builder
	for _, c := range b {
		var esc string
		switch {
		case c == '\r':
			esc = `\r`
		case c == '\n':
			esc = `\n`
		case c == '\t':
			esc = `\t`
		case c == '\\':
			esc = `\\`
		case c < 0x20 || c > 0x7e:
			esc = string([]byte{'\\', 'x', hex[c>>4], hex[c&0xf]})
		default:
			esc = string(c)
		}
		if sb.Len()+len(esc) > max {
			break
		}
		sb.WriteString(esc)
	}
	return sb.String()
}
