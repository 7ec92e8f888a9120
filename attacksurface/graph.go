package attacksurface

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"sync"
)

// ErrVMNotFound is matched (errors.Is) by the error Attackers returns for
// a vm_id that is not in the environment. An isolated VM is not an error:
// its answer is an empty list.
var ErrVMNotFound = errors.New("vm not found")

type vmNotFoundError struct{ id string }

// Error gives the message the HTTP API shows: vm "x" not found.
func (e *vmNotFoundError) Error() string { return fmt.Sprintf("vm %q not found", e.id) }

// Is makes the error match ErrVMNotFound.
func (e *vmNotFoundError) Is(target error) bool { return target == ErrVMNotFound }

// Config tunes the memory Build may spend on precomputed answers. The zero
// value is ready to use; see the package doc for what is precomputed.
type Config struct {
	// MaxClosureBytes bounds the tag-level closure table of each of the
	// transitive and tag modes (one bitset over rule tags per strongly
	// connected component of the tag graph). A mode whose table would be
	// larger answers by searching the tag graph per query instead. Default
	// 256 MiB; with 10,000 rules the table is at most about 50 MiB.
	MaxClosureBytes int64
	// MaxCacheBytes bounds the VM bitsets precomputed for distinct attacker
	// tag sets (n/8 bytes each for n VMs). Sets that do not fit, least used
	// first, are assembled per query from the per-tag VM lists. Default
	// 256 MiB.
	MaxCacheBytes int64
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.MaxClosureBytes = cmp.Or(c.MaxClosureBytes, 256<<20)
	c.MaxCacheBytes = cmp.Or(c.MaxCacheBytes, 256<<20)
	return c
}

func (c Config) validate() error {
	if c.MaxClosureBytes < 0 {
		return errors.New("invalid config: MaxClosureBytes must not be negative")
	}
	if c.MaxCacheBytes < 0 {
		return errors.New("invalid config: MaxCacheBytes must not be negative")
	}
	return nil
}

// Graph answers attack-surface queries over one environment. Build does all
// the work; a Graph is immutable and safe for concurrent use.
type Graph struct {
	ids    []string         // VM ids in ascending order; a VM is its rank
	index  map[string]int32 // vm_id → rank
	quoted []byte           // ids as JSON strings, each followed by a comma
	qoff   []int            // quoted[qoff[i]:qoff[i+1]] is ids[i] and its comma
	words  int              // uint64 words in a VM bitset

	ntags    int              // rule tags: tags some rule names
	tags     map[string]int32 // rule tag → id
	carriers csr              // rule tag → VMs carrying it, ascending
	vmDests  csr              // VM → its tags that are some rule's dest

	// lateral is the tag graph of the transitive mode: node t is "an
	// attacker holding tag t", node ntags+t is "a VM carrying tag t is
	// reached", and nodes past 2*ntags are hubs for VMs with many tags.
	lateral csr

	modes [3]modeTable // indexed by Mode.index
	sets  []attackSet  // distinct attacker tag sets, shared by all modes

	scratch sync.Pool // *[]uint64 VM bitsets, zeroed
	marks   sync.Pool // *marks for per-query graph search
}

// modeTable maps each rule dest tag d to the set of source tags whose
// carriers attack a VM carrying d.
type modeTable struct {
	setOf []int32 // dest tag → index into Graph.sets, -1 for none; nil when searching
	// When setOf is nil the mode searches rev per query: from node
	// targetBase+d backwards; nodes below Graph.ntags are source tags.
	rev        *csr
	targetBase int32
}

// attackSet is a set of source tags and, when it fit in the cache budget,
// the VMs that carry any of them.
type attackSet struct {
	tags []int32  // ascending
	vms  []uint64 // bitset over VM ranks, nil if not precomputed
	cost int      // carriers summed over tags: the price of assembling vms
}

type marks struct {
	gen  uint32
	seen []uint32
}

// Build validates env and precomputes the answers of all three modes.
// It does not retain env.
func Build(env *Env) (*Graph, error) {
	return BuildWithConfig(env, Config{})
}

// BuildWithConfig is Build with explicit memory budgets.
func BuildWithConfig(env *Env, cfg Config) (*Graph, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("build graph: %w", err)
	}
	if env == nil {
		env = &Env{}
	}
	if err := env.validate(); err != nil {
		return nil, fmt.Errorf("build graph: %w", err)
	}
	g := &Graph{}
	vms := g.indexVMs(env)
	rules := g.indexTags(env, vms)
	g.buildModes(rules, cfg)
	g.materialize(cfg.MaxCacheBytes)
	words := g.words
	g.scratch.New = func() any {
		b := make([]uint64, words)
		return &b
	}
	return g, nil
}

