package attacksurface

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

var (
	// docEnv is the worked example of the package doc.
	docEnv = []string{"web-1:web", "app-1:app,monitored", "db-1:db", "jump-1:vpn"}
	docFW  = []string{"web>app", "app>db", "vpn>monitored"}

	// infraEnv is a small Kubernetes-like estate, in the spirit of
	// surfacescan's own test data.
	infraEnv = []string{
		"ssh-1:ssh", "ssh-2:ssh", "lb-1:lb", "master-1:masters", "master-2:masters",
		"node-1:nodes", "node-2:nodes", "node-3:nodes", "postgres:db", "redis:cache",
	}
	infraFW = []string{
		"ssh>lb", "ssh>masters", "ssh>nodes", "lb>nodes", "nodes>db", "nodes>cache",
		"nodes>nodes", "masters>masters", "nodes>masters",
	}
)

func TestAttackersSemantics(t *testing.T) {
	t.Parallel()
	type want struct{ transitive, direct, tag []string }
	same := func(ids ...string) want {
		if ids == nil {
			ids = []string{}
		}
		return want{ids, ids, ids}
	}
	tests := []struct {
		name  string
		vms   []string
		rules []string
		vm    string
		want  want
	}{
		{"doc db-1", docEnv, docFW, "db-1", want{
			transitive: []string{"app-1", "jump-1", "web-1"},
			direct:     []string{"app-1"},
			tag:        []string{"app-1", "web-1"},
		}},
		{"doc app-1 two tags", docEnv, docFW, "app-1", same("jump-1", "web-1")},
		{"doc isolated", docEnv, docFW, "jump-1", same()},
		{"no rules", []string{"a:ci,dev", "b:ssh,dev"}, nil, "a", same()},
		{"one rule", []string{"vm-a211de:ci,dev", "vm-c7bac01a07:ssh,dev"}, []string{"ssh>dev"}, "vm-a211de", same("vm-c7bac01a07")},
		{"ignores itself", []string{"vm-a211de:ci,dev,ssh", "vm-c7bac01a07:ssh,dev"}, []string{"ssh>dev"}, "vm-a211de", same("vm-c7bac01a07")},
		{"chain", []string{"jira:ci,dev", "bastion:ssh", "db:db"}, []string{"ssh>dev", "dev>db"}, "db", want{
			transitive: []string{"bastion", "jira"},
			direct:     []string{"jira"},
			tag:        []string{"bastion", "jira"},
		}},
		{"vm without tags", []string{"a:", "b:x"}, []string{"x>x"}, "a", same()},
		{"vm without tags attacked by none", []string{"a:", "b:x"}, []string{"x>x"}, "b", same()},
		{"same tag, no rule back", []string{"db-1:db", "db-2:db", "app:app"}, []string{"app>db"}, "db-1", same("app")},
		{"self-loop", []string{"db-1:db", "db-2:db", "app:app"}, []string{"app>db", "db>db"}, "db-1", same("app", "db-2")},
		{"cycle of two", []string{"a-1:a", "a-2:a", "b-1:b"}, []string{"a>b", "b>a"}, "a-1", want{
			transitive: []string{"a-2", "b-1"},
			direct:     []string{"b-1"},
			tag:        []string{"a-2", "b-1"},
		}},
		{"cycle of three", []string{"a-1:a", "b-1:b", "c-1:c"}, []string{"a>b", "b>c", "c>a"}, "a-1", want{
			transitive: []string{"b-1", "c-1"},
			direct:     []string{"c-1"},
			tag:        []string{"b-1", "c-1"},
		}},
		{"lateral through second tag", []string{"x:in", "hop:mid,out", "target:dst"}, []string{"in>mid", "out>dst"}, "target", want{
			transitive: []string{"hop", "x"},
			direct:     []string{"hop"},
			tag:        []string{"hop"},
		}},
		{"dest tag nobody carries", []string{"a:a", "b:b"}, []string{"a>ghost", "ghost>b"}, "b", want{
			transitive: []string{},
			direct:     []string{},
			tag:        []string{"a"},
		}},
		{"infra postgres", infraEnv, infraFW, "postgres", want{
			transitive: []string{"lb-1", "node-1", "node-2", "node-3", "ssh-1", "ssh-2"},
			direct:     []string{"node-1", "node-2", "node-3"},
			tag:        []string{"lb-1", "node-1", "node-2", "node-3", "ssh-1", "ssh-2"},
		}},
		{"infra node", infraEnv, infraFW, "node-2", want{
			transitive: []string{"lb-1", "node-1", "node-3", "ssh-1", "ssh-2"},
			direct:     []string{"lb-1", "node-1", "node-3", "ssh-1", "ssh-2"},
			tag:        []string{"lb-1", "node-1", "node-3", "ssh-1", "ssh-2"},
		}},
		{"infra master", infraEnv, infraFW, "master-1", want{
			transitive: []string{"lb-1", "master-2", "node-1", "node-2", "node-3", "ssh-1", "ssh-2"},
			direct:     []string{"master-2", "node-1", "node-2", "node-3", "ssh-1", "ssh-2"},
			tag:        []string{"lb-1", "master-2", "node-1", "node-2", "node-3", "ssh-1", "ssh-2"},
		}},
		{"infra lb", infraEnv, infraFW, "lb-1", same("ssh-1", "ssh-2")},
		{"infra ssh", infraEnv, infraFW, "ssh-1", same()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := mkEnv(tt.vms, tt.rules...)
			for _, cfg := range configs {
				g, err := BuildWithConfig(env, cfg.cfg)
				require.NoError(t, err)
				for mode, want := range map[Mode][]string{
					ModeTransitive: tt.want.transitive,
					ModeDirect:     tt.want.direct,
					ModeTag:        tt.want.tag,
				} {
					got, err := g.Attackers(tt.vm, mode)
					require.NoError(t, err)
					require.NotNil(t, got)
					require.Equal(t, want, got, "mode %s, %s", mode, cfg.name)
					require.Equal(t, want, newOracle(env).attackers(tt.vm, mode), "oracle, mode %s", mode)
				}
			}
		})
	}
}

