package scanfleet

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTaskTypePool(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		reqs []Requirement
		want Pool
	}{
		{"no requirements", nil, PoolExternal},
		{"queue access only", []Requirement{RequireQueueAccess}, PoolExternal},
		{"raw sockets", []Requirement{RequireRawSockets}, PoolBaremetal},
		{"raw sockets with task data", []Requirement{RequireTaskData, RequireRawSockets}, PoolBaremetal},
		{"raw sockets with recon data", []Requirement{RequireRawSockets, RequireReconData, RequireQueueAccess}, PoolBaremetal},
		{"task data", []Requirement{RequireTaskData}, PoolInternal},
		{"recon data", []Requirement{RequireReconData}, PoolInternal},
		{"recon data and queue access", []Requirement{RequireQueueAccess, RequireReconData}, PoolInternal},
		{"task and recon data", []Requirement{RequireTaskData, RequireReconData}, PoolInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			typ := &TaskType{Name: "t", Requirements: tt.reqs}
			require.Equal(t, tt.want, typ.Pool())
			require.NoError(t, typ.Validate())
		})
	}
}

// allParams is a task type with a parameter of every type.
func allParams() *TaskType {
	return &TaskType{
		Name: "every-param",
		Params: []Param{
			{Name: "name", Type: ParamString, Mandatory: true},
			{Name: "count", Type: ParamInteger, Default: float64(3), Min: ptr[int64](1), Max: ptr[int64](10)},
			{Name: "big", Type: ParamInteger},
			{Name: "verbose", Type: ParamBoolean, Default: false},
			{Name: "words", Type: ParamList},
			{Name: "source", Type: ParamIP},
			{Name: "net", Type: ParamCIDR},
			{Name: "ports", Type: ParamPortList, Default: "443,80"},
			{Name: "sleep", Type: ParamDuration, Default: "1s"},
		},
	}
}

