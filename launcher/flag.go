package launcher

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/scanfleet/scanfleet"
)

// ParsePoolFlag parses one pool's launch setting as a command line gives
// it: POOL=BACKEND:MAX, then optional ,KEY=VALUE settings of site, idle
// (the idle timeout), transport and concurrency. For example
// "baremetal=ec2:5" or "external=process:4,idle=2m,concurrency=2".
// Unset settings are left for Config.WithDefaults.
func ParsePoolFlag(s string) (scanfleet.Pool, PoolConfig, error) {
	var pc PoolConfig
	head, rest, more := strings.Cut(s, ",")
	name, spec, ok := strings.Cut(head, "=")
	if !ok {
		return "", pc, fmt.Errorf("launch %q: want POOL=BACKEND:MAX[,KEY=VALUE…]", s)
	}
	pool, err := scanfleet.ParsePool(name)
	if err != nil {
		return "", pc, fmt.Errorf("launch %q: pool %q is not external, internal or baremetal", s, name)
	}
	backend, maxs, ok := strings.Cut(spec, ":")
	if !ok || backend == "" {
		return "", pc, fmt.Errorf("launch %q: want POOL=BACKEND:MAX, e.g. baremetal=ec2:5", s)
	}
	pc.Backend = backend
	if pc.Max, err = strconv.Atoi(maxs); err != nil || pc.Max < 1 || pc.Max > 10000 {
		return "", pc, fmt.Errorf("launch %q: max %q is not a number from 1 to 10000", s, maxs)
	}
	seen := map[string]bool{}
	for kv := range strings.SplitSeq(rest, ",") {
		if !more {
			break
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || seen[k] {
			return "", pc, fmt.Errorf("launch %q: %q is not a new KEY=VALUE", s, kv)
		}
		seen[k] = true
		switch k {
		case "site":
			if err := scanfleet.ValidateSlug("site", v); err != nil {
				return "", pc, fmt.Errorf("launch %q: site %q must be lower-case letters, digits, '-' and '_'", s, v)
			}
			pc.Site = v
		case "idle":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return "", pc, fmt.Errorf("launch %q: idle %q is not a positive duration", s, v)
			}
			pc.IdleTimeout = d
		case "transport":
			if v != "http" && v != "nats" {
				return "", pc, fmt.Errorf("launch %q: transport %q is not http or nats", s, v)
			}
			pc.Transport = v
		case "concurrency":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 10000 {
				return "", pc, fmt.Errorf("launch %q: concurrency %q is not a number from 1 to 10000", s, v)
			}
			pc.Concurrency = n
		default:
			return "", pc, fmt.Errorf("launch %q: unknown setting %q (site, idle, transport, concurrency)", s, k)
		}
	}
	return pool, pc, nil
}