// configs are the budgets that switch between precomputed and per-query
// answers; all must agree.
var configs = []struct {
	name string
	cfg  Config
}{
	{"default", Config{}},
	{"search", Config{MaxClosureBytes: 1}},
	{"no cache", Config{MaxCacheBytes: 1}},
	{"search, no cache", Config{MaxClosureBytes: 1, MaxCacheBytes: 1}},
}

func TestAttackersErrors(t *testing.T) {
	t.Parallel()
	g, err := Build(mkEnv(docEnv, docFW...))
	require.NoError(t, err)

	_, err = g.Attackers("nope", ModeTransitive)
	require.ErrorIs(t, err, ErrVMNotFound)
	require.EqualError(t, err, `vm "nope" not found`)

	_, err = g.Attackers("db-1", Mode("sideways"))
	require.ErrorIs(t, err, ErrUnknownMode)

	got, err := g.Attackers("db-1", "")
	require.NoError(t, err)
	require.Equal(t, []string{"app-1", "jump-1", "web-1"}, got, "zero Mode is transitive")

	empty, err := Build(nil)
	require.NoError(t, err)
	require.Zero(t, empty.VMCount())
	_, err = empty.Attackers("x", ModeDirect)
	require.ErrorIs(t, err, ErrVMNotFound)
	require.Equal(t, []string{}, empty.Reachable("x"))
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]Mode{"": ModeTransitive, "transitive": ModeTransitive, "direct": ModeDirect, "tag": ModeTag} {
		got, err := ParseMode(in)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	for _, in := range []string{"Direct", "x", " tag"} {
		_, err := ParseMode(in)
		require.ErrorIs(t, err, ErrUnknownMode, in)
	}
}

func TestBuildValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  *Env
		want string
	}{
		{"missing id", &Env{VMs: []VM{{ID: "a"}, {Name: "x"}}}, "vms[1]: missing vm_id"},
		{"duplicate", &Env{VMs: []VM{{ID: "a"}, {ID: "b"}, {ID: "a"}}}, `duplicate vm_id "a" at vms[0] and vms[2]`},
		{"rule without source", &Env{Rules: []Rule{{ID: "fw-1", DestTag: "x"}}}, `fw_rules[0] ("fw-1"): missing source_tag`},
		{"rule without dest", &Env{Rules: []Rule{{ID: "fw-1", SourceTag: "x"}}}, `fw_rules[0] ("fw-1"): missing dest_tag`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Build(tt.env)
			require.ErrorIs(t, err, ErrInvalidEnv)
			require.ErrorContains(t, err, tt.want)
		})
	}
	_, err := BuildWithConfig(nil, Config{MaxCacheBytes: -1})
	require.ErrorContains(t, err, "invalid config: MaxCacheBytes must not be negative")
}

func TestReachable(t *testing.T) {
	t.Parallel()
	env := mkEnv(docEnv, append(docFW, "internet>web")...)
	g, err := Build(env)
	require.NoError(t, err)
	tests := map[string][]string{
		"vpn":      {"app-1", "db-1"},
		"internet": {"app-1", "db-1", "web-1"},
		"db":       {},
		"unknown":  {},
		"app":      {"db-1"},
	}
	for tag, want := range tests {
		require.Equal(t, want, g.Reachable(tag), tag)
		require.Equal(t, want, newOracle(env).reachable(tag), "oracle %s", tag)
	}
}

// randomEnv is a small random environment; maxTags above 8 makes VMs that
// go through hub nodes.
func randomEnv(seed uint64, vms, tags, rules, maxTags int) *Env {
	rng := rand.New(rand.NewPCG(seed, 1))
	env := &Env{}
	for i := range vms {
		vm := VM{ID: fmt.Sprintf("vm-%03d", rng.IntN(1000*vms)*1000+i), Tags: []string{}}
		for range rng.IntN(maxTags + 1) {
			vm.Tags = append(vm.Tags, "t"+strconv.Itoa(rng.IntN(tags)))
		}
		env.VMs = append(env.VMs, vm)
	}
	for range rules {
		env.Rules = append(env.Rules, Rule{
			SourceTag: "t" + strconv.Itoa(rng.IntN(tags)),
			DestTag:   "t" + strconv.Itoa(rng.IntN(tags+2)), // some dests nobody carries
		})
	}
	return env
}

// TestAttackersMatchOracle checks every VM in every mode and budget against
// the naive definition, on random environments sparse and dense enough to
// have several components, cycles, self-loops, repeated tags and hubs.
func TestAttackersMatchOracle(t *testing.T) {
	t.Parallel()
	shapes := []struct{ vms, tags, rules, maxTags int }{
		{25, 20, 8, 3},
		{25, 10, 12, 5},
		{30, 30, 40, 2},
		{20, 40, 30, 16},
		{40, 6, 4, 2},
	}
	for i, sh := range shapes {
		for seed := range uint64(6) {
			t.Run(fmt.Sprintf("shape%d/seed%d", i, seed), func(t *testing.T) {
				t.Parallel()
				env := randomEnv(seed, sh.vms, sh.tags, sh.rules, sh.maxTags)
				o := newOracle(env)
				for _, cfg := range configs {
					g, err := BuildWithConfig(env, cfg.cfg)
					require.NoError(t, err)
					for _, vm := range env.VMs {
						for _, mode := range []Mode{ModeTransitive, ModeDirect, ModeTag} {
							got, err := g.Attackers(vm.ID, mode)
							require.NoError(t, err)
							require.Equal(t, o.attackers(vm.ID, mode), got, "%s %s %s", cfg.name, vm.ID, mode)
							js, err := g.AppendAttackersJSON(nil, vm.ID, mode)
							require.NoError(t, err)
							require.JSONEq(t, mustJSON(t, got), string(js))
						}
					}
					for tag := range sh.tags {
						name := "t" + strconv.Itoa(tag)
						require.Equal(t, o.reachable(name), g.Reachable(name), "reachable %s", name)
					}
				}
			})
		}
	}
}

