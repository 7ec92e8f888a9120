package scanfleet

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestScopeNormalize(t *testing.T) {
	t.Parallel()

	tests := []struct {
		name    string
		in      Scope
		include []string
		exclude []string
	}{
		{
			name:    "empty scope has empty lists, not nil",
			in:      Scope{},
			include: []string{},
			exclude: []string{},
		},
		{
			name:    "IPv4 and IPv6 addresses",
			in:      Scope{Include: []string{"10.0.0.5", "2001:DB8::1", " 192.168.1.1 "}},
			include: []string{"10.0.0.5", "2001:db8::1", "192.168.1.1"},
			exclude: []string{},
		},
		{
			name:    "CIDR host bits are masked",
			in:      Scope{Include: []string{"10.0.0.77/24", "2001:db8::1/32", "10.0.0.5/32"}},
			include: []string{"10.0.0.0/24", "2001:db8::/32", "10.0.0.5/32"},
			exclude: []string{},
		},
		{
			name:    "IPv4-mapped IPv6 addresses and prefixes are unmapped",
			in:      Scope{Include: []string{"::ffff:10.0.0.5", "::ffff:10.0.0.0/104", "::FFFF:192.168.1.0/120"}},
			include: []string{"10.0.0.5", "10.0.0.0/8", "192.168.1.0/24"},
			exclude: []string{},
		},
		{
			name:    "an IPv6 prefix wider than the mapped range stays IPv6",
			in:      Scope{Include: []string{"::ffff:10.0.0.5/64"}},
			include: []string{"::/64"},
			exclude: []string{},
		},
		{
			name:    "names are lower-cased without a trailing dot",
			in:      Scope{Include: []string{"Example.COM.", "*.Example.com", "_dmarc.example.com", "*.corp.example.net."}},
			include: []string{"example.com", "*.example.com", "_dmarc.example.com", "*.corp.example.net"},
			exclude: []string{},
		},
		{
			name:    "international names become punycode",
			in:      Scope{Include: []string{"bücher.example", "*.BÜCHER.example", "münchen.de"}},
			include: []string{"xn--bcher-kva.example", "*.xn--bcher-kva.example", "xn--mnchen-3ya.de"},
			exclude: []string{},
		},
		{
			name: "duplicates are removed, first position kept",
			in: Scope{
				Include: []string{"a.example.com", "10.0.0.0/24", "A.example.com.", "10.0.0.1/24", "::ffff:10.0.0.0/120", "a.example.com"},
				Exclude: []string{"10.0.0.5", "10.0.0.5", "::ffff:10.0.0.5"},
			},
			include: []string{"a.example.com", "10.0.0.0/24"},
			exclude: []string{"10.0.0.5"},
		},
		{
			name:    "exclude may be broad without allow_broad",
			in:      Scope{Include: []string{"10.0.0.0/8"}, Exclude: []string{"0.0.0.0/0", "::/0", "*.com"}},
			include: []string{"10.0.0.0/8"},
			exclude: []string{"0.0.0.0/0", "::/0", "*.com"},
		},
		{
			name:    "the widest prefixes allowed without allow_broad",
			in:      Scope{Include: []string{"10.0.0.0/8", "2001::/16", "*.co.uk"}},
			include: []string{"10.0.0.0/8", "2001::/16", "*.co.uk"},
			exclude: []string{},
		},
		{
			name:    "broad entries with allow_broad",
			in:      Scope{Include: []string{"0.0.0.0/0", "::/0", "10.0.0.0/7", "*.com", "2000::/3"}, AllowBroad: true},
			include: []string{"0.0.0.0/0", "::/0", "10.0.0.0/7", "*.com", "2000::/3"},
			exclude: []string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := tt.in.Normalize()
			require.NoError(t, err)
			require.Equal(t, tt.include, got.Include)
			require.Equal(t, tt.exclude, got.Exclude)
			require.Equal(t, tt.in.AllowBroad, got.AllowBroad)

			again, err := got.Normalize()
			require.NoError(t, err, "a normalized scope normalizes again")
			require.Equal(t, got, again, "normalizing is idempotent")
		})
	}
}

