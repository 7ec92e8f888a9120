package dnsscan_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
	"github.com/scanfleet/scanfleet/scanner/dnsscan"
	"github.com/scanfleet/scanfleet/scanner/scannertest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// zone is the test zone: names below example.test that the built-in word
// list finds, one only a zone transfer reveals, names that resolve outside
// the scope, an excluded name, and a wildcard domain with one real name.
func zone(allowAXFR bool) testZone {
	return testZone{
		Zone: "example.test",
		Records: []testRR{
			{Name: "example.test", Type: "A", Value: "192.0.2.1"},
			{Name: "example.test", Type: "MX", Value: "mail.example.test", Pref: 10},
			{Name: "example.test", Type: "MX", Value: "mx.other.test", Pref: 20},
			{Name: "example.test", Type: "TXT", Value: "v=spf1 -all"},
			{Name: "www.example.test", Type: "A", Value: "192.0.2.10,2001:db8::10"},
			{Name: "api.example.test", Type: "CNAME", Value: "www.example.test"},
			{Name: "dev.example.test", Type: "A", Value: "192.0.2.20"},
			{Name: "mail.example.test", Type: "A", Value: "192.0.2.25"},
			{Name: "vpn.example.test", Type: "A", Value: "198.51.100.7"},
			{Name: "vault.example.test", Type: "A", Value: "192.0.2.66"},
			{Name: "hidden-k7q.example.test", Type: "A", Value: "192.0.2.77"},
			{Name: "edge.other.test", Type: "A", Value: "198.51.100.8"},
			{Name: "cdn.example.test", Type: "CNAME", Value: "edge.other.test"},
			{Name: "shop.wild.test", Type: "A", Value: "192.0.2.50"},
		},
		Wildcards: map[string]string{"wild.test": "192.0.2.99"},
		AllowAXFR: allowAXFR,
	}
}

var servers = map[string]startFunc{"dnsmasq": startDnsmasq, "inproc": startInproc}

// input is a task over example.test and *.wild.test whose scope holds the
// zone's names and its documentation networks, but not vault.example.test,
// other.test or 198.51.100.0/24.
func input(s testServer, args map[string]any, targets ...string) *scanfleet.TaskInput {
	a := map[string]any{"resolvers": []any{s.Addr()}, "rate": float64(100_000), "axfr_port": float64(s.Port()), "timeout": "5s"}
	for k, v := range args {
		a[k] = v
	}
	if len(targets) == 0 {
		targets = []string{"example.test", "*.wild.test", "10.0.0.1", "other.test"}
	}
	return &scanfleet.TaskInput{
		Type: "dns", Args: a, Targets: targets,
		Scope: &scanfleet.Scope{
			Include: []string{"example.test", "*.example.test", "*.wild.test", "192.0.2.0/24", "2001:db8::/32", "127.0.0.0/8"},
			Exclude: []string{"vault.example.test"},
		},
	}
}

func run(t *testing.T, in *scanfleet.TaskInput) *scanner.LocalEnv {
	t.Helper()
	env := &scanner.LocalEnv{}
	require.NoError(t, dnsscan.Executor{}.Run(context.Background(), in, env))
	return env
}

// byKey indexes records by kind and key.
func byKey(env *scanner.LocalEnv) map[string]scanfleet.Record {
	out := map[string]scanfleet.Record{}
	for _, r := range env.Records() {
		out[string(r.Kind)+" "+r.Key] = r
	}
	return out
}

