package httpprobe

import (
	"bytes"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// fingerprint recognizes one technology from one marker of a response.
// Exactly one of header, cookie, generator and body is set.
type fingerprint struct {
	tech      string
	header    string         // a response header whose value re matches
	cookie    string         // the name of a cookie the response sets
	generator bool           // the HTML generator meta tag matches re
	body      string         // a substring of the body
	re        *regexp.Regexp // on the header or generator; group 1, if any, is the version
}

// fingerprints is the table technologies are guessed from. A guess is a
// guess: a header is easy to fake, and absence proves nothing.
var fingerprints = []fingerprint{
	{tech: "nginx", header: "Server", re: regexp.MustCompile(`(?i)\bnginx(?:/([\d.]+))?`)},
	{tech: "Apache HTTP Server", header: "Server", re: regexp.MustCompile(`(?i)^apache(?:/([\d.]+))?(?:[\s(]|$)`)},
	{tech: "Apache Tomcat", header: "Server", re: regexp.MustCompile(`(?i)apache-coyote`)},
	{tech: "Microsoft IIS", header: "Server", re: regexp.MustCompile(`(?i)microsoft-iis(?:/([\d.]+))?`)},
	{tech: "LiteSpeed", header: "Server", re: regexp.MustCompile(`(?i)litespeed`)},
	{tech: "Caddy", header: "Server", re: regexp.MustCompile(`(?i)^caddy`)},
	{tech: "Cloudflare", header: "Server", re: regexp.MustCompile(`(?i)^cloudflare`)},
	{tech: "Jetty", header: "Server", re: regexp.MustCompile(`(?i)jetty(?:\(([\w.-]+)\))?`)},
	{tech: "OpenResty", header: "Server", re: regexp.MustCompile(`(?i)openresty(?:/([\d.]+))?`)},
	{tech: "Varnish", header: "Via", re: regexp.MustCompile(`(?i)varnish`)},
	{tech: "Varnish", header: "X-Varnish", re: regexp.MustCompile(`.`)},
	{tech: "PHP", header: "X-Powered-By", re: regexp.MustCompile(`(?i)\bphp(?:/([\d.]+))?`)},
	{tech: "ASP.NET", header: "X-Powered-By", re: regexp.MustCompile(`(?i)asp\.net`)},
	{tech: "ASP.NET", header: "X-AspNet-Version", re: regexp.MustCompile(`^([\d.]+)`)},
	{tech: "Express", header: "X-Powered-By", re: regexp.MustCompile(`(?i)^express`)},
	{tech: "Next.js", header: "X-Powered-By", re: regexp.MustCompile(`(?i)next\.js(?:\s+([\d.]+))?`)},
	{tech: "Drupal", header: "X-Generator", re: regexp.MustCompile(`(?i)drupal(?:\s+([\d.]+))?`)},
	{tech: "Drupal", header: "X-Drupal-Cache", re: regexp.MustCompile(`.`)},
	{tech: "Jenkins", header: "X-Jenkins", re: regexp.MustCompile(`^([\d.]+)`)},
	{tech: "PHP", cookie: "PHPSESSID"},
	{tech: "Java", cookie: "JSESSIONID"},
	{tech: "ASP.NET", cookie: "ASP.NET_SessionId"},
	{tech: "Laravel", cookie: "laravel_session"},
	{tech: "Django", cookie: "csrftoken"},
	{tech: "WordPress", generator: true, re: regexp.MustCompile(`(?i)wordpress(?:\s+([\d.]+))?`)},
	{tech: "Drupal", generator: true, re: regexp.MustCompile(`(?i)drupal(?:\s+([\d.]+))?`)},
	{tech: "Joomla", generator: true, re: regexp.MustCompile(`(?i)joomla!?(?:\s+([\d.]+))?`)},
	{tech: "Hugo", generator: true, re: regexp.MustCompile(`(?i)hugo(?:\s+([\d.]+))?`)},
	{tech: "WordPress", body: "/wp-content/"},
	{tech: "Grafana", body: "window.grafanaBootData"},
}

// maxVersion bounds a captured version, which comes from the server.
const maxVersion = 32

// guessTech returns the technologies a response's headers and the start of
// its body point to, each once ("nginx 1.25.3", or "PHP" without a
// version), in the order of the table.
func guessTech(h http.Header, body []byte, generator string) []string {
	var out []string
	index := map[string]int{}
	add := func(tech, version string) {
		if len(version) > maxVersion || !utf8.ValidString(version) {
			version = ""
		}
		s := tech
		if version != "" {
			s += " " + version
		}
		if i, ok := index[tech]; ok {
			if version != "" && out[i] == tech {
				out[i] = s // a version beats none
			}
			return
		}
		index[tech] = len(out)
		out = append(out, s)
	}
	cookies := cookieNames(h)
	for _, fp := range fingerprints {
		switch {
		case fp.header != "":
			for _, v := range h.Values(fp.header) {
				if m := fp.re.FindStringSubmatch(v); m != nil {
					add(fp.tech, group(m))
					break
				}
			}
		case fp.cookie != "":
			if cookies[strings.ToLower(fp.cookie)] {
				add(fp.tech, "")
			}
		case fp.generator:
			if m := fp.re.FindStringSubmatch(generator); m != nil {
				add(fp.tech, group(m))
			}
		case fp.body != "":
			if bytes.Contains(body, []byte(fp.body)) {
				add(fp.tech, "")
			}
		}
	}
	return out
}

func group(m []string) string {
	if len(m) > 1 {
		return m[1]
	}
	return ""
}

// cookieNames returns the lower-cased names of the cookies a response sets.
func cookieNames(h http.Header) map[string]bool {
	names := map[string]bool{}
	for _, v := range h.Values("Set-Cookie") {
		name, _, _ := strings.Cut(v, "=")
		names[strings.ToLower(strings.TrimSpace(name))] = true
	}
	return names
}

// maxTitle bounds a title and a generator, in bytes.
const maxTitle = 1024

// parseHTML returns the title and the generator meta tag of an HTML
// document, read leniently as browsers do, whitespace collapsed and cut at
// maxTitle bytes on a character boundary.
func parseHTML(body []byte) (title, generator string) {
	z := html.NewTokenizer(bytes.NewReader(body))
	z.SetMaxBuf(len(body) + 1)
	inTitle, gotTitle := false, false
	var tb strings.Builder
	for {
		switch z.Next() {
		case html.ErrorToken:
			return clean(tb.String()), generator
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			switch atom.Lookup(name) {
			case atom.Title:
				inTitle = !gotTitle
			case atom.Meta:
				if generator == "" && hasAttr {
					generator = metaGenerator(z)
				}
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			if atom.Lookup(name) == atom.Title && inTitle {
				inTitle, gotTitle = false, true
			}
		case html.TextToken:
			if inTitle && tb.Len() < maxTitle*2 {
				tb.Write(z.Text())
			}
		}
		if gotTitle && generator != "" {
			return clean(tb.String()), generator
		}
	}
}

// metaGenerator returns the content of a <meta name="generator"> tag.
func metaGenerator(z *html.Tokenizer) string {
	var isGen bool
	var content string
	for {
		k, v, more := z.TagAttr()
		switch strings.ToLower(string(k)) {
		case "name":
			isGen = strings.EqualFold(strings.TrimSpace(string(v)), "generator")
		case "content":
			content = string(v)
		}
		if !more {
			break
		}
	}
	if !isGen {
		return ""
	}
	return clean(content)
}

// clean collapses whitespace, drops invalid UTF-8 and cuts s at maxTitle
// bytes without splitting a character.
func clean(s string) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "")), " ")
	if len(s) <= maxTitle {
		return s
	}
	n := maxTitle
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