func TestScopeNormalizeErrors(t *testing.T) {
	t.Parallel()

	long := strings.Repeat("a", 64)
	tests := []struct {
		name string
		in   Scope
		want string // the whole message
	}{
		{"CIDR bits out of range", Scope{Include: []string{"10.0.0.0/33"}},
			`scope.include[0]: "10.0.0.0/33" is not a valid CIDR prefix`},
		{"IPv6 CIDR bits out of range", Scope{Include: []string{"2001:db8::/129"}},
			`scope.include[0]: "2001:db8::/129" is not a valid CIDR prefix`},
		{"mangled CIDR", Scope{Include: []string{"10.0.0/8"}},
			`scope.include[0]: "10.0.0/8" is not a valid CIDR prefix`},
		{"three-part address, second entry", Scope{Include: []string{"example.com", "1.2.3"}},
			`scope.include[1]: "1.2.3" is not a valid IP, CIDR or domain`},
		{"address with an octet over 255", Scope{Include: []string{"10.0.0.256"}},
			`scope.include[0]: "10.0.0.256" is not a valid IP, CIDR or domain`},
		{"space in a name", Scope{Include: []string{"exa mple.com"}},
			`scope.include[0]: "exa mple.com" has the character ' ', which a domain name cannot hold`},
		{"wildcard without a dot", Scope{Include: []string{"*foo.com"}},
			`scope.include[0]: "*foo.com" has a wildcard that is not a leading "*."`},
		{"wildcard in the middle", Scope{Include: []string{"a.*.example.com"}},
			`scope.include[0]: "a.*.example.com" has a wildcard that is not a leading "*."`},
		{"double wildcard", Scope{Include: []string{"*.*.example.com"}},
			`scope.include[0]: "*.*.example.com" has the character '*', which a domain name cannot hold`},
		{"bare wildcard", Scope{Include: []string{"*."}},
			`scope.include[0]: "*." is an empty name`},
		{"leading hyphen", Scope{Include: []string{"-a.com"}},
			`scope.include[0]: "-a.com" has a label that starts or ends with '-'`},
		{"trailing hyphen", Scope{Include: []string{"a-.com"}},
			`scope.include[0]: "a-.com" has a label that starts or ends with '-'`},
		{"empty entry", Scope{Include: []string{""}},
			`scope.include[0]: "" is empty`},
		{"blank entry", Scope{Include: []string{"  "}},
			`scope.include[0]: "  " is empty`},
		{"empty label", Scope{Include: []string{"a..com"}},
			`scope.include[0]: "a..com" has an empty label`},
		{"long label", Scope{Include: []string{long + ".com"}},
			`scope.include[0]: "` + long + `.com" has a label longer than 63 characters`},
		{"long name", Scope{Include: []string{strings.Repeat("abcdefghi.", 26) + "com"}},
			`scope.include[0]: "` + strings.Repeat("abcdefghi.", 26) + `com" is longer than 253 characters`},
		{"IPv6 zone", Scope{Include: []string{"fe80::1%eth0"}},
			`scope.include[0]: "fe80::1%eth0" has an IPv6 zone, which a scope cannot hold`},
		{"name ending in a number", Scope{Include: []string{"0x7f.1"}},
			`scope.include[0]: "0x7f.1" ends in a numeric label, which browsers and inet_aton read as an IPv4 address`},
		{"wildcard over a numeric label", Scope{Include: []string{"*.0x0.0.1"}},
			`scope.include[0]: "*.0x0.0.1" ends in a numeric label, which browsers and inet_aton read as an IPv4 address`},
		{"bad international name", Scope{Include: []string{"xn--a.bücher.example\u00ad\u200d"}},
			`scope.include[0]: "xn--a.bücher.example\u00ad\u200d" is not a valid international domain name`},
		{"exclude names its list and index", Scope{Include: []string{"10.0.0.0/8"}, Exclude: []string{"10.0.0.1", "10.0.0.0/33"}},
			`scope.exclude[1]: "10.0.0.0/33" is not a valid CIDR prefix`},
		{"IPv4 Internet", Scope{Include: []string{"0.0.0.0/0"}},
			`scope.include[0]: "0.0.0.0/0" covers all of the IPv4 Internet (wider than /8); set scope.allow_broad to true if that is really meant`},
		{"IPv6 Internet", Scope{Include: []string{"::/0"}},
			`scope.include[0]: "::/0" covers all of the IPv6 Internet (wider than /16); set scope.allow_broad to true if that is really meant`},
		{"a /7", Scope{Include: []string{"10.0.0.0/8", "10.0.0.0/7"}},
			`scope.include[1]: "10.0.0.0/7" covers 1/128 of the IPv4 Internet (wider than /8); set scope.allow_broad to true if that is really meant`},
		{"an IPv6 /15", Scope{Include: []string{"2001::/15"}},
			`scope.include[0]: "2001::/15" covers 1/32768 of the IPv6 Internet (wider than /16); set scope.allow_broad to true if that is really meant`},
		{"the IPv4 Internet, IPv4-mapped", Scope{Include: []string{"::ffff:0:0/96"}},
			`scope.include[0]: "::ffff:0:0/96" covers all of the IPv4 Internet (wider than /8); set scope.allow_broad to true if that is really meant`},
		{"a top-level domain", Scope{Include: []string{"*.com"}},
			`scope.include[0]: "*.com" matches every name under a top-level domain; set scope.allow_broad to true if that is really meant`},
		{"a top-level domain, upper-case", Scope{Include: []string{"*.COM."}},
			`scope.include[0]: "*.COM." matches every name under a top-level domain; set scope.allow_broad to true if that is really meant`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tt.in.Normalize()
			require.Error(t, err)
			require.Equal(t, EINVALID, ErrorCode(err))
			require.Equal(t, tt.want, ErrorMessage(err))

			_, err = tt.in.Compile()
			require.Error(t, err, "Compile refuses what Normalize refuses")
			require.Panics(t, func() { tt.in.MustCompile() })
		})
	}

	t.Run("too many entries", func(t *testing.T) {
		t.Parallel()
		s := Scope{Include: make([]string, maxScopeItems), Exclude: []string{"10.0.0.1"}}
		for i := range s.Include {
			s.Include[i] = "10.0.0.1"
		}
		_, err := s.Normalize()
		require.Equal(t, EINVALID, ErrorCode(err))
		require.Equal(t, "scope: more than 100000 entries", ErrorMessage(err))
	})
}

