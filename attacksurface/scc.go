package attacksurface

import "math/bits"

// csr is a directed graph in compressed sparse row form: the successors of
// node v are adj[off[v]:off[v+1]]. Two int32 slices instead of a slice of
// slices keep a graph of a million edges in one allocation each.
type csr struct {
	off []int32
	adj []int32
}

func (g *csr) len() int { return len(g.off) - 1 }

func (g *csr) succ(v int32) []int32 { return g.adj[g.off[v]:g.off[v+1]] }

// newCSR builds a graph of n nodes from parallel edge lists, dropping
// duplicate edges so that later passes do not pay for them twice.
func newCSR(n int, src, dst []int32) csr {
	off := make([]int32, n+1)
	for _, s := range src {
		off[s+1]++
	}
	for i := 1; i <= n; i++ {
		off[i] += off[i-1]
	}
	adj := make([]int32, len(src))
	next := make([]int32, n)
	copy(next, off[:n])
	for i, s := range src {
		adj[next[s]] = dst[i]
		next[s]++
	}
	// Deduplicate each row in place with a stamp per target node.
	maxDst := int32(-1)
	for _, d := range dst {
		maxDst = max(maxDst, d)
	}
	stamp := make([]int32, maxDst+1)
	w := int32(0)
	start := int32(0)
	for v := range n {
		end := off[v+1]
		off[v] = w
		for _, t := range adj[start:end] {
			if stamp[t] != int32(v)+1 {
				stamp[t] = int32(v) + 1
				adj[w] = t
				w++
			}
		}
		start = end
	}
	off[n] = w
	return csr{off: off, adj: adj[:w:w]}
}

// reverse returns g with every edge turned around.
func (g *csr) reverse() csr {
	n := g.len()
	src := make([]int32, 0, len(g.adj))
	dst := make([]int32, 0, len(g.adj))
	for v := range int32(n) {
		for _, w := range g.succ(v) {
			src = append(src, w)
			dst = append(dst, v)
		}
	}
	return newCSR(n, src, dst)
}

// tarjan labels the strongly connected components of g. It is Tarjan's
// algorithm with an explicit call stack, so a chain of a million nodes
// cannot overflow the goroutine stack. Components are numbered in the
// order they complete, which is a reverse topological order: for every
// edge u→v between different components, comp[v] < comp[u].
func tarjan(g *csr) (comp []int32, ncomp int) {
	n := g.len()
	index := make([]int32, n) // discovery order + 1; 0 means unvisited
	low := make([]int32, n)
	comp = make([]int32, n)
	for i := range comp {
		comp[i] = -1 // -1 and visited means "on the Tarjan stack"
	}
	type frame struct{ v, e int32 }
	var stack []int32
	var call []frame
	next := int32(1)
	for root := range int32(n) {
		if index[root] != 0 {
			continue
		}
		index[root], low[root] = next, next
		next++
		stack = append(stack, root)
		call = append(call, frame{root, g.off[root]})
		for len(call) > 0 {
			top := &call[len(call)-1]
			v := top.v
			if top.e < g.off[v+1] {
				w := g.adj[top.e]
				top.e++
				switch {
				case index[w] == 0:
					index[w], low[w] = next, next
					next++
					stack = append(stack, w)
					call = append(call, frame{w, g.off[w]})
				case comp[w] < 0:
					low[v] = min(low[v], index[w])
				}
				continue
			}
			call = call[:len(call)-1]
			if len(call) > 0 {
				u := call[len(call)-1].v
				low[u] = min(low[u], low[v])
			}
			if low[v] == index[v] {
				for {
					w := stack[len(stack)-1]
					stack = stack[:len(stack)-1]
					comp[w] = int32(ncomp)
					if w == v {
						break
					}
				}
				ncomp++
			}
		}
	}
	return comp, ncomp
}

// members groups the nodes of each component: the nodes of component c
// are m.succ(c).
func members(comp []int32, ncomp int) csr {
	src := comp
	dst := make([]int32, len(comp))
	for i := range dst {
		dst[i] = int32(i)
	}
	return newCSR(ncomp, src, dst)
}

// closure computes, for every component of g, the set of bits contributed
// by the nodes that reach it through a path of at least one edge. bit[v] is
// the bit node v contributes, or -1. A node reaches its own component only
// if the component is cyclic: more than one node, or a self-loop.
//
// Components are visited in topological order (highest number first, see
// tarjan) and each pushes its set plus its own bits to its successors, so
// every edge between components costs one OR of `words` words, once.
func closure(g *csr, comp []int32, ncomp int, bit []int32, words int) []uint64 {
	mem := members(comp, ncomp)
	sets := make([]uint64, ncomp*words)
	stamp := make([]int32, ncomp)
	for c := int32(ncomp - 1); c >= 0; c-- {
		set := sets[int(c)*words : int(c+1)*words]
		nodes := mem.succ(c)
		cyclic := len(nodes) > 1
		if !cyclic {
			for _, w := range g.succ(nodes[0]) {
				if w == nodes[0] {
					cyclic = true
				}
			}
		}
		if cyclic {
			for _, v := range nodes {
				if b := bit[v]; b >= 0 {
					set[b>>6] |= 1 << (b & 63)
				}
			}
		}
		for _, v := range nodes {
			for _, w := range g.succ(v) {
				q := comp[w]
				if q == c || stamp[q] == c+1 {
					continue
				}
				stamp[q] = c + 1
				dst := sets[int(q)*words : int(q+1)*words]
				orInto(dst, set)
				// A cyclic component's own bits are already in set; an
				// acyclic one is a single node.
				if b := bit[nodes[0]]; !cyclic && b >= 0 {
					dst[b>>6] |= 1 << (b & 63)
				}
			}
		}
	}
	return sets
}

// orInto sets dst |= src; the slices have the same length.
func orInto(dst, src []uint64) {
	src = src[:len(dst)]
	for i, w := range src {
		dst[i] |= w
	}
}

// count returns the number of set bits.
func count(set []uint64) int {
	n := 0
	for _, w := range set {
		n += bits.OnesCount64(w)
	}
	return n
}

// has reports whether bit i is set.
func has(set []uint64, i int32) bool {
	return set[i>>6]&(1<<(i&63)) != 0
}

// setBit sets bit i.
func setBit(set []uint64, i int32) {
	set[i>>6] |= 1 << (i & 63)
}