func TestValidateArgs(t *testing.T) {
	t.Parallel()
	typ := allParams()
	require.NoError(t, typ.Validate())
	defaults := map[string]any{"count": int64(3), "verbose": false, "ports": "80,443", "sleep": "1s"}

	tests := []struct {
		name string
		args string         // JSON, decoded with UseNumber as the API does
		want map[string]any // merged over defaults
	}{
		{"defaults filled in", `{"name": "x"}`, map[string]any{"name": "x"}},
		{"null is absent", `{"name": "x", "count": null, "words": null}`, map[string]any{"name": "x"}},
		{"empty string is a string", `{"name": ""}`, map[string]any{"name": ""}},
		{"integer", `{"name": "x", "count": 7}`, map[string]any{"name": "x", "count": int64(7)}},
		{"integer at the bounds", `{"name": "x", "count": 1}`, map[string]any{"name": "x", "count": int64(1)}},
		{"integer with a zero fraction", `{"name": "x", "count": 10.0}`, map[string]any{"name": "x", "count": int64(10)}},
		{"integer in exponent form", `{"name": "x", "count": 1e1}`, map[string]any{"name": "x", "count": int64(10)}},
		{"unbounded integer", `{"name": "x", "big": -9007199254740993}`, map[string]any{"name": "x", "big": int64(-9007199254740993)}},
		{"boolean", `{"name": "x", "verbose": true}`, map[string]any{"name": "x", "verbose": true}},
		{"list", `{"name": "x", "words": ["a", "b"]}`, map[string]any{"name": "x", "words": []string{"a", "b"}}},
		{"empty list", `{"name": "x", "words": []}`, map[string]any{"name": "x", "words": []string{}}},
		{"IPv4", `{"name": "x", "source": "10.0.0.1"}`, map[string]any{"name": "x", "source": "10.0.0.1"}},
		{"IPv6", `{"name": "x", "source": "2001:DB8::1"}`, map[string]any{"name": "x", "source": "2001:db8::1"}},
		{"IPv4-mapped", `{"name": "x", "source": "::ffff:10.0.0.1"}`, map[string]any{"name": "x", "source": "10.0.0.1"}},
		{"CIDR", `{"name": "x", "net": "10.0.0.7/24"}`, map[string]any{"name": "x", "net": "10.0.0.0/24"}},
		{"CIDR from an address", `{"name": "x", "net": "10.0.0.7"}`, map[string]any{"name": "x", "net": "10.0.0.7/32"}},
		{"CIDR from an IPv6 address", `{"name": "x", "net": "2001:db8::1"}`, map[string]any{"name": "x", "net": "2001:db8::1/128"}},
		{"CIDR from a mapped address", `{"name": "x", "net": "::ffff:10.0.0.7"}`, map[string]any{"name": "x", "net": "10.0.0.7/32"}},
		{"port list string", `{"name": "x", "ports": "22,80,8000-8100"}`, map[string]any{"name": "x", "ports": "22,80,8000-8100"}},
		{"port list sorted and merged", `{"name": "x", "ports": "8080, 80,81-85,22,86,80"}`, map[string]any{"name": "x", "ports": "22,80-86,8080"}},
		{"port list array", `{"name": "x", "ports": [443, "22", "8000-8002", 80]}`, map[string]any{"name": "x", "ports": "22,80,443,8000-8002"}},
		{"all ports", `{"name": "x", "ports": "1-65535"}`, map[string]any{"name": "x", "ports": "1-65535"}},
		{"named port set stored expanded", `{"name": "x", "ports": "top-10,8080"}`, map[string]any{"name": "x", "ports": "21-23,25,80,110,139,443,445,3389,8080"}},
		{"duration", `{"name": "x", "sleep": "5m"}`, map[string]any{"name": "x", "sleep": "5m0s"}},
		{"zero duration", `{"name": "x", "sleep": "0"}`, map[string]any{"name": "x", "sleep": "0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := map[string]any{}
			for k, v := range defaults {
				want[k] = v
			}
			for k, v := range tt.want {
				want[k] = v
			}
			got, err := typ.ValidateArgs(decodeArgs(t, tt.args))
			require.NoError(t, err)
			require.Equal(t, want, got)

			// Canonical args validate to themselves, also after a trip
			// through JSON (as when read back from the store).
			again, err := typ.ValidateArgs(got)
			require.NoError(t, err)
			require.Equal(t, got, again)
			b, err := json.Marshal(got)
			require.NoError(t, err)
			again, err = typ.ValidateArgs(decodeArgs(t, string(b)))
			require.NoError(t, err)
			require.Equal(t, got, again)
		})
	}
}

