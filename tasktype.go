package scanfleet

import (
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// ParamType is the type of a task parameter.
type ParamType string

// The parameter types a task type may declare.
const (
	ParamString   ParamType = "string"
	ParamInteger  ParamType = "integer"
	ParamBoolean  ParamType = "boolean"
	ParamList     ParamType = "list"      // a JSON array of strings
	ParamIP       ParamType = "ip"        // one IPv4 or IPv6 address
	ParamCIDR     ParamType = "cidr"      // one prefix; a bare address is read as /32 or /128
	ParamPortList ParamType = "port-list" // "22,80,8000-8100" or a JSON array of ports
	ParamDuration ParamType = "duration"  // a Go duration string such as "1s" or "5m"
)

var paramTypes = map[ParamType]bool{
	ParamString: true, ParamInteger: true, ParamBoolean: true, ParamList: true,
	ParamIP: true, ParamCIDR: true, ParamPortList: true, ParamDuration: true,
}

// Requirement is something a task type needs from the worker that runs it;
// requirements decide the pool (mrpf's WorkerRequirements).
type Requirement string

// The requirements a task type may declare.
const (
	RequireRawSockets  Requirement = "raw_sockets"  // send and receive raw packets
	RequireTaskData    Requirement = "task_data"    // read and write other tasks' data
	RequireReconData   Requirement = "recon_data"   // read and write the inventory
	RequireQueueAccess Requirement = "queue_access" // create tasks (generators)
)

var requirements = map[Requirement]bool{
	RequireRawSockets: true, RequireTaskData: true, RequireReconData: true, RequireQueueAccess: true,
}

// Pool is a group of workers with the same capabilities.
type Pool string

// The pools, from most to least privileged.
const (
	PoolBaremetal Pool = "baremetal"
	PoolInternal  Pool = "internal"
	PoolExternal  Pool = "external"
)

// Param describes one parameter of a task type.
type Param struct {
	Name        string    `json:"name"`
	Type        ParamType `json:"type"`
	Mandatory   bool      `json:"mandatory"`
	Default     any       `json:"default,omitempty"`
	Description string    `json:"description"`
	// Min and Max bound an integer parameter when set.
	Min *int64 `json:"min,omitempty"`
	Max *int64 `json:"max,omitempty"`
}

// TaskType is a kind of work a worker can do, with the schema of its
// arguments and what it requires of the worker.
type TaskType struct {
	Name         string        `json:"name"`
	Description  string        `json:"description"`
	Params       []Param       `json:"params"`
	Requirements []Requirement `json:"requirements"`
	// Timeout is how long one task of this type may run by default; a scan
	// may set its own. Zero means one hour.
	Timeout time.Duration `json:"-"`
}

// DefaultTaskTimeout applies to task types that declare no timeout.
const DefaultTaskTimeout = time.Hour

// Pool returns the pool that runs tasks of this type: raw sockets need
// baremetal; task or recon data need internal; anything else is external.
func (t *TaskType) Pool() Pool {
	has := func(r Requirement) bool {
		for _, x := range t.Requirements {
			if x == r {
				return true
			}
		}
		return false
	}
	switch {
	case has(RequireRawSockets):
		return PoolBaremetal
	case has(RequireTaskData), has(RequireReconData):
		return PoolInternal
	default:
		return PoolExternal
	}
}

// Validate checks the type's own declaration.
func (t *TaskType) Validate() error {
	if err := ValidateSlug("task type name", t.Name); err != nil {
		return err
	}
	seen := map[string]bool{}
	for i, p := range t.Params {
		if p.Name == "" {
			return fmt.Errorf("task type %s: params[%d]: name is empty", t.Name, i)
		} else if seen[p.Name] {
			return fmt.Errorf("task type %s: param %q is declared twice", t.Name, p.Name)
		} else if !paramTypes[p.Type] {
			return fmt.Errorf("task type %s: param %q: unknown type %q", t.Name, p.Name, p.Type)
		}
		seen[p.Name] = true
		if p.Default != nil {
			if _, err := p.coerce(p.Default); err != nil {
				return fmt.Errorf("task type %s: param %q: default: %w", t.Name, p.Name, err)
			}
		}
	}
	for _, r := range t.Requirements {
		if !requirements[r] {
			return fmt.Errorf("task type %s: unknown requirement %q", t.Name, r)
		}
	}
	return nil
}

// ValidateArgs checks args against the type's params and returns them in
// canonical form with defaults filled in. The error names the argument:
// `args.sleep: "soon" is not a duration`.
func (t *TaskType) ValidateArgs(args map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(t.Params))
	known := make(map[string]bool, len(t.Params))
	for _, p := range t.Params {
		known[p.Name] = true
		v, ok := args[p.Name]
		if !ok || v == nil {
			if p.Mandatory {
				return nil, Errorf(EINVALID, "args.%s: is mandatory for task type %s", p.Name, t.Name)
			}
			if p.Default != nil {
				v, _ = p.coerce(p.Default)
				out[p.Name] = v
			}
			continue
		}
		c, err := p.coerce(v)
		if err != nil {
			return nil, Errorf(EINVALID, "args.%s: %v", p.Name, err)
		}
		out[p.Name] = c
	}
	var unknown []string
	for name := range args {
		if !known[name] {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, Errorf(EINVALID, "args.%s: unknown argument for task type %s", unknown[0], t.Name)
	}
	return out, nil
}

// coerce converts a JSON value to the canonical value of the param's type.
func (p Param) coerce(v any) (any, error) {
	switch p.Type {
	case ParamString:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s is not a string", jsonText(v))
		}
		return s, nil
	case ParamInteger:
		n, err := coerceInt(v)
		if err != nil {
			return nil, err
		} else if p.Min != nil && n < *p.Min {
			return nil, fmt.Errorf("%d is less than the minimum %d", n, *p.Min)
		} else if p.Max != nil && n > *p.Max {
			return nil, fmt.Errorf("%d is more than the maximum %d", n, *p.Max)
		}
		return n, nil
	case ParamBoolean:
		b, ok := v.(bool)
		if !ok {
			return nil, fmt.Errorf("%s is not a boolean", jsonText(v))
		}
		return b, nil
	case ParamList:
		list, ok := v.([]any)
		if !ok {
			if ss, ok := v.([]string); ok {
				return append([]string{}, ss...), nil
			}
			return nil, fmt.Errorf("%s is not a list of strings", jsonText(v))
		}
		out := make([]string, len(list))
		for i, x := range list {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("item %d: %s is not a string", i, jsonText(x))
			}
			out[i] = s
		}
		return out, nil
	case ParamIP:
		s, ok := v.(string)
		a, err := netip.ParseAddr(s)
		if !ok || err != nil {
			return nil, fmt.Errorf("%s is not an IP address", jsonText(v))
		}
		return a.Unmap().String(), nil
	case ParamCIDR:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s is not a CIDR prefix", jsonText(v))
		}
		if a, err := netip.ParseAddr(s); err == nil {
			a = a.Unmap()
			return netip.PrefixFrom(a, a.BitLen()).String(), nil
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s is not a CIDR prefix", jsonText(v))
		}
		return pfx.Masked().String(), nil
	case ParamPortList:
		ports, err := ParsePortList(v)
		if err != nil {
			return nil, err
		}
		return FormatPortList(ports), nil
	case ParamDuration:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s is not a duration such as \"30s\"", jsonText(v))
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%q is not a duration such as \"30s\"", s)
		}
		return d.String(), nil
	}
	return nil, fmt.Errorf("unknown parameter type %q", p.Type)
}