// indexVMs ranks the VMs by id, so that any bitset over VMs iterates in
// sorted order and answers need no sort. It returns the VMs in rank order.
func (g *Graph) indexVMs(env *Env) []*VM {
	vms := make([]*VM, len(env.VMs))
	for i := range env.VMs {
		vms[i] = &env.VMs[i]
	}
	slices.SortFunc(vms, func(a, b *VM) int { return cmp.Compare(a.ID, b.ID) })
	n := len(vms)
	// The ids are copied into one string: answers then point into a single
	// object, which the garbage collector marks once instead of 100,000
	// times, and the Graph shares no memory with env.
	size := 0
	for _, vm := range vms {
		size += len(vm.ID)
	}
	var all strings.Builder
	all.Grow(size)
	for _, vm := range vms {
		all.WriteString(vm.ID)
	}
	joined := all.String()
	g.ids = make([]string, n)
	g.index = make(map[string]int32, n)
	g.qoff = make([]int, n+1)
	g.quoted = make([]byte, 0, size+3*n)
	at := 0
	for i, vm := range vms {
		id := joined[at : at+len(vm.ID)]
		at += len(vm.ID)
		g.ids[i] = id
		g.index[id] = int32(i)
		g.qoff[i] = len(g.quoted)
		g.quoted = append(appendJSONString(g.quoted, id), ',')
	}
	g.qoff[n] = len(g.quoted)
	g.words = (n + 63) / 64
	return vms
}

// hubThreshold is the number of (dest, source) tag pairs above which a VM
// is routed through a hub node in the lateral graph instead of one edge per
// pair: a VM with 100 tags would otherwise add 10,000 edges.
const hubThreshold = 64

// indexTags interns the tags rules name and builds the tag→VM lists and the
// lateral tag graph. It returns the rule graph between tags, which the tag
// and direct modes are computed from.
func (g *Graph) indexTags(env *Env, vms []*VM) *csr {
	g.tags = make(map[string]int32)
	intern := func(t string) int32 {
		id, ok := g.tags[t]
		if !ok {
			id = int32(len(g.tags))
			g.tags[t] = id
		}
		return id
	}
	ruleSrc := make([]int32, len(env.Rules))
	ruleDst := make([]int32, len(env.Rules))
	for i, r := range env.Rules {
		ruleSrc[i] = intern(r.SourceTag)
		ruleDst[i] = intern(r.DestTag)
	}
	T := len(g.tags)
	g.ntags = T
	isSrc := make([]bool, T)
	isDst := make([]bool, T)
	for i := range ruleSrc {
		isSrc[ruleSrc[i]] = true
		isDst[ruleDst[i]] = true
	}

	// Lateral graph edges: S(s) → D(d) per rule; D(d) → S(s) for each VM
	// carrying both d and s, or D(d) → hub → S(s) for VMs with many tags.
	latSrc := make([]int32, 0, len(env.Rules)+len(vms)*4)
	latDst := make([]int32, 0, len(env.Rules)+len(vms)*4)
	for i := range ruleSrc {
		latSrc = append(latSrc, ruleSrc[i])
		latDst = append(latDst, int32(T)+ruleDst[i])
	}
	hubs := int32(2 * T)

	var carSrc, carDst, destSrc, destDst []int32
	stamp := make([]int32, T)
	var srcs, dsts []int32
	for rank, vm := range vms {
		srcs, dsts = srcs[:0], dsts[:0]
		for _, name := range vm.Tags {
			t, ok := g.tags[name]
			if !ok || stamp[t] == int32(rank)+1 {
				continue // inert tag, or repeated on this VM
			}
			stamp[t] = int32(rank) + 1
			carSrc = append(carSrc, t)
			carDst = append(carDst, int32(rank))
			if isSrc[t] {
				srcs = append(srcs, t)
			}
			if isDst[t] {
				dsts = append(dsts, t)
				destSrc = append(destSrc, int32(rank))
				destDst = append(destDst, t)
			}
		}
		if len(srcs) == 0 || len(dsts) == 0 {
			continue
		}
		if len(srcs)*len(dsts) <= hubThreshold {
			for _, d := range dsts {
				for _, s := range srcs {
					latSrc = append(latSrc, int32(T)+d)
					latDst = append(latDst, s)
				}
			}
			continue
		}
		for _, d := range dsts {
			latSrc = append(latSrc, int32(T)+d)
			latDst = append(latDst, hubs)
		}
		for _, s := range srcs {
			latSrc = append(latSrc, hubs)
			latDst = append(latDst, s)
		}
		hubs++
	}
	g.carriers = newCSR(T, carSrc, carDst)
	g.vmDests = newCSR(len(vms), destSrc, destDst)
	g.lateral = newCSR(int(hubs), latSrc, latDst)

	rules := newCSR(T, ruleSrc, ruleDst)
	return &rules
}

