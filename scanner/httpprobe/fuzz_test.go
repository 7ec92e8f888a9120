package httpprobe

import (
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/scanfleet/scanfleet"
)

// FuzzParseHTML feeds bodies as servers send them: the title and the
// generator are valid UTF-8 without runs of whitespace, and bounded.
func FuzzParseHTML(f *testing.F) {
	f.Add([]byte("<title>x</title>"))
	f.Fuzz(func(t *testing.T, body []byte) {
		title, gen := parseHTML(body)
		for _, s := range []string{title, gen} {
			require.True(t, utf8.ValidString(s))
			require.LessOrEqual(t, len(s), maxTitle)
			require.Equal(t, strings.Join(strings.Fields(s), " "), s)
		}
	})
}

// FuzzGuessTech feeds response headers and bodies: each technology is
// named once, with a bounded version.
func FuzzGuessTech(f *testing.F) {
	f.Add("nginx/1.2", "PHP/8", "PHPSESSID=1", "WordPress 6", []byte("/wp-content/"))
	f.Fuzz(func(t *testing.T, server, powered, cookie, generator string, body []byte) {
		h := http.Header{}
		h.Set("Server", server)
		h.Set("X-Powered-By", powered)
		h.Add("Set-Cookie", cookie)
		techs := guessTech(h, body, generator)
		seen := map[string]bool{}
		for _, s := range techs {
			name := s
			for _, fp := range fingerprints {
				if s == fp.tech || strings.HasPrefix(s, fp.tech+" ") {
					name = fp.tech
				}
			}
			require.False(t, seen[name], "%q twice in %q", name, techs)
			seen[name] = true
			require.LessOrEqual(t, len(s)-len(name), maxVersion+1)
			require.True(t, utf8.ValidString(s))
		}
	})
}

// FuzzParseTarget feeds targets: a target parses to a URL, a host or a
// prefix whose probe URLs the inventory accepts, or is refused.
func FuzzParseTarget(f *testing.F) {
	f.Add("example.com:8080")
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := parseTarget(s)
		if err != nil {
			return
		}
		switch {
		case tg.url != "":
			_, err := scanfleet.NewRecord(map[string]any{"kind": "http", "url": tg.url})
			require.NoError(t, err)
		case tg.prefix.IsValid():
		default:
			for _, scheme := range []string{"http", "https"} {
				_, err := scanfleet.NewRecord(map[string]any{"kind": "http", "url": scheme + "://" + hostPort(tg.host, tg.port) + "/"})
				require.NoError(t, err, "%q", s)
			}
		}
	})
}