func coerceInt(v any) (int64, error) {
	switch n := v.(type) {
	case float64:
		if n != math.Trunc(n) || math.Abs(n) > 1<<53 {
			return 0, fmt.Errorf("%s is not an integer", jsonText(v))
		}
		return int64(n), nil
	case json.Number:
		// The API decodes with UseNumber; "80.0" and "1e3" are integers
		// there as they are as float64.
		if i, err := n.Int64(); err == nil {
			return i, nil
		}
		f, err := n.Float64()
		if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return 0, fmt.Errorf("%s is not an integer", n)
		}
		return int64(f), nil
	case int:
		return int64(n), nil
	case int64:
		return n, nil
	}
	return 0, fmt.Errorf("%s is not an integer", jsonText(v))
}

// jsonText shows a value in an error message: as JSON, cut after 72 bytes
// so that a message stays short but still shows what was wrong (a
// mistyped 64-digit sha256 used to come out as "string value").
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%T value", v)
	}
	if len(b) > 80 {
		n := 72
		for n > 0 && !utf8.RuneStart(b[n]) {
			n--
		}
		return string(b[:n]) + "…"
	}
	return string(b)
}

// ParsePortList parses a port list given as "22,80,8000-8100" or as a JSON
// array of ports and ranges, and returns the sorted, de-duplicated ports.
// A part may also name a set of ports: "top-100,8080,9000-9100" (see
// TopPorts for the sets).
func ParsePortList(v any) ([]uint16, error) {
	var parts []string
	switch x := v.(type) {
	case string:
		parts = strings.Split(x, ",")
	case []string:
		parts = x
	case []any:
		for i, item := range x {
			switch it := item.(type) {
			case string:
				parts = append(parts, it)
			case float64:
				parts = append(parts, strconv.FormatFloat(it, 'f', -1, 64))
			case json.Number: // the API decodes with UseNumber
				parts = append(parts, it.String())
			case int:
				parts = append(parts, strconv.Itoa(it))
			case int64:
				parts = append(parts, strconv.FormatInt(it, 10))
			default:
				return nil, fmt.Errorf("item %d: %s is not a port", i, jsonText(item))
			}
		}
	default:
		return nil, fmt.Errorf("%s is not a port list such as \"22,80,8000-8100\"", jsonText(v))
	}
	var set [65536]bool
	n := 0
	for _, part := range parts {
		part = strings.TrimSpace(part)
		if named, ok, err := namedPorts(part); err != nil {
			return nil, err
		} else if ok {
			for _, p := range named {
				if !set[p] {
					set[p] = true
					n++
				}
			}
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parsePort(lo)
		if err != nil {
			return nil, err
		}
		b := a
		if isRange {
			if b, err = parsePort(hi); err != nil {
				return nil, err
			}
			if b < a {
				return nil, fmt.Errorf("range %q ends before it starts", part)
			}
		}
		for p := a; p <= b; p++ {
			if !set[p] {
				set[p] = true
				n++
			}
		}
	}
	if n == 0 {
		return nil, fmt.Errorf("port list is empty")
	}
	ports := make([]uint16, 0, n)
	for p := 1; p < len(set); p++ {
		if set[p] {
			ports = append(ports, uint16(p))
		}
	}
	return ports, nil
}

func parsePort(s string) (int, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port between 1 and 65535", s)
	}
	return n, nil
}

