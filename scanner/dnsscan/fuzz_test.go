package dnsscan

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/stretchr/testify/require"
)

// FuzzParseAnswer feeds resolver replies: whatever a server sends, the
// parsed answer holds valid addresses, a bounded loop-free CNAME chain and
// no duplicates, and only records about the name asked.
func FuzzParseAnswer(f *testing.F) {
	f.Add("example.test", []byte{})
	f.Fuzz(func(t *testing.T, name string, wire []byte) {
		msg := new(dns.Msg)
		if err := msg.Unpack(wire); err != nil {
			return
		}
		name = normName(name)
		a := parseAnswer(name, msg)
		require.Equal(t, name, a.name)
		require.LessOrEqual(t, len(a.chain), maxChain)
		for _, list := range [][]string{a.chain, a.mx, a.ns, a.txt} {
			require.Equal(t, len(list), len(slices.Compact(slices.Sorted(slices.Values(list)))), "duplicates in %q", list)
		}
		require.NotContains(t, a.chain, name, "a chain never returns to the name")
		for _, ip := range a.ips {
			require.True(t, ip.IsValid())
			require.Equal(t, ip, ip.Unmap())
			require.Empty(t, ip.Zone())
		}
		if a.cname != "" {
			require.Equal(t, a.cname, a.chain[0])
			require.True(t, a.exists)
		}
		if len(a.ips) > 0 {
			require.True(t, a.found())
		}
		for _, z := range answersFromZone(msg.Answer) {
			require.NotEmpty(t, z.name)
			require.Equal(t, strings.ToLower(z.name), z.name)
			for _, ip := range z.ips {
				require.True(t, ip.IsValid())
			}
		}
	})
}

// FuzzParseWordlist feeds word list files: every word kept is a valid
// label sequence, lower case and unique, and nothing panics.
func FuzzParseWordlist(f *testing.F) {
	f.Add("www\nmail\n# comment\n\nDEV\nbad label\n")
	f.Fuzz(func(t *testing.T, text string) {
		words, _ := parseWordlist(strings.NewReader(text))
		seen := map[string]bool{}
		for _, w := range words {
			require.True(t, validWord(w), w)
			require.Equal(t, strings.ToLower(w), w)
			require.False(t, seen[w], "duplicate %q", w)
			seen[w] = true
			_, ok := dns.IsDomainName(w + ".example.test")
			require.True(t, ok, w)
		}
	})
}

// FuzzTargetName feeds targets: a target either is refused with a reason
// or yields a lower-case name that is not an address.
func FuzzTargetName(f *testing.F) {
	f.Add("*.example.com")
	f.Fuzz(func(t *testing.T, target string) {
		name, wildcard, why := targetName(target)
		if why != "" {
			require.Empty(t, name)
			require.False(t, wildcard)
			return
		}
		require.NotEmpty(t, name)
		require.Equal(t, strings.ToLower(name), name)
		require.False(t, strings.HasSuffix(name, "."))
		_, err := netip.ParseAddr(name)
		require.Error(t, err)
	})
}
