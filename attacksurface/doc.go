// Package attacksurface answers "which VMs can attack VM X?" for a cloud
// environment of VMs with tags and firewall rules between tags, the
// question surfacescan answers. It parses and merges environment
// documents, precomputes the answers when the environment is loaded, and
// serves them over a standalone surfacescan-compatible HTTP API.
//
// # Input
//
// An environment is a JSON document; a directory of them is merged
// (LoadDir reads every *.json file, as surfacescan reads its data
// directory):
//
//	{"vms":[{"vm_id":"vm-a211de","name":"jira_server","tags":["ci","dev"]}],
//	 "fw_rules":[{"fw_id":"fw-82af742","source_tag":"ssh","dest_tag":"dev"}]}
//
// A rule lets every VM tagged source_tag reach every VM tagged dest_tag. A
// vm_id is required and unique (a duplicate is an error naming it and, for
// a directory, both files); malformed JSON is reported with its line and
// column; a tag that no VM carries is fine. Sizes are bounded by
// MaxInputBytes and the other Max constants.
//
// # Three readings of "who can attack X"
//
// Think of the VM graph with an edge u→v when some rule has its
// source_tag among u's tags and its dest_tag among v's. Every answer is
// sorted by vm_id, never contains X, is empty (not an error) for an
// isolated VM, and is an error matching ErrVMNotFound for an unknown id.
//
//   - ModeTransitive (the default): every VM with a path of one or more
//     edges to X. An attacker who reaches a VM can use all of that VM's
//     tags to go further (lateral movement), as surfacescan's README
//     assumes: "if A can attack B and B can attack C then A can attack C".
//   - ModeDirect: one hop, the VMs u ≠ X with an edge u→X.
//   - ModeTag: surfacescan's own computation, a closure over tags only.
//     Starting from X's tags, follow rules backwards, dest to source, any
//     number of times; the attackers are the VMs carrying a tag so found.
//     It does not move through the other tags of the VMs on the way. X's
//     own tag t counts only if a chain of rules leads back to t, such as a
//     self-loop rule t→t or a cycle t→u→t.
//
// A worked example, with rules web→app, app→db and vpn→monitored:
//
//	VM       tags
//	web-1    web
//	app-1    app, monitored
//	db-1     db
//	jump-1   vpn
//
//	Attackers("db-1", ModeDirect)     = [app-1]                app→db
//	Attackers("db-1", ModeTag)        = [app-1 web-1]          db ← app ← web
//	Attackers("db-1", ModeTransitive) = [app-1 jump-1 web-1]   jump-1 reaches
//	    app-1 through "monitored", then uses its tag "app" to reach db-1
//	Attackers("app-1", any mode)      = [jump-1 web-1]
//	Attackers("jump-1", any mode)     = []                     isolated
//	Reachable("vpn")                  = [app-1 db-1]
//
// Cycles and self-loops: with rules a→b and b→a and VMs a-1 and a-2 tagged
// a and b-1 tagged b, Attackers("a-1") is [b-1] in ModeDirect and
// [a-2 b-1] in the other two modes (a-2 reaches a-1 through b-1). Two VMs
// carrying the same tag do not attack each other unless a rule chain
// leads from the tag back to itself: add the rule db→db to the example
// above and a second database db-2 attacks db-1 in every mode. (The
// original surfacescan code, networkx.descendants plus an explicit
// self-loop check, misses the longer cycle: it answers [b-1] for a-1.)
//
// # How queries stay cheap
//
// Nothing is computed per VM pair. Build makes a graph of tag nodes: for
// each tag t that a rule names, S(t) "an attacker holding t" and D(t) "a
// VM carrying t is reached", with an edge S(s)→D(d) per rule s→d and an
// edge D(d)→S(s) whenever some VM carries both d and s (a VM with more
// than 64 such pairs is routed through a hub node instead, so edges stay
// linear in the input). A path S(s)→…→D(d) is exactly a VM path from any
// carrier of s to any carrier of d, so the transitive attackers of X are
// the carriers of the source tags s with S(s) reaching some D(d), d one
// of X's tags, minus X.
//
// Build finds the strongly connected components of that tag graph with an
// iterative Tarjan (no recursion, so a chain of a million nodes is fine)
// and, in topological order, the set of source tags reaching each
// component, as bitsets over tags: components × tags/8 bytes, 256 KiB for
// 1,000 tags. The tag mode does the same over the rule graph alone and the
// direct mode reads the rules into each tag. The resulting tag sets are
// deduplicated across tags and modes; random environments have one giant
// component, so the transitive and tag modes have a handful of distinct
// sets and the direct mode at most one per dest tag.
//
// For each distinct set, most used first, Build precomputes the bitset of
// the VMs carrying its tags (n/8 bytes for n VMs, 12.5 KB at 100,000 VMs)
// within Config.MaxCacheBytes, skipping sets so small that assembling them
// per query is cheaper than reading a bitset. VMs are numbered in vm_id
// order, so a query is one pass over a bitset that yields the answer
// already sorted, copying runs of consecutive ids at once: about n/64 words
// plus the size of the answer, and when X's tags lead to several sets, an
// OR of their bitsets first. Per-VM answers, up to n²/8 bytes, are never
// stored. Should a closure table exceed Config.MaxClosureBytes (tens of
// thousands of rules naming all-distinct tags), that mode falls back to a
// search of the tag graph per query, and sets beyond the cache budget are
// assembled from the per-tag VM lists per query; answers are the same.
//
// With surfacescan's generator at 100,000 VMs, 1,000 tags and 10,000 rules
// the Graph holds about 26 MiB and a transitive answer has about 69,000
// ids. Building that []string is most of a query's cost, and its 1.1 MB of
// pointers make work for the garbage collector; AppendAttackers reuses a
// slice and AppendAttackersJSON writes pre-encoded ids into a byte buffer,
// which is what the HTTP handler does.
//
// # Serving
//
// NewHandler and Serve provide surfacescan's API, /api/v1/attack and
// /api/v1/stats, with request statistics kept by Stats. Generate makes
// random environments with surfacescan's distribution for benchmarks;
// bench/surfacescan in the repository holds a Python port of surfacescan
// to compare against.
package attacksurface