// checkScope is the scope most Check cases run against.
var checkScope = Scope{
	Include: []string{
		"10.0.0.0/24", "192.168.1.10", "2001:db8::/64", "fe80::/64",
		"example.com", "*.example.com", "bücher.example.org",
	},
	Exclude: []string{
		"10.0.0.5", "10.0.0.128/28", "2001:db8::dead", "fe80::bad",
		"admin.example.com", "*.internal.example.com",
	},
}

func TestScopeCheck(t *testing.T) {
	t.Parallel()
	m, err := checkScope.Compile()
	require.NoError(t, err)

	tests := []struct {
		target string
		in     bool
		rule   string // "" when no entry decided
	}{
		// IPv4 addresses and prefixes.
		{"10.0.0.1", true, "10.0.0.0/24"},
		{"10.0.0.255", true, "10.0.0.0/24"},
		{"10.0.1.1", false, ""},
		{"10.0.0.5", false, "10.0.0.5"},
		{"10.0.0.130", false, "10.0.0.128/28"},
		{"192.168.1.10", true, "192.168.1.10"},
		{"192.168.1.11", false, ""},
		{"10.0.0.5/32", false, "10.0.0.5"},
		{"10.0.0.1/32", true, "10.0.0.0/24"},
		{"10.0.0.0/30", true, "10.0.0.0/24"},
		{"10.0.0.6/31", true, "10.0.0.0/24"},
		{"10.0.0.4/31", false, "10.0.0.5"},
		{"10.0.0.0/24", false, "10.0.0.5"},        // fully included but overlaps an exclude
		{"10.0.0.77/28", true, "10.0.0.0/24"},     // host bits masked: 10.0.0.64/28
		{"10.0.0.200/25", false, "10.0.0.128/28"}, // 10.0.0.128/25
		{"10.0.0.0/23", false, "10.0.0.5"},
		{"192.168.1.10/31", false, ""}, // only half of it is included
		{"10.0.0.1:443", true, "10.0.0.0/24"},
		{"10.0.0.5:443", false, "10.0.0.5"},
		{"http://10.0.0.5:8080/", false, "10.0.0.5"},

		// IPv4-mapped IPv6 forms reach the IPv4 host: exclude must win.
		{"::ffff:10.0.0.5", false, "10.0.0.5"},
		{"::FFFF:10.0.0.5", false, "10.0.0.5"},
		{"::ffff:a00:5", false, "10.0.0.5"},
		{"::ffff:10.0.0.1", true, "10.0.0.0/24"},
		{"::ffff:10.0.0.5/128", false, "10.0.0.5"},
		{"::ffff:10.0.0.0/120", false, "10.0.0.5"},
		{"::ffff:10.0.0.0/126", true, "10.0.0.0/24"},
		{"[::ffff:10.0.0.5]:80", false, "10.0.0.5"},
		{"http://[::ffff:10.0.0.5]/", false, "10.0.0.5"},

		// IPv6.
		{"2001:db8::1", true, "2001:db8::/64"},
		{"2001:DB8::DEAD", false, "2001:db8::dead"},
		{"2001:db8:0:1::1", false, ""},
		{"2001:db8::/64", false, "2001:db8::dead"},
		{"2001:db8::/120", true, "2001:db8::/64"},
		{"2001:db8::/63", false, "2001:db8::dead"},
		{"[2001:db8::1]:443", true, "2001:db8::/64"},
		{"[2001:db8::dead]:443", false, "2001:db8::dead"},
		{"http://[2001:db8::1]:8080/x", true, "2001:db8::/64"},
		{"https://[2001:db8::dead]/", false, "2001:db8::dead"},

		// Zones pick an interface; the address decides.
		{"fe80::1%eth0", true, "fe80::/64"},
		{"fe80::bad%eth0", false, "fe80::bad"},
		{"[fe80::bad%eth0]:22", false, "fe80::bad"},
		{"http://[fe80::bad%25eth0]/", false, "fe80::bad"},

		// Exact names and wildcards.
		{"example.com", true, "example.com"},
		{"EXAMPLE.COM.", true, "example.com"},
		{"www.example.com", true, "*.example.com"},
		{"a.b.c.example.com", true, "*.example.com"},
		{"admin.example.com", false, "admin.example.com"},
		{"ADMIN.Example.Com.", false, "admin.example.com"},
		{"www.admin.example.com", true, "*.example.com"}, // exact exclude is exact
		{"internal.example.com", true, "*.example.com"},  // the wildcard exclude does not hold its apex
		{"db.internal.example.com", false, "*.internal.example.com"},
		{"a.b.internal.example.com", false, "*.internal.example.com"},
		{"_dmarc.example.com", true, "*.example.com"},

		// Look-alikes must never match.
		{"example.com.evil.com", false, ""},
		{"evilexample.com", false, ""},
		{"www.evilexample.com", false, ""},
		{"example.co", false, ""},
		{"example.com.", true, "example.com"},
		{"xample.com", false, ""},
		{"example.org", false, ""},

		// International names.
		{"bücher.example.org", true, "xn--bcher-kva.example.org"},
		{"BÜCHER.example.org", true, "xn--bcher-kva.example.org"},
		{"xn--bcher-kva.example.org", true, "xn--bcher-kva.example.org"},
		{"www.bücher.example.org", false, ""},

		// host:port and URLs.
		{"https://app.example.com:8443/x", true, "*.example.com"},
		{"HTTPS://APP.EXAMPLE.COM/", true, "*.example.com"},
		{"app.example.com:8443", true, "*.example.com"},
		{"https://admin.example.com/login", false, "admin.example.com"},
		{"admin.example.com:443", false, "admin.example.com"},
		{"https://db.internal.example.com:5432/", false, "*.internal.example.com"},
		{"http://example.com@evil.com/", false, ""},
		{"http://evil.com#.example.com", false, ""},
		{"http://evil.com?.example.com", false, ""},
		{"http://evil.com/.example.com", false, ""},
		{"https://evil.com:443@www.example.com/", true, "*.example.com"}, // the userinfo is not the host

		// Malformed targets are never in scope.
		{"app.example.com:evil.com", false, ""},
		{"app.example.com:0", false, ""},
		{"app.example.com:65536", false, ""},
		{"app.example.com:+443", false, ""},
		{"app.example.com:", false, ""},
		{"http://evil.com\\@www.example.com/", false, ""},
		{"evil.com/.example.com", false, ""},
		{"evil.com www.example.com", false, ""},
		{"*.example.com", false, ""},
		{"", false, ""},
		{"   ", false, ""},
		{"http://", false, ""},
		{"10.0.0.0/33", false, ""},
		{"10.0.0.1.", false, ""},
		{"010.0.0.1", false, ""},  // octal to inet_aton
		{"0x0a.0.0.1", false, ""}, // hex to inet_aton
		{"0x0a000001", false, ""}, // one hex number to inet_aton
		{"167772161", false, ""},  // one decimal number to inet_aton
		{"10.0.0.1%eth0", false, ""},
		{"[2001:db8::1]", false, ""}, // brackets need a port
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			t.Parallel()
			d := m.Check(tt.target)
			require.Equal(t, tt.in, d.In, "reason: %s", d.Reason)
			require.Equal(t, tt.rule, d.Rule, "reason: %s", d.Reason)
			require.NotEmpty(t, d.Reason)
			require.Equal(t, tt.in, m.Contains(tt.target))
		})
	}
}