// FormatPortList writes sorted ports in the compact "22,80,8000-8100" form.
func FormatPortList(ports []uint16) string {
	var b strings.Builder
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(int(ports[i])))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(int(ports[j])))
		}
		i = j + 1
	}
	return b.String()
}

// Registry holds the task types a server knows. It is safe for concurrent
// use. Types are registered explicitly where the program is wired.
type Registry struct {
	mu    sync.RWMutex
	types map[string]*TaskType
}

// NewRegistry returns a registry holding the given types.
func NewRegistry(types ...*TaskType) (*Registry, error) {
	r := &Registry{types: map[string]*TaskType{}}
	for _, t := range types {
		if err := r.Register(t); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds a task type; a second type of the same name is an error.
func (r *Registry) Register(t *TaskType) error {
	if err := t.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.types[t.Name]; ok {
		return fmt.Errorf("task type %s is registered twice", t.Name)
	}
	r.types[t.Name] = t
	return nil
}

// Lookup returns the named type, or an EINVALID error naming the unknown
// type, since a type name always comes from a request.
func (r *Registry) Lookup(name string) (*TaskType, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.types[name]
	if !ok {
		return nil, Errorf(EINVALID, "unknown task type %q", name)
	}
	return t, nil
}

// List returns every registered type, sorted by name.
func (r *Registry) List() []*TaskType {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*TaskType, 0, len(r.types))
	for _, t := range r.types {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// NoopTaskType is a task type that sleeps and emits synthetic records; tests
// and benchmarks use it to exercise the whole pipeline without a network.
func NoopTaskType() *TaskType {
	return &TaskType{
		Name:        "noop",
		Description: "Sleeps, then emits synthetic host records. For tests and benchmarks.",
		Params: []Param{
			{Name: "sleep", Type: ParamDuration, Default: "0s", Description: "How long the task runs before it emits its records."},
			{Name: "records", Type: ParamInteger, Default: float64(0), Min: ptr[int64](0), Max: ptr[int64](100_000_000), Description: "How many synthetic records the task emits."},
		},
		Timeout: 10 * time.Minute,
	}
}

func ptr[T any](v T) *T { return &v }