// buildModes fills the three mode tables.
func (g *Graph) buildModes(rules *csr, cfg Config) {
	T := g.ntags
	in := newInterner(g)

	// Transitive: closure over the lateral graph; bits are source tags.
	bit := make([]int32, g.lateral.len())
	for v := range bit {
		bit[v] = -1
		if v < T {
			bit[v] = int32(v)
		}
	}
	g.modes[0] = in.closureTable(&g.lateral, bit, int32(T), cfg.MaxClosureBytes)

	// Tag: closure over the rule graph alone.
	bit = bit[:T]
	g.modes[2] = in.closureTable(rules, bit, 0, cfg.MaxClosureBytes)

	// Direct: the sources of the rules into each dest tag.
	rev := rules.reverse()
	direct := modeTable{setOf: make([]int32, T)}
	for d := range int32(T) {
		direct.setOf[d] = in.intern(rev.succ(d)) // rows are deduplicated, not sorted
	}
	g.modes[1] = direct
	g.sets = in.sets
}

// interner deduplicates attacker tag sets across tags and modes: in a
// typical environment most dest tags share one giant strongly connected
// component and so one set.
type interner struct {
	g    *Graph
	byID map[string]int32
	sets []attackSet
	key  []byte
}

func newInterner(g *Graph) *interner {
	return &interner{g: g, byID: make(map[string]int32)}
}

// intern returns the id of the set of tags, or -1 for the empty set. It
// sorts tags in place.
func (in *interner) intern(tags []int32) int32 {
	if len(tags) == 0 {
		return -1
	}
	slices.Sort(tags)
	in.key = in.key[:0]
	for _, t := range tags {
		in.key = binary.LittleEndian.AppendUint32(in.key, uint32(t))
	}
	if id, ok := in.byID[string(in.key)]; ok {
		return id
	}
	own := slices.Clone(tags)
	cost := 0
	for _, t := range own {
		cost += len(in.g.carriers.succ(t))
	}
	id := int32(len(in.sets))
	in.sets = append(in.sets, attackSet{tags: own, cost: cost})
	in.byID[string(in.key)] = id
	return id
}

// closureTable precomputes a mode over graph g, whose node targetBase+d
// stands for "a VM carrying dest tag d is attacked". When the closure
// table would exceed limit bytes, it returns a table that searches the
// reversed graph per query instead.
func (in *interner) closureTable(g *csr, bit []int32, targetBase int32, limit int64) modeTable {
	T := in.g.ntags
	comp, ncomp := tarjan(g)
	words := (T + 63) / 64
	if int64(ncomp)*int64(words)*8 > limit {
		rev := g.reverse()
		return modeTable{rev: &rev, targetBase: targetBase}
	}
	sets := closure(g, comp, ncomp, bit, words)
	byComp := make([]int32, ncomp)
	for i := range byComp {
		byComp[i] = -2
	}
	table := modeTable{setOf: make([]int32, T)}
	var tags []int32
	for d := range int32(T) {
		c := comp[targetBase+d]
		if byComp[c] == -2 {
			tags = appendBits(tags[:0], sets[int(c)*words:int(c+1)*words])
			byComp[c] = in.intern(tags)
		}
		table.setOf[d] = byComp[c]
	}
	return table
}

// appendBits appends the indexes of the set bits, in ascending order.
func appendBits(dst []int32, set []uint64) []int32 {
	for wi, w := range set {
		for w != 0 {
			dst = append(dst, int32(wi*64+bits.TrailingZeros64(w)))
			w &= w - 1
		}
	}
	return dst
}