func TestScopeCheckReasons(t *testing.T) {
	t.Parallel()
	m := checkScope.MustCompile()

	tests := []struct {
		target string
		reason string
	}{
		{"10.0.0.1", `10.0.0.1 is included by "10.0.0.0/24"`},
		{"10.0.0.5", `10.0.0.5 is excluded by "10.0.0.5"`},
		{"10.0.0.0/24", `10.0.0.0/24 is excluded by "10.0.0.5"`},
		{"10.0.1.0/24", `10.0.1.0/24 matches no include entry`},
		{"WWW.Example.com", `www.example.com is included by "*.example.com"`},
		{"db.internal.example.com", `db.internal.example.com is excluded by "*.internal.example.com"`},
		{"evilexample.com", `evilexample.com matches no include entry`},
		{"", `"" is not a valid target: empty`},
		{"exa mple.com", `"exa mple.com" is not a valid target: has the character ' ', which a domain name cannot hold`},
		{"a.example.com:http", `"a.example.com:http" is not a valid target: port "http" is not a number between 1 and 65535`},
		{"ftp://", `"ftp://" is not a valid target: not a URL with a host`},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.reason, m.Check(tt.target).Reason)
		})
	}
}

// TestScopeCheckMappedRange covers an IPv6 include wide enough to hold the
// IPv4-mapped range ::ffff:0:0/96: the IPv4 hosts in it are reached over
// IPv4, so they are decided by the IPv4 entries.
func TestScopeCheckMappedRange(t *testing.T) {
	t.Parallel()
	m := Scope{Include: []string{"::/64"}, Exclude: []string{"10.0.0.5"}}.MustCompile()

	tests := []struct {
		target string
		in     bool
		rule   string
	}{
		{"::1", true, "::/64"},
		{"::/96", true, "::/64"},     // below the mapped range
		{"::/64", false, "10.0.0.5"}, // holds the mapped range, so 10.0.0.5 too
		{"::/80", false, "10.0.0.5"},
		{"::ffff:10.0.0.6", false, ""}, // an IPv4 host, and no IPv4 entry includes it
		{"::ffff:10.0.0.6/128", false, ""},
		{"::ffff:10.0.0.5/128", false, "10.0.0.5"},
		{"::ffff:0:0/96", false, "10.0.0.5"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			t.Parallel()
			d := m.Check(tt.target)
			require.Equal(t, tt.in, d.In, "reason: %s", d.Reason)
			require.Equal(t, tt.rule, d.Rule, "reason: %s", d.Reason)
		})
	}

	t.Run("exclude wins inside a prefix that holds the mapped range", func(t *testing.T) {
		t.Parallel()
		m := Scope{Include: []string{"::/0", "0.0.0.0/0"}, Exclude: []string{"10.0.0.5"}, AllowBroad: true}.MustCompile()
		d := m.Check("::/64")
		require.False(t, d.In)
		require.Equal(t, "10.0.0.5", d.Rule)
		require.Equal(t, `::/64 holds the IPv4-mapped range ::ffff:0.0.0.0/96, and 0.0.0.0/0 is excluded by "10.0.0.5"`, d.Reason)
		require.True(t, m.Contains("::/96"))
		require.True(t, m.Contains("::ffff:10.0.0.6/127"))
	})
}