func TestGeneratedMatchesOracle(t *testing.T) {
	t.Parallel()
	for seed := range int64(4) {
		env := Generate(GenConfig{VMs: 60, Tags: 30, Rules: 25, Seed: seed})
		g, err := Build(env)
		require.NoError(t, err)
		o := newOracle(env)
		for _, vm := range env.VMs {
			for _, mode := range []Mode{ModeTransitive, ModeDirect, ModeTag} {
				got, err := g.Attackers(vm.ID, mode)
				require.NoError(t, err)
				require.Equal(t, o.attackers(vm.ID, mode), got)
				require.NotContains(t, got, vm.ID)
				require.True(t, slices.IsSorted(got))
			}
		}
	}
}

// TestDeepChain runs a rule chain of 50,000 tags: recursion would overflow
// or crawl, and the closure table (n²/8) is over budget so the transitive
// and tag modes search.
func TestDeepChain(t *testing.T) {
	t.Parallel()
	const n = 50_000
	env := &Env{}
	for i := range n {
		env.VMs = append(env.VMs, VM{ID: fmt.Sprintf("vm-%06d", i), Tags: []string{"t" + strconv.Itoa(i)}})
		if i > 0 {
			env.Rules = append(env.Rules, Rule{SourceTag: "t" + strconv.Itoa(i-1), DestTag: "t" + strconv.Itoa(i)})
		}
	}
	g, err := Build(env)
	require.NoError(t, err)
	require.Nil(t, g.modes[0].setOf, "transitive mode should search")

	last := fmt.Sprintf("vm-%06d", n-1)
	got, err := g.Attackers(last, ModeTransitive)
	require.NoError(t, err)
	require.Len(t, got, n-1)
	require.Equal(t, "vm-000000", got[0])
	got, err = g.Attackers(last, ModeDirect)
	require.NoError(t, err)
	require.Equal(t, []string{fmt.Sprintf("vm-%06d", n-2)}, got)
	require.Len(t, g.Reachable("t0"), n-1)
}

func TestTarjanLongChain(t *testing.T) {
	t.Parallel()
	const n = 300_000
	src := make([]int32, 0, n)
	dst := make([]int32, 0, n)
	for i := range int32(n - 1) {
		src = append(src, i)
		dst = append(dst, i+1)
	}
	src = append(src, n-1) // close a cycle at the end: n-1 → n-2
	dst = append(dst, n-2)
	g := newCSR(n, src, dst)
	comp, ncomp := tarjan(&g)
	require.Equal(t, n-1, ncomp)
	require.Equal(t, comp[n-1], comp[n-2])
	require.Greater(t, comp[0], comp[1], "reverse topological numbering")
}

func TestMaterializeBudget(t *testing.T) {
	t.Parallel()
	env := Generate(GenConfig{VMs: 2000, Tags: 100, Rules: 300, Seed: 7})
	full, err := Build(env)
	require.NoError(t, err)
	tight, err := BuildWithConfig(env, Config{MaxCacheBytes: 3 * int64(full.words) * 8})
	require.NoError(t, err)
	cached := 0
	for _, s := range tight.sets {
		if s.vms != nil {
			cached++
		}
	}
	require.Equal(t, 3, cached)
	for _, vm := range env.VMs[:200] {
		for _, mode := range []Mode{ModeTransitive, ModeDirect, ModeTag} {
			a, err := full.Attackers(vm.ID, mode)
			require.NoError(t, err)
			b, err := tight.Attackers(vm.ID, mode)
			require.NoError(t, err)
			require.Equal(t, a, b)
		}
	}
}

func TestForRuns(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 9))
	for iter := range 2000 {
		words := 1 + rng.IntN(4)
		set := make([]uint64, words)
		for i := range set {
			switch rng.IntN(4) {
			case 0:
				set[i] = ^uint64(0)
			case 1:
				set[i] = rng.Uint64() | rng.Uint64() // dense
			case 2:
				set[i] = rng.Uint64() & rng.Uint64() & rng.Uint64() // sparse
			}
		}
		skip := int32(rng.IntN(words * 64))
		var want []int
		for i := range words * 64 {
			if has(set, int32(i)) && int32(i) != skip {
				want = append(want, i)
			}
		}
		var got []int
		last := -2
		forRuns(set, skip, func(a, b int) {
			require.Less(t, a, b)
			require.Greater(t, a, last, "runs must be maximal and ascending (iter %d)", iter)
			last = b
			for i := a; i < b; i++ {
				got = append(got, i)
			}
		})
		require.Equal(t, want, got, "iter %d", iter)
	}
}

