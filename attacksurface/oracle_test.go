package attacksurface

import (
	"slices"
	"strings"
)

// mkEnv builds an environment from a compact notation: each VM is
// "id:tag,tag" ("id:" for no tags) and each rule "source>dest".
func mkEnv(vms []string, rules ...string) *Env {
	env := &Env{}
	for _, v := range vms {
		id, tags, _ := strings.Cut(v, ":")
		vm := VM{ID: id, Name: id, Tags: []string{}}
		if tags != "" {
			vm.Tags = strings.Split(tags, ",")
		}
		env.VMs = append(env.VMs, vm)
	}
	for _, r := range rules {
		src, dst, _ := strings.Cut(r, ">")
		env.Rules = append(env.Rules, Rule{ID: "fw-" + r, SourceTag: src, DestTag: dst})
	}
	return env
}

// oracle answers by the definitions in the package doc, on the VM graph
// built naively pair by pair. It is slow and obviously right.
type oracle struct {
	env  *Env
	tags []map[string]bool
	pos  map[string]int
}

func newOracle(env *Env) *oracle {
	o := &oracle{env: env, pos: map[string]int{}}
	for i, vm := range env.VMs {
		set := map[string]bool{}
		for _, t := range vm.Tags {
			set[t] = true
		}
		o.tags = append(o.tags, set)
		o.pos[vm.ID] = i
	}
	return o
}

// edge reports whether VM u can reach VM v in one hop.
func (o *oracle) edge(u, v int) bool {
	for _, r := range o.env.Rules {
		if o.tags[u][r.SourceTag] && o.tags[v][r.DestTag] {
			return true
		}
	}
	return false
}

func (o *oracle) attackers(id string, mode Mode) []string {
	x := o.pos[id]
	n := len(o.env.VMs)
	in := make([]bool, n)
	switch mode {
	case ModeDirect:
		for u := range n {
			in[u] = o.edge(u, x)
		}
	case ModeTransitive, "":
		queue := []int{x}
		for len(queue) > 0 {
			v := queue[0]
			queue = queue[1:]
			for u := range n {
				if !in[u] && o.edge(u, v) {
					in[u] = true
					queue = append(queue, u)
				}
			}
		}
	case ModeTag:
		closure := map[string]bool{}
		var queue []string
		push := func(dst string) {
			for _, r := range o.env.Rules {
				if r.DestTag == dst && !closure[r.SourceTag] {
					closure[r.SourceTag] = true
					queue = append(queue, r.SourceTag)
				}
			}
		}
		for t := range o.tags[x] {
			push(t)
		}
		for len(queue) > 0 {
			t := queue[0]
			queue = queue[1:]
			push(t)
		}
		for u := range n {
			for t := range closure {
				if o.tags[u][t] {
					in[u] = true
				}
			}
		}
	}
	out := []string{}
	for u := range n {
		if in[u] && u != x {
			out = append(out, o.env.VMs[u].ID)
		}
	}
	slices.Sort(out)
	return out
}

// reachable is the oracle for Graph.Reachable: forward search from an
// attacker holding only tag t.
func (o *oracle) reachable(t string) []string {
	n := len(o.env.VMs)
	in := make([]bool, n)
	var queue []int
	for _, r := range o.env.Rules {
		if r.SourceTag != t {
			continue
		}
		for v := range n {
			if !in[v] && o.tags[v][r.DestTag] {
				in[v] = true
				queue = append(queue, v)
			}
		}
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for v := range n {
			if !in[v] && o.edge(u, v) {
				in[v] = true
				queue = append(queue, v)
			}
		}
	}
	out := []string{}
	for v := range n {
		if in[v] {
			out = append(out, o.env.VMs[v].ID)
		}
	}
	slices.Sort(out)
	return out
}