func TestScopeCheckEmpty(t *testing.T) {
	t.Parallel()
	m := Scope{}.MustCompile()
	for _, target := range []string{"10.0.0.1", "::1", "example.com", "0.0.0.0/0", "::/0", "https://example.com/"} {
		require.False(t, m.Contains(target), target)
	}
}

func TestScopeCheckBroad(t *testing.T) {
	t.Parallel()
	m := Scope{
		Include:    []string{"0.0.0.0/0", "*.com"},
		Exclude:    []string{"10.0.0.0/8", "*.example.com"},
		AllowBroad: true,
	}.MustCompile()
	require.True(t, m.Contains("8.8.8.8"))
	require.True(t, m.Contains("192.168.0.0/16"))
	require.False(t, m.Contains("0.0.0.0/0"))
	require.False(t, m.Contains("10.1.2.3"))
	require.True(t, m.Contains("www.google.com"))
	require.False(t, m.Contains("com"), "a wildcard does not hold its apex")
	require.False(t, m.Contains("www.example.com"))
	require.True(t, m.Contains("example.com"), "a wildcard exclude does not hold its apex")
}

func TestScopeMatcherConcurrent(t *testing.T) {
	t.Parallel()
	m := checkScope.MustCompile()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if m.Contains("10.0.0.5") || !m.Contains("www.example.com") {
					t.Error("wrong answer under concurrency")
					return
				}
			}
		}()
	}
	wg.Wait()
}