func TestValidateArgsErrors(t *testing.T) {
	t.Parallel()
	typ := allParams()

	tests := []struct {
		name string
		args string
		want string
	}{
		{"mandatory missing", `{}`, `args.name: is mandatory for task type every-param`},
		{"mandatory null", `{"name": null}`, `args.name: is mandatory for task type every-param`},
		{"unknown argument", `{"name": "x", "colour": "red"}`, `args.colour: unknown argument for task type every-param`},
		{"first unknown argument by name", `{"name": "x", "zz": 1, "aa": 2}`, `args.aa: unknown argument for task type every-param`},
		{"string", `{"name": 5}`, `args.name: 5 is not a string`},
		{"integer as string", `{"name": "x", "count": "3"}`, `args.count: "3" is not an integer`},
		{"integer with a fraction", `{"name": "x", "count": 2.5}`, `args.count: 2.5 is not an integer`},
		{"integer too large to be exact", `{"name": "x", "count": 1e300}`, `args.count: 1e300 is not an integer`},
		{"integer below min", `{"name": "x", "count": 0}`, `args.count: 0 is less than the minimum 1`},
		{"integer above max", `{"name": "x", "count": 11}`, `args.count: 11 is more than the maximum 10`},
		{"boolean", `{"name": "x", "verbose": "yes"}`, `args.verbose: "yes" is not a boolean`},
		{"list", `{"name": "x", "words": "a,b"}`, `args.words: "a,b" is not a list of strings`},
		{"list item", `{"name": "x", "words": ["a", 1]}`, `args.words: item 1: 1 is not a string`},
		{"ip", `{"name": "x", "source": "10.0.0.256"}`, `args.source: "10.0.0.256" is not an IP address`},
		{"ip as number", `{"name": "x", "source": 167772161}`, `args.source: 167772161 is not an IP address`},
		{"ip as CIDR", `{"name": "x", "source": "10.0.0.0/24"}`, `args.source: "10.0.0.0/24" is not an IP address`},
		{"cidr", `{"name": "x", "net": "10.0.0.0/33"}`, `args.net: "10.0.0.0/33" is not a CIDR prefix`},
		{"cidr as list", `{"name": "x", "net": ["10.0.0.0/8"]}`, `args.net: ["10.0.0.0/8"] is not a CIDR prefix`},
		{"reversed range", `{"name": "x", "ports": "22,8100-8000"}`, `args.ports: range "8100-8000" ends before it starts`},
		{"port 0", `{"name": "x", "ports": "0"}`, `args.ports: "0" is not a port between 1 and 65535`},
		{"port 65536", `{"name": "x", "ports": "80,65536"}`, `args.ports: "65536" is not a port between 1 and 65535`},
		{"empty port list", `{"name": "x", "ports": ""}`, `args.ports: "" is not a port between 1 and 65535`},
		{"empty port array", `{"name": "x", "ports": []}`, `args.ports: port list is empty`},
		{"port in array out of range", `{"name": "x", "ports": [22, 70000]}`, `args.ports: "70000" is not a port between 1 and 65535`},
		{"port as object", `{"name": "x", "ports": [{"port": 22}]}`, `args.ports: item 0: {"port":22} is not a port`},
		{"ports as number", `{"name": "x", "ports": 22}`, `args.ports: 22 is not a port list such as "22,80,8000-8100"`},
		{"duration", `{"name": "x", "sleep": "soon"}`, `args.sleep: "soon" is not a duration such as "30s"`},
		{"negative duration", `{"name": "x", "sleep": "-1s"}`, `args.sleep: "-1s" is not a duration such as "30s"`},
		{"duration as number", `{"name": "x", "sleep": 5}`, `args.sleep: 5 is not a duration such as "30s"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := typ.ValidateArgs(decodeArgs(t, tt.args))
			require.Nil(t, got)
			require.Equal(t, EINVALID, ErrorCode(err))
			require.Equal(t, tt.want, ErrorMessage(err))
		})
	}

	t.Run("float64 values as json.Unmarshal makes them", func(t *testing.T) {
		t.Parallel()
		var args map[string]any
		require.NoError(t, json.Unmarshal([]byte(`{"name": "x", "count": 4, "ports": [22, 80]}`), &args))
		got, err := typ.ValidateArgs(args)
		require.NoError(t, err)
		require.Equal(t, int64(4), got["count"])
		require.Equal(t, "22,80", got["ports"])

		args["count"] = 2.5
		_, err = typ.ValidateArgs(args)
		require.Equal(t, "args.count: 2.5 is not an integer", ErrorMessage(err))
	})
}

func decodeArgs(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	require.NoError(t, dec.Decode(&m))
	return m
}

func TestParsePortList(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   any
		want string // FormatPortList of the result, or the error
	}{
		{"single", "80", "80"},
		{"list and range", "22,80,8000-8100", "22,80,8000-8100"},
		{"spaces", " 22 , 80 - 82 ", "22,80-82"},
		{"one-port range", "80-80", "80"},
		{"bounds", "1,65535", "1,65535"},
		{"whole range", "1-65535", "1-65535"},
		{"overlaps merged", "1-10,5-15,20", "1-15,20"},
		{"duplicates", "80,80,80", "80"},
		{"neighbours joined", "80,81,82,84", "80-82,84"},
		{"array of numbers", []any{float64(443), float64(22)}, "22,443"},
		{"array of json numbers", []any{json.Number("443"), json.Number("22")}, "22,443"},
		{"array of ints", []any{443, int64(22)}, "22,443"},
		{"array of strings", []string{"22", "80-81"}, "22,80-81"},
		{"array mixing ranges", []any{"8000-8001", float64(22)}, "22,8000-8001"},

		{"reversed range", "8100-8000", `range "8100-8000" ends before it starts`},
		{"zero", "0", `"0" is not a port between 1 and 65535`},
		{"range from zero", "0-80", `"0" is not a port between 1 and 65535`},
		{"too large", "65536", `"65536" is not a port between 1 and 65535`},
		{"empty string", "", `"" is not a port between 1 and 65535`},
		{"empty item", "22,,80", `"" is not a port between 1 and 65535`},
		{"trailing comma", "22,", `"" is not a port between 1 and 65535`},
		{"open range", "80-", `"" is not a port between 1 and 65535`},
		{"double range", "1-2-3", `"2-3" is not a port between 1 and 65535`},
		{"top-100 combined", "top-100,8080,9000-9100", topPlus(100, 8080, 9000, 9100)},
		{"top-1000", "top-1000", topPlus(1000)},
		{"top-100 inside top-1000", "top-1000,top-100", topPlus(1000)},
		{"named sets ignore case and spaces", " TOP-10 , All ", "1-65535"},
		{"all", "all", "1-65535"},
		{"named set in array", []any{"top-10", float64(1)}, "1,21-23,25,80,110,139,443,445,3389"},
		{"top-1", "top-1", "80"},

		{"name", "http", `"http" is not a port, a range or a named port set (top-100, top-1000, all)`},
		{"top-0", "top-0", `"top-0" is not a named port set: top-N takes N from 1 to 1000`},
		{"top beyond the table", "top-1001", `"top-1001" is not a named port set: top-N takes N from 1 to 1000`},
		{"top with a leading zero", "top-010", `"top-010" is not a named port set: top-N takes N from 1 to 1000`},
		{"top without n", "top-", `"top-" is not a named port set: top-N takes N from 1 to 1000`},
		{"named set in a range", "all-80", `"all-80" is not a port, a range or a named port set (top-100, top-1000, all)`},
		{"empty array", []any{}, "port list is empty"},
		{"fraction in array", []any{80.5}, `"80.5" is not a port between 1 and 65535`},
		{"bool in array", []any{true}, `item 0: true is not a port`},
		{"null in array", []any{nil}, `item 0: null is not a port`},
		{"number", float64(22), `22 is not a port list such as "22,80,8000-8100"`},
		{"nil", nil, `null is not a port list such as "22,80,8000-8100"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ports, err := ParsePortList(tt.in)
			if err != nil {
				require.Equal(t, tt.want, err.Error())
				require.Nil(t, ports)
				return
			}
			require.Equal(t, tt.want, FormatPortList(ports))
			require.True(t, slices.IsSorted(ports))
		})
	}
}

