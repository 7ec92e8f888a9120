package attacksurface

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
)

// GenConfig sizes a generated environment. The defaults are those of
// surfacescan's gendata.py.
type GenConfig struct {
	// VMs is the number of VMs. Default 100.
	VMs int
	// Tags is the number of distinct tags, capped at 1,000,000. Default 50.
	Tags int
	// Rules is the number of firewall rules. Default 50.
	Rules int
	// Seed makes the output reproducible: the same GenConfig always yields
	// the same Env. Default 0, itself a valid seed.
	Seed int64
}

// maxGenTags keeps tag generation away from exhausting the 12 million
// strings of 2 to 5 lowercase letters.
const maxGenTags = 1_000_000

// WithDefaults returns c with zero or negative sizes set to their defaults
// and Tags capped.
func (c GenConfig) WithDefaults() GenConfig {
	c.VMs = cmp.Or(max(c.VMs, 0), 100)
	c.Tags = min(cmp.Or(max(c.Tags, 0), 50), maxGenTags)
	c.Rules = cmp.Or(max(c.Rules, 0), 50)
	return c
}

var genNames = []string{
	"jira_server", "bastion", "db", "cache", "web", "api", "worker", "ci",
	"vpn", "mail", "ldap", "build", "monitor", "backup", "proxy", "k8s_node",
}

// Generate makes a random environment with surfacescan's distribution, for
// benchmarks and property tests: Tags distinct tags of 2 to 5 random
// lowercase letters; each VM gets 0 to 5 distinct tags, the count and the
// tags drawn uniformly (gendata.py may repeat a tag on a VM; repeats are
// inert, so they are left out); each rule joins a uniformly drawn source
// and dest tag, self-loops included. VM ids are "vm-" and 10 hex digits,
// rule ids "fw-" and 8.
func Generate(cfg GenConfig) *Env {
	cfg = cfg.WithDefaults()
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5ca9f1ee7))

	tags := make([]string, 0, cfg.Tags)
	seen := make(map[string]bool, cfg.Tags)
	var buf [5]byte
	for len(tags) < cfg.Tags {
		n := 2 + rng.IntN(4)
		for i := range n {
			buf[i] = byte('a' + rng.IntN(26))
		}
		if t := string(buf[:n]); !seen[t] {
			seen[t] = true
			tags = append(tags, t)
		}
	}

	env := &Env{VMs: make([]VM, cfg.VMs), Rules: make([]Rule, cfg.Rules)}
	ids := make(map[string]bool, cfg.VMs)
	for i := range env.VMs {
		id := randomID(rng, "vm-", 5)
		for ids[id] {
			id = randomID(rng, "vm-", 5)
		}
		ids[id] = true
		k := min(rng.IntN(6), len(tags))
		vmTags := make([]string, 0, k)
		for len(vmTags) < k {
			t := tags[rng.IntN(len(tags))]
			if !slices.Contains(vmTags, t) {
				vmTags = append(vmTags, t)
			}
		}
		env.VMs[i] = VM{
			ID:   id,
			Name: fmt.Sprintf("%s-%d", genNames[rng.IntN(len(genNames))], i),
			Tags: vmTags,
		}
	}
	for i := range env.Rules {
		env.Rules[i] = Rule{
			ID:        randomID(rng, "fw-", 4),
			SourceTag: tags[rng.IntN(len(tags))],
			DestTag:   tags[rng.IntN(len(tags))],
		}
	}
	return env
}

func randomID(rng *rand.Rand, prefix string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return prefix + hex.EncodeToString(b)
}