func TestScan(t *testing.T) {
	t.Parallel()
	for name, start := range servers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := start(t, zone(true))
			env := run(t, input(s, nil))
			recs := byKey(env)

			apex := recs["domain example.test"].Data
			require.Equal(t, []string{"192.0.2.1"}, scannertest.Strings(apex["ips"]))
			require.Equal(t, []string{"mail.example.test", "mx.other.test"}, scannertest.Strings(apex["mx"]), "MX in order of preference")
			require.Equal(t, []string{"v=spf1 -all"}, scannertest.Strings(apex["txt"]))
			require.Equal(t, []string{"ns1.example.test"}, scannertest.Strings(apex["ns"]))
			require.Equal(t, "target", apex["source"])

			www := recs["domain www.example.test"].Data
			require.ElementsMatch(t, []string{"192.0.2.10", "2001:db8::10"}, scannertest.Strings(www["ips"]))
			require.Equal(t, "brute", www["source"])
			api := recs["domain api.example.test"].Data
			require.Equal(t, "www.example.test", api["cname"])
			require.Contains(t, scannertest.Strings(api["ips"]), "192.0.2.10")
			require.Contains(t, recs, "domain dev.example.test")
			require.Equal(t, "mx", recs["domain mail.example.test"].Data["source"], "found through the apex's MX before the brute force")
			require.Equal(t, []string{"127.0.0.1"}, scannertest.Strings(recs["domain ns1.example.test"].Data["ips"]))

			// A host record per in-scope address, with every name of it.
			require.ElementsMatch(t, []string{"www.example.test", "api.example.test"}, scannertest.Strings(recs["host 192.0.2.10"].Data["hostnames"]))
			require.Contains(t, recs, "host 2001:db8::10")

			// Resolving outside the scope: recorded, not expanded.
			vpn := recs["domain vpn.example.test"].Data
			require.Equal(t, true, vpn["out_of_scope"])
			require.Equal(t, []string{"198.51.100.7"}, scannertest.Strings(vpn["out_of_scope_ips"]))
			require.NotContains(t, recs, "host 198.51.100.7")
			cdn := recs["domain cdn.example.test"].Data
			require.Equal(t, "edge.other.test", cdn["cname"])
			require.Equal(t, true, cdn["out_of_scope"])
			require.NotContains(t, recs, "host 198.51.100.8")
			require.NotContains(t, recs, "domain edge.other.test")
			require.NotContains(t, recs, "domain mx.other.test")
			require.NotContains(t, recs, "domain vault.example.test", "excluded, even though the transfer lists it")

			// The zone transfer: a name no word finds, and a finding.
			require.Equal(t, "axfr", recs["domain hidden-k7q.example.test"].Data["source"])
			var finding map[string]any
			for _, r := range env.Records() {
				if r.Kind == scanfleet.KindFinding {
					finding = r.Data
				}
			}
			require.NotNil(t, finding, "an allowed zone transfer is a finding")
			require.Equal(t, "dns-zone-transfer-allowed", finding["name"])
			require.Equal(t, "127.0.0.1", finding["ip"])
			require.EqualValues(t, s.Port(), finding["port"])

			// The wildcard zone: its one real name, none of its echoes.
			require.Contains(t, recs, "domain shop.wild.test")
			var wild []string
			for k := range recs {
				if strings.HasSuffix(k, ".wild.test") {
					wild = append(wild, k)
				}
			}
			require.Equal(t, []string{"domain shop.wild.test"}, wild)

			// Nothing outside the scope was asked about.
			for _, q := range s.Queries(t) {
				_, name, _ := strings.Cut(q, " ")
				require.False(t, strings.HasSuffix(name, "other.test"), "queried %s", q)
				require.NotEqual(t, "vault.example.test", name, "queried %s", q)
				if name == "wild.test" {
					require.Equal(t, "NS wild.test", q, "the apex of *.wild.test is not in scope; only its NS may be asked")
				}
			}
			require.Contains(t, s.Queries(t), "NS wild.test", "the wildcard's apex is asked for its nameservers")

			res := env.Results()
			require.Greater(t, res["wildcard_filtered"], int64(100))
			require.GreaterOrEqual(t, res["out_of_scope"], int64(3), "other.test, mx.other.test, edge.other.test, vault…")
			require.Equal(t, int64(1), res["skipped"], "10.0.0.1 is not a name")
			st := res["statuses"].(map[string]int64)
			require.Equal(t, res["found"], st["success"])
			require.Positive(t, st["name-not-found"])
			require.Equal(t, map[string]int64{"success": 1}, res["axfr"])
			done, total := env.LastProgress()
			require.Equal(t, done, total)
			require.Positive(t, total)
		})
	}
}

func TestAXFRRefused(t *testing.T) {
	t.Parallel()
	for name, start := range servers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := start(t, zone(false))
			env := run(t, input(s, map[string]any{"brute": false}, "example.test"))
			recs := byKey(env)
			require.Contains(t, recs, "domain example.test")
			require.NotContains(t, recs, "domain hidden-k7q.example.test")
			for _, r := range env.Records() {
				require.NotEqual(t, scanfleet.KindFinding, r.Kind)
			}
			require.Equal(t, map[string]int64{"application-error": 1}, env.Results()["axfr"])
			require.True(t, slices.ContainsFunc(env.Logs(), func(l string) bool {
				return strings.Contains(l, "axfr example.test") && strings.Contains(l, "application-error")
			}), "%q", env.Logs())
		})
	}
}

func TestAXFROutOfScopeNameserver(t *testing.T) {
	t.Parallel()
	s := startInproc(t, zone(true))
	in := input(s, map[string]any{"brute": false}, "example.test")
	in.Scope.Include = slices.DeleteFunc(in.Scope.Include, func(e string) bool { return e == "127.0.0.0/8" })
	// Out of scope, the resolver must be one the worker trusts.
	err := dnsscan.Executor{}.Run(context.Background(), in, &scanner.LocalEnv{})
	require.ErrorContains(t, err, "outside the workspace's scope")
	env := &scanner.LocalEnv{}
	require.NoError(t, dnsscan.Executor{Trusted: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}.Run(context.Background(), in, env))
	require.Equal(t, map[string]int64{"out-of-scope": 1}, env.Results()["axfr"])
	for _, q := range s.Queries(t) {
		require.NotEqual(t, "AXFR example.test", q)
	}
	recs := byKey(env)
	require.Equal(t, true, recs["domain ns1.example.test"].Data["out_of_scope"])
	require.NotContains(t, recs, "host 127.0.0.1")
}