// topPlus formats the n top ports with extra ports and the ranges between
// pairs of them: topPlus(100, 8080, 9000, 9100) is top-100,8080,9000-9100.
func topPlus(n int, extra ...uint16) string {
	ports := TopPorts(n)
	if len(extra)%2 == 1 {
		ports = append(ports, extra[0])
		extra = extra[1:]
	}
	for i := 0; i < len(extra); i += 2 {
		for p := extra[i]; p <= extra[i+1]; p++ {
			ports = append(ports, p)
		}
	}
	slices.Sort(ports)
	return FormatPortList(slices.Compact(ports))
}

func TestTopPorts(t *testing.T) {
	t.Parallel()
	require.Equal(t, []uint16{80, 23, 443, 21, 22}, TopPorts(5), "nmap's frequency order, not port order")
	require.Len(t, TopPorts(100), 100)
	require.Len(t, TopPorts(MaxTopPorts+5), MaxTopPorts)
	require.Empty(t, TopPorts(-1))
	top := TopPorts(MaxTopPorts)
	seen := map[uint16]bool{}
	for i, p := range top {
		require.NotZero(t, p)
		require.False(t, seen[p], "port %d listed twice", p)
		seen[p] = true
		require.Equal(t, i, PortRank(p))
	}
	require.Equal(t, MaxTopPorts, PortRank(0))
	require.Equal(t, MaxTopPorts, PortRank(65534), "not in the table")
	top[0] = 1
	require.Equal(t, uint16(80), TopPorts(1)[0], "TopPorts returns a copy")
}