// materialize precomputes the VM bitset of the most used attacker sets
// that fit in budget bytes. Use is estimated as the number of VMs whose
// queries touch the set. A set with fewer carrier entries than a bitset has
// words is left out: assembling it per query costs less than the one pass
// over the bitset every query makes anyway, and a rule chain of 50,000
// tags would otherwise fill the budget with 50,000 one-VM bitsets.
func (g *Graph) materialize(budget int64) {
	use := make([]int, len(g.sets))
	for _, m := range g.modes {
		for d, s := range m.setOf {
			if s >= 0 {
				use[s] += len(g.carriers.succ(int32(d)))
			}
		}
	}
	order := make([]int, 0, len(g.sets))
	for i := range g.sets {
		if use[i] > 0 && g.sets[i].cost >= max(g.words, 1) {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(use[b], use[a]) })
	size := int64(g.words) * 8
	for _, i := range order {
		if budget < size {
			break
		}
		budget -= size
		set := &g.sets[i]
		set.vms = make([]uint64, g.words)
		for _, t := range set.tags {
			for _, v := range g.carriers.succ(t) {
				setBit(set.vms, v)
			}
		}
	}
}

// VMCount returns the number of VMs in the environment.
func (g *Graph) VMCount() int { return len(g.ids) }

// Attackers returns the ids of the VMs that can attack vmID under mode,
// sorted. The answer never contains vmID itself and is empty, not nil, for
// an isolated VM. An unknown vmID is an error matching ErrVMNotFound; an
// unknown mode one matching ErrUnknownMode. The zero Mode is
// ModeTransitive.
//
// The cost is about the size of the answer: one pass over a precomputed
// bitset of n/64 words in the common case (see the package doc), plus the
// allocation of the answer, 16 bytes per id. Callers asking often for large
// answers can reuse a slice with AppendAttackers, or skip the slice with
// AppendAttackersJSON.
func (g *Graph) Attackers(vmID string, mode Mode) ([]string, error) {
	out, err := g.AppendAttackers(nil, vmID, mode)
	if err == nil && out == nil {
		out = []string{}
	}
	return out, err
}

// AppendAttackers appends the answer of Attackers to dst and returns the
// extended slice; on error dst is returned unchanged. Reusing dst across
// queries saves the allocation of the answer, and with it most of the
// garbage collector's work when answers have tens of thousands of ids.
func (g *Graph) AppendAttackers(dst []string, vmID string, mode Mode) ([]string, error) {
	set, x, release, err := g.attackers(vmID, mode)
	if err != nil {
		return dst, err
	}
	defer release()
	n := count(set)
	if n > 0 && has(set, x) {
		n--
	}
	if n == 0 {
		return dst, nil
	}
	dst = slices.Grow(dst, n)
	forRuns(set, x, func(a, b int) {
		if b-a <= 3 { // a bulk copy's setup costs more than a few stores (measured)
			for _, id := range g.ids[a:b] {
				dst = append(dst, id)
			}
			return
		}
		dst = append(dst, g.ids[a:b]...)
	})
	return dst, nil
}

// AppendAttackersJSON appends the answer of Attackers as a JSON array of
// strings to dst, without building the []string; HTTP handlers use it to
// serve large answers as copies of pre-encoded ids.
func (g *Graph) AppendAttackersJSON(dst []byte, vmID string, mode Mode) ([]byte, error) {
	set, x, release, err := g.attackers(vmID, mode)
	if err != nil {
		return dst, err
	}
	defer release()
	dst = append(dst, '[')
	start := len(dst)
	forRuns(set, x, func(a, b int) {
		dst = append(dst, g.quoted[g.qoff[a]:g.qoff[b]]...)
	})
	if len(dst) > start {
		dst = dst[:len(dst)-1] // the last id's comma
	}
	return append(dst, ']'), nil
}

// forRuns calls fn(a, b) for each maximal run a..b-1 of set bits, in
// ascending order, leaving out bit skip. VMs are ranked by id, so a run is
// a slice of sorted ids that can be copied in one go; in a dense answer
// whole words are runs of 64.
func forRuns(set []uint64, skip int32, fn func(a, b int)) {
	a, b := -1, -1 // the open run is a..b-1
	for wi, w := range set {
		base := wi * 64
		if int(skip)>>6 == wi {
			w &^= 1 << (skip & 63)
		}
		if w == ^uint64(0) && b == base {
			b += 64
			continue
		}
		for w != 0 {
			i := base + bits.TrailingZeros64(w)
			if i == b {
				// extend by the whole stretch of ones starting at i
				ones := bits.TrailingZeros64(^(w >> (i - base)))
				b += ones
				if i-base+ones >= 64 {
					w = 0
				} else {
					w &^= (uint64(1)<<ones - 1) << (i - base)
				}
				continue
			}
			if a >= 0 {
				fn(a, b)
			}
			a, b = i, i+1
			w &= w - 1
		}
	}
	if a >= 0 {
		fn(a, b)
	}
}

func noop() {}