// FuzzScope checks that scope normalization is total and idempotent, that a
// normalized scope compiles, and that Check never panics and only ever
// names entries of the scope.
func FuzzScope(f *testing.F) {
	f.Add("10.0.0.0/24\n*.example.com\nexample.com", "10.0.0.5\nadmin.example.com", false, "::ffff:10.0.0.5")
	f.Add("2001:db8::/64\nfe80::/64", "2001:db8::dead", false, "[2001:db8::dead]:443")
	f.Add("bücher.example\n*.BÜCHER.example.", "", false, "https://www.bücher.example:8443/x")
	f.Add("0.0.0.0/0\n::/0\n*.com", "10.0.0.0/8", true, "::/64")
	f.Add("::/64", "10.0.0.5", false, "::ffff:10.0.0.0/120")
	f.Add("::ffff:10.0.0.5/64\n10.0.0.77/24", "::ffff:10.0.0.0/120", false, "10.0.0.4/31")
	f.Add("*foo.com\n1.2.3", "", false, "example.com.evil.com")
	f.Add("example.com", "", false, "example.com:evil.com")
	f.Add("fe80::/10", "fe80::bad", false, "fe80::bad%eth0")
	f.Fuzz(func(t *testing.T, include, exclude string, allowBroad bool, target string) {
		s := Scope{Include: splitLines(include), Exclude: splitLines(exclude), AllowBroad: allowBroad}
		n, err := s.Normalize()
		if err != nil {
			require.Equal(t, EINVALID, ErrorCode(err))
			return
		}
		again, err := n.Normalize()
		require.NoError(t, err, "normalizing %q", n)
		require.Equal(t, n, again, "normalizing a normalized scope changes it")

		m, err := n.Compile()
		require.NoError(t, err)
		for _, tg := range append([]string{target}, n.Include...) {
			d := m.Check(tg)
			require.NotEmpty(t, d.Reason)
			switch {
			case d.In:
				require.Contains(t, n.Include, d.Rule, "target %q", tg)
			case d.Rule != "":
				require.Contains(t, n.Exclude, d.Rule, "target %q", tg)
			}
			if d.In {
				// Every address form of an in-scope address is in scope.
				host, err := targetHost(tg)
				require.NoError(t, err)
				if a, err := netip.ParseAddr(host); err == nil && a.Unmap().Is4() {
					require.True(t, m.Contains("::ffff:"+a.Unmap().String()), "mapped form of %q", tg)
				}
			}
		}
		// The same hosts written another way get the same answer.
		if a, err := netip.ParseAddr(target); err == nil && a.Is4() {
			require.Equal(t, m.Contains(target), m.Contains("::ffff:"+target), "mapped form of %q", target)
			require.Equal(t, m.Contains(target), m.Contains("::ffff:"+target+"/128"), "mapped prefix of %q", target)
			require.Equal(t, m.Contains(target), m.Contains(target+"/32"))
		}
		if p, err := netip.ParsePrefix(target); err == nil {
			p = p.Masked()
			in := m.Contains(target)
			if p.Addr().Is4() {
				mapped := fmt.Sprintf("::ffff:%s/%d", p.Addr(), p.Bits()+96)
				require.Equal(t, in, m.Contains(mapped), "mapped form of %q", target)
			}
			if in {
				// A prefix in scope holds only addresses in scope.
				first := p.Addr()
				last := netipLast(p)
				require.True(t, m.Contains(first.String()), "%q is in, its first address is not", target)
				require.True(t, m.Contains(last.String()), "%q is in, its last address is not", target)
				if p.Addr().Is6() && p.Contains(netip.MustParseAddr("::ffff:0.0.0.0")) {
					require.True(t, m.Contains("0.0.0.0/0"), "%q holds every IPv4 host", target)
				}
			}
		}
		for _, x := range n.Exclude {
			if !strings.HasPrefix(x, "*.") {
				require.False(t, m.Contains(x), "excluded %q is in scope", x)
			}
		}
	})
}