// TestTopPortsMatchNmapServices checks the committed table against the
// nmap-services file it was generated from, where nmap is installed: the
// tcp entries by open-frequency, ties in port order.
func TestTopPortsMatchNmapServices(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("/usr/share/nmap/nmap-services")
	if err != nil {
		t.Skipf("nmap-services is not installed (apt-get install nmap): %v", err)
	}
	type entry struct {
		port uint16
		freq float64
	}
	var entries []entry
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 3 || strings.HasPrefix(f[0], "#") {
			continue
		}
		num, ok := strings.CutSuffix(f[1], "/tcp")
		if !ok {
			continue
		}
		port, err := strconv.ParseUint(num, 10, 16)
		require.NoError(t, err, line)
		freq, err := strconv.ParseFloat(f[2], 64)
		require.NoError(t, err, line)
		entries = append(entries, entry{uint16(port), freq})
	}
	slices.SortStableFunc(entries, func(a, b entry) int {
		if c := cmp.Compare(b.freq, a.freq); c != 0 {
			return c
		}
		return cmp.Compare(a.port, b.port)
	})
	require.Greater(t, len(entries), MaxTopPorts)
	want := make([]uint16, MaxTopPorts)
	for i := range want {
		want[i] = entries[i].port
	}
	require.Equal(t, want, TopPorts(MaxTopPorts), "regenerate topTCPPorts with the command in ports.go")
}

func TestFormatPortList(t *testing.T) {
	t.Parallel()
	require.Empty(t, FormatPortList(nil))
	require.Equal(t, "1", FormatPortList([]uint16{1}))
	require.Equal(t, "1-3,5,7-8,65535", FormatPortList([]uint16{1, 2, 3, 5, 7, 8, 65535}))
	require.Equal(t, "65534-65535", FormatPortList([]uint16{65534, 65535}))
}

func FuzzParsePortList(f *testing.F) {
	for _, s := range []string{"22,80,8000-8100", "1-65535", " 22 , 80 - 82 ", "8100-8000", "0", "65536", "", "22,,80", "1-2-3", "+80", "-1", "80-80,79,81",
		"top-100,8080,9000-9100", "top-1000", "all", "TOP-10,all", "top-0", "top-1001", "top-010", "top-", "all-80", "http"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParsePortList(s)
		if err != nil {
			require.Nil(t, ports)
			return
		}
		require.NotEmpty(t, ports)
		for i, p := range ports {
			require.NotZero(t, p)
			if i > 0 {
				require.Less(t, ports[i-1], p, "sorted and unique")
			}
		}
		formatted := FormatPortList(ports)
		again, err := ParsePortList(formatted)
		require.NoError(t, err, "parsing %q", formatted)
		require.Equal(t, ports, again)
		require.Equal(t, formatted, FormatPortList(again))
	})
}

func TestTaskTypeValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		typ  TaskType
		want string // "" for valid
	}{
		{"valid", TaskType{Name: "portscan", Params: []Param{{Name: "ports", Type: ParamPortList}}, Requirements: []Requirement{RequireRawSockets}}, ""},
		{"empty name", TaskType{}, "task type name: is empty"},
		{"upper-case name", TaskType{Name: "PortScan"}, `task type name: "PortScan" must be lower-case letters, digits, '-' and '_', starting with a letter or digit`},
		{"empty param name", TaskType{Name: "t", Params: []Param{{Type: ParamString}}}, "task type t: params[0]: name is empty"},
		{"param twice", TaskType{Name: "t", Params: []Param{{Name: "a", Type: ParamString}, {Name: "a", Type: ParamInteger}}}, `task type t: param "a" is declared twice`},
		{"unknown param type", TaskType{Name: "t", Params: []Param{{Name: "a", Type: "float"}}}, `task type t: param "a": unknown type "float"`},
		{"bad default", TaskType{Name: "t", Params: []Param{{Name: "a", Type: ParamDuration, Default: "soon"}}}, `task type t: param "a": default: "soon" is not a duration such as "30s"`},
		{"default out of bounds", TaskType{Name: "t", Params: []Param{{Name: "a", Type: ParamInteger, Default: 0, Min: ptr[int64](1)}}}, `task type t: param "a": default: 0 is less than the minimum 1`},
		{"unknown requirement", TaskType{Name: "t", Requirements: []Requirement{"gpu"}}, `task type t: unknown requirement "gpu"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.typ.Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			if ErrorCode(err) == EINVALID {
				require.Equal(t, tt.want, ErrorMessage(err))
			} else {
				require.Equal(t, tt.want, err.Error())
			}
		})
	}
}

func TestRegistry(t *testing.T) {
	t.Parallel()

	noop := NoopTaskType()
	scan := &TaskType{Name: "portscan", Requirements: []Requirement{RequireRawSockets}}
	reg, err := NewRegistry(scan, noop)
	require.NoError(t, err)

	got, err := reg.Lookup("noop")
	require.NoError(t, err)
	require.Same(t, noop, got)

	_, err = reg.Lookup("nmap")
	require.Equal(t, EINVALID, ErrorCode(err))
	require.Equal(t, `unknown task type "nmap"`, ErrorMessage(err))

	err = reg.Register(&TaskType{Name: "noop"})
	require.EqualError(t, err, "task type noop is registered twice")

	err = reg.Register(&TaskType{Name: "Bad Name"})
	require.Error(t, err)

	list := reg.List()
	require.Len(t, list, 2)
	require.Equal(t, "noop", list[0].Name)
	require.Equal(t, "portscan", list[1].Name)

	_, err = NewRegistry(NoopTaskType(), NoopTaskType())
	require.EqualError(t, err, "task type noop is registered twice")

	t.Run("concurrent use", func(t *testing.T) {
		t.Parallel()
		reg, err := NewRegistry()
		require.NoError(t, err)
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := reg.Register(&TaskType{Name: fmt.Sprintf("t%d", i)}); err != nil {
					t.Error(err)
				}
				_ = reg.List()
				_, _ = reg.Lookup("t0")
			}()
		}
		wg.Wait()
		require.Len(t, reg.List(), 8)
	})
}

func TestNoopTaskType(t *testing.T) {
	t.Parallel()
	typ := NoopTaskType()
	require.NoError(t, typ.Validate())
	require.Equal(t, "noop", typ.Name)
	require.Equal(t, PoolExternal, typ.Pool())
	require.Equal(t, 10*time.Minute, typ.Timeout)

	args, err := typ.ValidateArgs(map[string]any{})
	require.NoError(t, err)
	require.Equal(t, map[string]any{"sleep": "0s", "records": int64(0)}, args)

	args, err = typ.ValidateArgs(decodeArgs(t, `{"sleep": "250ms", "records": 1000}`))
	require.NoError(t, err)
	require.Equal(t, map[string]any{"sleep": "250ms", "records": int64(1000)}, args)

	_, err = typ.ValidateArgs(decodeArgs(t, `{"records": -1}`))
	require.Equal(t, "args.records: -1 is less than the minimum 0", ErrorMessage(err))
	_, err = typ.ValidateArgs(decodeArgs(t, `{"records": 100000001}`))
	require.Equal(t, "args.records: 100000001 is more than the maximum 100000000", ErrorMessage(err))
	_, err = typ.ValidateArgs(decodeArgs(t, `{"sleep": "1s", "targets": []}`))
	require.Equal(t, "args.targets: unknown argument for task type noop", ErrorMessage(err))
}
