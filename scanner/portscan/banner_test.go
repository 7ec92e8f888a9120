package portscan

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestGuessGreeting(t *testing.T) {
	t.Parallel()
	mysql := func(payload string) string {
		n := len(payload)
		return string([]byte{byte(n), byte(n >> 8), byte(n >> 16), 0}) + payload
	}
	tests := []struct {
		name     string
		greeting string
		port     uint16
		want     string
		banner   string
	}{
		{"ssh", "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", 22, "ssh", "SSH-2.0-OpenSSH_9.2p1 Debian-2"},
		{"smtp", "220 mx.example.org ESMTP Postfix (Debian/GNU)\r\n", 2525, "smtp", "220 mx.example.org ESMTP Postfix (Debian/GNU)"},
		{"smtp with ftp in its name", "220 ftp.example.org ESMTP Exim 4.96\r\n", 25, "smtp", "220 ftp.example.org ESMTP Exim 4.96"},
		{"ftp", "220 ProFTPD Server (Debian) [::ffff:10.0.0.1]\r\n", 21, "ftp", "220 ProFTPD Server (Debian) [::ffff:10.0.0.1]"},
		{"220 on the smtp port", "220 welcome\r\n", 587, "smtp", "220 welcome"},
		{"220 elsewhere", "220 welcome\r\n", 2121, "ftp", "220 welcome"},
		{"multi-line smtp", "220-mail.example.org\r\n220 ready\r\n", 25, "smtp", `220-mail.example.org\r\n220 ready`},
		{"pop3", "+OK Dovecot ready.\r\n", 110, "pop3", "+OK Dovecot ready."},
		{"imap", "* OK [CAPABILITY IMAP4rev1 LITERAL+] Dovecot ready.\r\n", 143, "imap", "* OK [CAPABILITY IMAP4rev1 LITERAL+] Dovecot ready."},
		{"redis protected mode", "-DENIED Redis is running in protected mode\r\n", 6379, "redis", "-DENIED Redis is running in protected mode"},
		{"redis pong", "+PONG\r\n", 6379, "redis", "+PONG"},
		{"vnc", "RFB 003.008\n", 5900, "vnc", "RFB 003.008"},
		{"telnet", "\xff\xfd\x18\xff\xfd\x20", 23, "telnet", `\xff\xfd\x18\xff\xfd`}, // trailing blanks are trimmed
		{"nats", `INFO {"server_id":"x"}` + "\r\n", 4222, "nats", `INFO {"server_id":"x"}`},
		{"amqp", "AMQP\x00\x00\x09\x01", 5672, "amqp", `AMQP\x00\x00\t\x01`},
		{"mysql", mysql("\x0a8.0.36\x00\x01\x02\x03salt\x00"), 3306, "mysql", "8.0.36"},
		{"mariadb", mysql("\x0a5.5.5-10.11.6-MariaDB\x00\xff\xfe"), 3306, "mysql", "5.5.5-10.11.6-MariaDB"},
		{"mysql refusing the host", mysql("\xff\x6a\x04Host '10.0.0.9' is not allowed to connect"), 3306, "mysql", "Host '10.0.0.9' is not allowed to connect"},
		{"short mysql header", "\x05\x00\x00\x00\x0a", 3306, "", `\x05\x00\x00\x00`},
		{"unknown", "hello there\r\n", 1234, "", "hello there"},
		{"escapes", "a\\b\x01\x7f", 1234, "", `a\\b\x01\x7f`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := guessGreeting([]byte(tt.greeting), tt.port)
			require.Equal(t, tt.want, s.name)
			require.Equal(t, tt.banner, s.banner)
		})
	}
}

func TestGuessAnswer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, answer, want, banner string
	}{
		{"http", "HTTP/1.1 200 OK\r\nDate: x\r\nserver:  nginx/1.25.3 \r\nContent-Length: 0\r\n\r\nbody", "http", `HTTP/1.1 200 OK\r\nServer: nginx/1.25.3`},
		{"http without server", "HTTP/1.0 400 Bad Request\r\n\r\n", "http", "HTTP/1.0 400 Bad Request"},
		{"http header cut short", "HTTP/1.1 301 Moved\r\nLoc", "http", "HTTP/1.1 301 Moved"},
		{"redis", "-ERR wrong number of arguments for 'get' command\r\n", "redis", "-ERR wrong number of arguments for 'get' command"},
		{"nothing", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := guessAnswer([]byte(tt.answer), 80)
			require.Equal(t, tt.want, s.name)
			require.Equal(t, tt.banner, s.banner)
		})
	}
}

func TestPrintableBound(t *testing.T) {
	t.Parallel()
	require.Equal(t, strings.Repeat("a", 256), printable([]byte(strings.Repeat("a", 1000)), 256))
	// An escape is never cut in half.
	require.Equal(t, strings.Repeat("a", 254), printable([]byte(strings.Repeat("a", 254)+"\x00"), 256))
}

// FuzzGuess feeds anything a server could send to the guessers: they must
// not fail, and what they return fits a record.
func FuzzGuess(f *testing.F) {
	for _, s := range []string{"SSH-2.0-x\r\n", "220 x\r\n", "\x05\x00\x00\x00\x0a5.7\x00", "\x03\x00\x00\x00\xff\x01", "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", "\xff\xfb", ""} {
		f.Add([]byte(s), uint16(25))
	}
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		for _, s := range []service{guessGreeting(append([]byte{0}, b...)[1:], port), guessAnswer(b, port)} {
			require.LessOrEqual(t, len(s.banner), maxBanner)
			require.True(t, utf8.ValidString(s.banner))
			for _, c := range s.banner {
				require.True(t, c >= 0x20 && c < 0x7f, "banner %q", s.banner)
			}
		}
	})
}

// chunks reads one chunk per Read, then "EXTRA" forever: readSome must
// stop before it.
type chunks []string

func (c *chunks) Read(p []byte) (int, error) {
	if len(*c) == 0 {
		return copy(p, "EXTRA"), nil
	}
	n := copy(p, (*c)[0])
	*c = (*c)[1:]
	return n, nil
}

func TestReadSome(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		chunks chunks
		want   string
	}{
		{"http header in pieces", chunks{"HTTP/1.1 200 OK\r\n", "Server: x\r\n", "\r\nbody"}, "HTTP/1.1 200 OK\r\nServer: x\r\n\r\nbody"},
		{"split in the protocol name", chunks{"HT", "TP/1.0 200 OK\r\n", "\r\n"}, "HTTP/1.0 200 OK\r\n\r\n"},
		{"one line", chunks{"+PONG\r\n"}, "+PONG\r\n"},
		{"a line in pieces", chunks{"-ERR unknown", " command\r\n"}, "-ERR unknown command\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, string(readSome(&tt.chunks, make([]byte, maxRead))))
		})
	}
}