// netipLast returns the last address of a masked prefix.
func netipLast(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func splitLines(s string) []string {
	if s == "" {
		return nil
	}
	return slices.Collect(strings.Lines(s))
}

func TestScopeClip(t *testing.T) {
	t.Parallel()
	m := Scope{
		Include: []string{"10.0.0.0/24", "10.0.1.0/30", "2001:db8::/126"},
		Exclude: []string{"10.0.0.5", "10.0.0.128/25", "2001:db8::2"},
	}.MustCompile()
	tests := []struct {
		target string
		want   []string
	}{
		{"10.0.0.0/24", []string{"10.0.0.0/30", "10.0.0.4/32", "10.0.0.6/31", "10.0.0.8/29", "10.0.0.16/28", "10.0.0.32/27", "10.0.0.64/26"}},
		{"10.0.0.0/23", []string{"10.0.0.0/30", "10.0.0.4/32", "10.0.0.6/31", "10.0.0.8/29", "10.0.0.16/28", "10.0.0.32/27", "10.0.0.64/26", "10.0.1.0/30"}},
		{"10.0.0.5/32", nil},
		{"10.0.0.200/29", nil},
		{"192.168.0.0/16", nil},
		{"::ffff:10.0.1.0/126", []string{"10.0.1.0/30"}},
		{"2001:db8::/64", []string{"2001:db8::/127", "2001:db8::3/128"}},
		{"::/0", []string{"10.0.0.0/30", "10.0.0.4/32", "10.0.0.6/31", "10.0.0.8/29", "10.0.0.16/28", "10.0.0.32/27", "10.0.0.64/26", "10.0.1.0/30", "2001:db8::/127", "2001:db8::3/128"}},
	}
	for _, tt := range tests {
		var got []string
		for _, p := range m.Clip(netip.MustParsePrefix(tt.target)) {
			got = append(got, p.String())
			require.True(t, m.Contains(p.String()), "clip of %s gave %s, which Check refuses", tt.target, p)
		}
		require.Equal(t, tt.want, got, tt.target)
	}
}

// FuzzScopeClip checks Clip against Check address by address: every
// address Clip returns is in scope, and every in-scope address of the
// target is in what Clip returns.
func FuzzScopeClip(f *testing.F) {
	f.Add("10.0.0.0/24", "10.0.0.0/25,10.0.0.200/30", "10.0.0.7,10.0.0.64/28", uint8(0))
	f.Add("10.1.2.0/28", "10.0.0.0/8", "", uint8(1))
	f.Add("2001:db8::/120", "2001:db8::/121", "2001:db8::10/124", uint8(2))
	f.Fuzz(func(t *testing.T, target, include, exclude string, _ uint8) {
		p, err := netip.ParsePrefix(target)
		if err != nil || p.Addr().BitLen()-p.Bits() > 10 {
			return // enumerate at most 1024 addresses
		}
		m, err := Scope{Include: strings.Split(include, ","), Exclude: splitNonEmpty(exclude), AllowBroad: true}.Compile()
		if err != nil {
			return
		}
		in := map[netip.Addr]bool{}
		for _, c := range m.Clip(p) {
			for a := c.Addr(); c.Contains(a); a = a.Next() {
				if in[a] {
					t.Fatalf("clip(%s) returns %s twice", p, a)
				}
				in[a] = true
				if !m.Contains(a.String()) {
					t.Fatalf("clip(%s) returns %s, which is out of scope", p, a)
				}
				if !a.Next().IsValid() {
					break
				}
			}
		}
		p = p.Masked()
		for a := p.Addr(); p.Contains(a); a = a.Next() {
			if m.Contains(a.String()) != in[a.Unmap()] {
				t.Fatalf("clip(%s): %s in scope=%v, in clip=%v", p, a, m.Contains(a.String()), in[a.Unmap()])
			}
			if !a.Next().IsValid() {
				break
			}
		}
	})
}

func splitNonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// An IPv6 exclude that covers IPv4-mapped addresses excludes the IPv4
// addresses they map, however the target is written.
func TestScopeMappedExclude(t *testing.T) {
	t.Parallel()
	m := Scope{Include: []string{"10.0.0.0/8", "::/0"}, Exclude: []string{"::/64"}, AllowBroad: true}.MustCompile()
	for _, target := range []string{"10.0.0.5", "::ffff:10.0.0.5", "10.0.0.0/24"} {
		require.False(t, m.Contains(target), target)
	}
	require.Empty(t, m.Clip(netip.MustParsePrefix("10.0.0.0/24")))
	require.True(t, m.Contains("2001:db8::1"))
	m = Scope{Include: []string{"10.0.0.0/8"}, Exclude: []string{"::ffff:10.1.0.0/112"}, AllowBroad: true}.MustCompile()
	require.False(t, m.Contains("10.1.2.3"))
	require.True(t, m.Contains("10.2.0.1"))
}

// BenchmarkClipLargeScope clips 0.0.0.0/0 against a scope of 4,000
// scattered /32 includes and 1,000 excludes, as CheckTargets does for a
// broad target.
func BenchmarkClipLargeScope(b *testing.B) {
	var inc, exc []string
	for i := range 4000 {
		inc = append(inc, fmt.Sprintf("10.%d.%d.%d", i%256, (i*7)%256, (i*13)%256))
	}
	for i := range 1000 {
		exc = append(exc, fmt.Sprintf("10.%d.%d.0/30", (i*3)%256, (i*11)%256))
	}
	m := Scope{Include: inc, Exclude: exc, AllowBroad: true}.MustCompile()
	all := netip.MustParsePrefix("0.0.0.0/0")
	b.ResetTimer()
	for range b.N {
		if len(m.Clip(all)) == 0 {
			b.Fatal("nothing in scope")
		}
	}
}