// TestConcurrentQueries shares one Graph, and so its scratch pools, between
// goroutines in every mode and budget; run it with -race.
func TestConcurrentQueries(t *testing.T) {
	t.Parallel()
	env := Generate(GenConfig{VMs: 400, Tags: 40, Rules: 60, Seed: 5})
	for _, cfg := range configs {
		g, err := BuildWithConfig(env, cfg.cfg)
		require.NoError(t, err)
		want := map[string][]string{}
		modes := []Mode{ModeTransitive, ModeDirect, ModeTag}
		for _, vm := range env.VMs {
			for _, m := range modes {
				ids, err := g.Attackers(vm.ID, m)
				require.NoError(t, err)
				want[vm.ID+"/"+string(m)] = ids
			}
		}
		errs := make(chan error, 4)
		for w := range 4 {
			go func() {
				rng := rand.New(rand.NewPCG(uint64(w), 0))
				for range 300 {
					vm := env.VMs[rng.IntN(len(env.VMs))].ID
					m := modes[rng.IntN(len(modes))]
					got, err := g.Attackers(vm, m)
					if err == nil && !slices.Equal(got, want[vm+"/"+string(m)]) {
						err = fmt.Errorf("%s %s: concurrent answer differs", vm, m)
					}
					if err == nil {
						_ = g.Reachable(env.Rules[rng.IntN(len(env.Rules))].SourceTag)
					}
					if err != nil {
						errs <- err
						return
					}
				}
				errs <- nil
			}()
		}
		for range 4 {
			require.NoError(t, <-errs, cfg.name)
		}
	}
}

func TestAppendAttackers(t *testing.T) {
	t.Parallel()
	g, err := Build(mkEnv(docEnv, docFW...))
	require.NoError(t, err)
	buf := []string{"keep"}
	buf, err = g.AppendAttackers(buf, "db-1", ModeTransitive)
	require.NoError(t, err)
	require.Equal(t, []string{"keep", "app-1", "jump-1", "web-1"}, buf)
	buf, err = g.AppendAttackers(buf[:0], "app-1", ModeTag)
	require.NoError(t, err)
	require.Equal(t, []string{"jump-1", "web-1"}, buf)
	buf, err = g.AppendAttackers(buf[:1], "nope", ModeTag)
	require.ErrorIs(t, err, ErrVMNotFound)
	require.Equal(t, []string{"jump-1"}, buf, "dst unchanged on error")
	empty, err := g.AppendAttackers(nil, "jump-1", ModeDirect)
	require.NoError(t, err)
	require.Empty(t, empty)

	js, err := g.AppendAttackersJSON([]byte("x="), "db-1", ModeDirect)
	require.NoError(t, err)
	require.Equal(t, `x=["app-1"]`, string(js))
	js, err = g.AppendAttackersJSON(js[:0], "jump-1", ModeDirect)
	require.NoError(t, err)
	require.Equal(t, `[]`, string(js))
}

func TestFindings(t *testing.T) {
	t.Parallel()
	env := &Env{
		VMs: []VM{
			{ID: "edge-1", Tags: []string{"internet"}},
			{ID: "app-1", Tags: []string{"app", "monitored"}},
			{ID: "db-1", Tags: []string{"db"}},
			{ID: "lonely", Tags: []string{"other"}},
		},
		Rules: []Rule{{ID: "r1", SourceTag: "internet", DestTag: "app"}, {ID: "r2", SourceTag: "app", DestTag: "db"}},
	}
	g, err := Build(env)
	require.NoError(t, err)
	fs := Findings(g, "internet")
	require.Len(t, fs, 2)
	require.Equal(t, "app-1", fs[0]["vm_id"])
	require.Equal(t, "db-1", fs[1]["vm_id"])
	require.Empty(t, Findings(g, "nobody"))
}