func TestWordlist(t *testing.T) {
	t.Parallel()
	s := startInproc(t, zone(false))
	file := filepath.Join(t.TempDir(), "words.txt")
	require.NoError(t, os.WriteFile(file, []byte("# mine\nDEV\n\nnothere\n"), 0o644))
	env := run(t, input(s, map[string]any{"wordlist": []any{"www"}, "wordlist_file": file, "axfr": false}, "*.example.test"))
	recs := byKey(env)
	require.Contains(t, recs, "domain www.example.test")
	require.Contains(t, recs, "domain dev.example.test")
	require.NotContains(t, recs, "domain api.example.test", "not in the given words")
	// The apex of *.example.test is in scope too here, so it is resolved.
	require.Contains(t, recs, "domain example.test")
}

func TestBadArgs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args map[string]any
		want string
	}{
		{map[string]any{"rate": float64(0)}, "args.rate"},
		{map[string]any{"resolvers": []any{"not a server"}}, "args.resolvers[0]"},
		{map[string]any{"wordlist": []any{"ok", "bad label!"}}, "args.wordlist"},
		{map[string]any{"wordlist_file": "/nonexistent/words"}, "args.wordlist_file"},
		{map[string]any{"timeout": "soon"}, "args.timeout"},
		{map[string]any{"nope": true}, "args.nope"},
	}
	for _, c := range cases {
		t.Run(c.want, func(t *testing.T) {
			t.Parallel()
			args := map[string]any{"resolvers": []any{"127.0.0.1:1"}}
			for k, v := range c.args {
				args[k] = v
			}
			env := &scanner.LocalEnv{}
			err := dnsscan.Executor{}.Run(context.Background(), &scanfleet.TaskInput{Args: args, Targets: []string{"example.test"}}, env)
			require.Error(t, err)
			require.Contains(t, scanfleet.ErrorMessage(err), c.want)
			require.Equal(t, scanfleet.EINVALID, scanfleet.ErrorCode(err))
			require.Empty(t, env.Records())
		})
	}
}

func TestDefaultResolvers(t *testing.T) {
	t.Parallel()
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	require.NoError(t, os.WriteFile(conf, []byte("# comment\nnameserver 127.0.0.53\nnameserver ::1\nsearch example.test\n"), 0o644))
	c, err := dnsscan.Config{ResolvConf: conf}.WithDefaults()
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.53:53", "[::1]:53"}, c.Resolvers)
	require.NotEmpty(t, c.Words, "the built-in word list")

	in := &scanfleet.TaskInput{Targets: []string{"example.test"}}
	err = dnsscan.Executor{ResolvConf: filepath.Join(t.TempDir(), "missing")}.Run(context.Background(), in, &scanner.LocalEnv{})
	require.ErrorContains(t, err, "resolvers: none given")
	require.Equal(t, scanfleet.EINVALID, scanfleet.ErrorCode(err))
}

// TestRate counts the questions the server got and bounds them by the
// rate and the time the scan took: without the limiter the 40 questions
// below arrive in milliseconds and the bound fails.
func TestRate(t *testing.T) {
	t.Parallel()
	for name, start := range servers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := start(t, zone(false))
			words := make([]any, 0, 40)
			for _, w := range []string{"www", "dev", "mail", "api", "nope1", "nope2", "nope3", "nope4", "nope5", "nope6"} {
				words = append(words, w)
			}
			const rate = 40
			in := input(s, map[string]any{"rate": float64(rate), "wordlist": words, "axfr": false}, "*.example.test")
			started := time.Now()
			env := run(t, in)
			elapsed := time.Since(started)
			asked := len(s.Queries(t))
			require.EqualValues(t, asked, env.Results()["queries"], "the task counts what it sent")
			require.Greater(t, asked, 20)
			require.LessOrEqual(t, float64(asked), rate*elapsed.Seconds()+1, "%d queries in %s at %d/s", asked, elapsed, rate)
		})
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	s := startInprocServer(t, zone(false), true) // never answers
	in := input(s, map[string]any{"timeout": "1h", "retries": float64(10), "concurrency": float64(4)}, "*.example.test")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- dnsscan.Executor{}.Run(ctx, in, &scanner.LocalEnv{}) }()
	<-s.seen
	cancel()
	scannertest.RequireCanceled(t, done)
}

func TestTaskType(t *testing.T) {
	t.Parallel()
	tt := dnsscan.Executor{}.TaskType()
	require.NoError(t, tt.Validate())
	require.Equal(t, "dns", tt.Name)
	require.Equal(t, scanfleet.PoolExternal, tt.Pool())
	args, err := tt.ValidateArgs(map[string]any{})
	require.NoError(t, err)
	require.Equal(t, true, args["brute"])
	require.Equal(t, int64(53), args["axfr_port"])
}