// attackers returns the bitset of VMs attacking vmID, X's own bit possibly
// included, and a func to call once the bitset is no longer read.
func (g *Graph) attackers(vmID string, mode Mode) (set []uint64, x int32, release func(), err error) {
	mi, err := mode.index()
	if err != nil {
		return nil, 0, nil, err
	}
	x, ok := g.index[vmID]
	if !ok {
		return nil, 0, nil, &vmNotFoundError{id: vmID}
	}
	dests := g.vmDests.succ(x)
	m := &g.modes[mi]
	if m.setOf == nil {
		set := g.getScratch()
		g.search(set, m, dests)
		return set, x, func() { g.putScratch(set) }, nil
	}
	// Common case: all of X's dest tags lead to one precomputed set.
	only := int32(-1)
	single := true
	for _, d := range dests {
		s := m.setOf[d]
		if s < 0 || s == only {
			continue
		}
		if only >= 0 {
			single = false
			break
		}
		only = s
	}
	if only < 0 {
		return nil, x, noop, nil
	}
	if single && g.sets[only].vms != nil {
		return g.sets[only].vms, x, noop, nil
	}
	set = g.getScratch()
	var seen [16]int32
	nseen := 0
	for _, d := range dests {
		s := m.setOf[d]
		if s < 0 || slices.Contains(seen[:nseen], s) {
			continue
		}
		if nseen < len(seen) {
			seen[nseen] = s
			nseen++
		}
		g.addSet(set, s)
	}
	return set, x, func() { g.putScratch(set) }, nil
}

// addSet ORs the VMs of attacker set s into dst.
func (g *Graph) addSet(dst []uint64, s int32) {
	a := &g.sets[s]
	if a.vms != nil {
		orInto(dst, a.vms)
		return
	}
	for _, t := range a.tags {
		for _, v := range g.carriers.succ(t) {
			setBit(dst, v)
		}
	}
}

// search answers a mode whose closure table was over budget: a breadth-
// first search backwards from X's dest tags, adding the carriers of every
// source tag reached through at least one edge.
func (g *Graph) search(dst []uint64, m *modeTable, dests []int32) {
	mk := g.getMarks(m.rev.len())
	defer g.marks.Put(mk)
	gen := mk.gen
	var queue []int32
	visit := func(v int32) {
		for _, p := range m.rev.succ(v) {
			if mk.seen[p] != gen {
				mk.seen[p] = gen
				queue = append(queue, p)
			}
		}
	}
	for _, d := range dests {
		visit(m.targetBase + d)
	}
	for len(queue) > 0 {
		v := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if int(v) < g.ntags {
			for _, c := range g.carriers.succ(v) {
				setBit(dst, c)
			}
		}
		visit(v)
	}
}

// getMarks returns visit marks for n nodes with a fresh generation.
func (g *Graph) getMarks(n int) *marks {
	mk, _ := g.marks.Get().(*marks)
	if mk == nil {
		mk = &marks{}
	}
	if len(mk.seen) < n {
		mk.seen = make([]uint32, n)
		mk.gen = 0
	}
	mk.gen++
	if mk.gen == 0 { // wrapped: old marks could collide
		clear(mk.seen)
		mk.gen = 1
	}
	return mk
}

func (g *Graph) getScratch() []uint64 {
	return *g.scratch.Get().(*[]uint64)
}

func (g *Graph) putScratch(b []uint64) {
	clear(b)
	g.scratch.Put(&b)
}

// Reachable returns the VMs an attacker holding tag fromTag can reach,
// directly or by lateral movement, sorted. It models an attacker sitting on
// a VM that carries fromTag (or outside the cloud, for a tag such as
// "internet" that only rules name): a VM carrying fromTag is in the answer
// only if some path reaches it. An unknown tag reaches nothing. The cost is
// one search of the tag graph, not a precomputed lookup.
func (g *Graph) Reachable(fromTag string) []string {
	out := []string{}
	t, ok := g.tags[fromTag]
	if !ok {
		return out
	}
	T := int32(g.ntags)
	mk := g.getMarks(g.lateral.len())
	defer g.marks.Put(mk)
	set := g.getScratch()
	defer g.putScratch(set)
	queue := []int32{t}
	for len(queue) > 0 {
		v := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		for _, w := range g.lateral.succ(v) {
			if mk.seen[w] == mk.gen {
				continue
			}
			mk.seen[w] = mk.gen
			if w >= T && w < 2*T {
				for _, c := range g.carriers.succ(w - T) {
					setBit(set, c)
				}
			}
			queue = append(queue, w)
		}
	}
	for _, i := range appendBits(nil, set) {
		out = append(out, g.ids[i])
	}
	return out
}
