package attacksurface

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Input limits. They keep a hostile or corrupt inventory from exhausting
// memory before validation can reject it; each is reported with a message
// naming the limit.
const (
	// MaxInputBytes is the largest document Parse and LoadFile accept.
	// A generated environment of 1,000,000 VMs is about 80 MiB.
	MaxInputBytes = 256 << 20
	// MaxVMs is the largest number of VMs in one environment, after merging.
	MaxVMs = 5_000_000
	// MaxRules is the largest number of firewall rules in one environment,
	// after merging.
	MaxRules = 5_000_000
	// MaxIDBytes is the longest vm_id, fw_id or tag accepted.
	MaxIDBytes = 1024
	// MaxTagsPerVM is the largest number of tags on one VM.
	MaxTagsPerVM = 4096
)

// ErrInvalidEnv is wrapped by every error that rejects an environment
// document: malformed JSON, a missing or duplicate vm_id, a rule without
// tags, or an exceeded limit. Callers map it to "bad input" (HTTP 400).
var ErrInvalidEnv = errors.New("invalid environment")

// Env is a cloud environment: VMs with tags and firewall rules between tags.
// It is the JSON document surfacescan reads:
//
//	{"vms":[{"vm_id":"vm-a211de","name":"jira_server","tags":["ci","dev"]}],
//	 "fw_rules":[{"fw_id":"fw-82af742","source_tag":"ssh","dest_tag":"dev"}]}
type Env struct {
	// VMs are the machines; vm_id is unique across the environment.
	VMs []VM `json:"vms"`
	// Rules are the firewall rules; a rule lets every VM tagged SourceTag
	// reach every VM tagged DestTag.
	Rules []Rule `json:"fw_rules"`
}

// VM is one virtual machine.
type VM struct {
	// ID identifies the VM; it is required and unique.
	ID string `json:"vm_id"`
	// Name is informational only.
	Name string `json:"name"`
	// Tags are the VM's tags. A tag that no rule mentions is inert.
	Tags []string `json:"tags"`
}

// Rule is one firewall rule: every VM tagged SourceTag can reach every VM
// tagged DestTag. A tag that no VM carries is allowed.
type Rule struct {
	// ID identifies the rule; it is informational and may repeat.
	ID string `json:"fw_id"`
	// SourceTag is the tag of the VMs the traffic comes from; required.
	SourceTag string `json:"source_tag"`
	// DestTag is the tag of the VMs the traffic goes to; required.
	DestTag string `json:"dest_tag"`
}

// ParseError reports malformed JSON at a position of the input.
type ParseError struct {
	// File is the file name, empty when the input was a stream.
	File string
	// Line and Column locate the offending byte, both 1-based; Column
	// counts bytes.
	Line, Column int
	// Err is the decoder's error.
	Err error
}

// Error formats the error as "file:line:column: message", the form
// editors and compilers use.
func (e *ParseError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("line %d, column %d: %v", e.Line, e.Column, e.Err)
	}
	return fmt.Sprintf("%s:%d:%d: %v", e.File, e.Line, e.Column, e.Err)
}

// Unwrap returns the decoder's error.
func (e *ParseError) Unwrap() error { return e.Err }

// Is makes a ParseError match ErrInvalidEnv.
func (e *ParseError) Is(target error) bool { return target == ErrInvalidEnv }

// Parse reads one environment document and validates it: every VM has a
// vm_id and no vm_id repeats, every rule has both tags, and the limits
// above hold. Unknown fields are ignored, as surfacescan does; a missing
// "vms" or "fw_rules" is an empty list, so rules and VMs may live in
// separate files of one directory.
func Parse(r io.Reader) (*Env, error) {
	return parse(r, "")
}

func parse(r io.Reader, name string) (*Env, error) {
	return parseLimit(r, name, MaxInputBytes)
}

func parseLimit(r io.Reader, name string, limit int64) (*Env, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read env: %w", err)
	}
	if int64(len(data)) > limit {
		return nil, sizeError(limit)
	}
	env := new(Env)
	if err := json.Unmarshal(data, env); err != nil {
		return nil, positionError(data, name, err)
	}
	if err := env.validate(); err != nil {
		return nil, err
	}
	return env, nil
}

func sizeError(limit int64) error {
	if limit%(1<<20) == 0 {
		return fmt.Errorf("%w: input exceeds the %d MiB limit", ErrInvalidEnv, limit>>20)
	}
	return fmt.Errorf("%w: input exceeds the %d byte limit", ErrInvalidEnv, limit)
}

// positionError turns a decoder error carrying a byte offset into a
// ParseError with line and column.
func positionError(data []byte, name string, err error) error {
	var offset int64 = -1
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		offset = syn.Offset
	case errors.As(err, &typ):
		offset = typ.Offset
	}
	if offset < 0 {
		return fmt.Errorf("%w: %w", ErrInvalidEnv, err)
	}
	line, col := lineColumn(data, offset)
	return &ParseError{File: name, Line: line, Column: col, Err: err}
}

// lineColumn locates the byte the decoder stopped at. The decoder's offset
// counts the bytes read, so the offending byte is the one before it.
func lineColumn(data []byte, offset int64) (line, col int) {
	pos := int(min(max(offset-1, 0), int64(len(data))))
	before := data[:pos]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = pos - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return line, col
}

// validate checks one document; it is also what Build relies on for an Env
// made in code.
func (e *Env) validate() error {
	if len(e.VMs) > MaxVMs {
		return fmt.Errorf("%w: %d vms exceed the limit of %d", ErrInvalidEnv, len(e.VMs), MaxVMs)
	}
	if len(e.Rules) > MaxRules {
		return fmt.Errorf("%w: %d fw_rules exceed the limit of %d", ErrInvalidEnv, len(e.Rules), MaxRules)
	}
	seen := make(map[string]int, len(e.VMs))
	for i, vm := range e.VMs {
		if vm.ID == "" {
			return fmt.Errorf("%w: vms[%d]: missing vm_id", ErrInvalidEnv, i)
		}
		if len(vm.ID) > MaxIDBytes {
			return fmt.Errorf("%w: vms[%d]: vm_id is %d bytes, limit %d", ErrInvalidEnv, i, len(vm.ID), MaxIDBytes)
		}
		if j, dup := seen[vm.ID]; dup {
			return fmt.Errorf("%w: duplicate vm_id %q at vms[%d] and vms[%d]", ErrInvalidEnv, vm.ID, j, i)
		}
		seen[vm.ID] = i
		if len(vm.Tags) > MaxTagsPerVM {
			return fmt.Errorf("%w: vms[%d] (%q): %d tags exceed the limit of %d", ErrInvalidEnv, i, vm.ID, len(vm.Tags), MaxTagsPerVM)
		}
		for _, t := range vm.Tags {
			if len(t) > MaxIDBytes {
				return fmt.Errorf("%w: vms[%d] (%q): tag is %d bytes, limit %d", ErrInvalidEnv, i, vm.ID, len(t), MaxIDBytes)
			}
		}
	}
	for i, r := range e.Rules {
		switch {
		case r.SourceTag == "":
			return fmt.Errorf("%w: fw_rules[%d] (%q): missing source_tag", ErrInvalidEnv, i, r.ID)
		case r.DestTag == "":
			return fmt.Errorf("%w: fw_rules[%d] (%q): missing dest_tag", ErrInvalidEnv, i, r.ID)
		case len(r.ID) > MaxIDBytes || len(r.SourceTag) > MaxIDBytes || len(r.DestTag) > MaxIDBytes:
			return fmt.Errorf("%w: fw_rules[%d]: fw_id or tag longer than %d bytes", ErrInvalidEnv, i, MaxIDBytes)
		}
	}
	return nil
}

// LoadFile parses the environment document at path. Errors name the file,
// and malformed JSON is reported as path:line:column.
func LoadFile(path string) (*Env, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load env: %w", err)
	}
	defer f.Close()
	var env *Env
	if fi, statErr := f.Stat(); statErr == nil && fi.Mode().IsRegular() && fi.Size() > MaxInputBytes {
		err = sizeError(MaxInputBytes) // fail before reading it all
	} else {
		env, err = parse(f, path)
	}
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			return nil, err // already names the file
		}
		return nil, fmt.Errorf("load env %s: %w", path, err)
	}
	return env, nil
}

// LoadDir loads every *.json file directly inside dir, in name order, and
// merges them as surfacescan does with its data directory. A vm_id present
// in two files is an error naming both. A directory without JSON files
// yields an empty environment.
func LoadDir(dir string) (*Env, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load env dir: %w", err)
	}
	var parts []source
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		env, err := LoadFile(path)
		if err != nil {
			return nil, err
		}
		parts = append(parts, source{name: path, env: env})
	}
	return merge(parts)
}

// Merge concatenates environments, for example one per cloud account. A
// vm_id present in two of them is an error naming it. The result is a new
// Env, but its VMs share their Tags slices with the inputs. Nil inputs are
// skipped.
func Merge(envs ...*Env) (*Env, error) {
	parts := make([]source, 0, len(envs))
	for i, e := range envs {
		if e != nil {
			parts = append(parts, source{name: fmt.Sprintf("envs[%d]", i), env: e})
		}
	}
	return merge(parts)
}

type source struct {
	name string
	env  *Env
}

func merge(parts []source) (*Env, error) {
	var nvm, nrule int
	for _, p := range parts {
		nvm += len(p.env.VMs)
		nrule += len(p.env.Rules)
	}
	if nvm > MaxVMs {
		return nil, fmt.Errorf("merge env: %w: %d vms exceed the limit of %d", ErrInvalidEnv, nvm, MaxVMs)
	}
	if nrule > MaxRules {
		return nil, fmt.Errorf("merge env: %w: %d fw_rules exceed the limit of %d", ErrInvalidEnv, nrule, MaxRules)
	}
	type where struct{ part, index int }
	seen := make(map[string]where, nvm)
	out := &Env{VMs: make([]VM, 0, nvm), Rules: make([]Rule, 0, nrule)}
	for pi, p := range parts {
		for i, vm := range p.env.VMs {
			if w, dup := seen[vm.ID]; dup {
				return nil, fmt.Errorf("merge env: %w: duplicate vm_id %q in %s (vms[%d]) and %s (vms[%d])",
					ErrInvalidEnv, vm.ID, parts[w.part].name, w.index, p.name, i)
			}
			seen[vm.ID] = where{pi, i}
			out.VMs = append(out.VMs, vm)
		}
		out.Rules = append(out.Rules, p.env.Rules...)
	}
	if err := out.validate(); err != nil {
		return nil, fmt.Errorf("merge env: %w", err)
	}
	return out, nil
}

// WriteJSON writes the environment as one compact JSON document that Parse
// reads back. Nil tag lists are written as [] so that consumers iterating
// "tags" (surfacescan does) never see null.
func (e *Env) WriteJSON(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	var buf []byte
	str := func(s string) {
		buf = appendJSONString(buf, s)
	}
	buf = append(buf, `{"vms":[`...)
	for i, vm := range e.VMs {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"vm_id":`...)
		str(vm.ID)
		buf = append(buf, `,"name":`...)
		str(vm.Name)
		buf = append(buf, `,"tags":[`...)
		for j, t := range vm.Tags {
			if j > 0 {
				buf = append(buf, ',')
			}
			str(t)
		}
		buf = append(buf, "]}"...)
		if len(buf) > 32<<10 {
			if _, err := bw.Write(buf); err != nil {
				return fmt.Errorf("write env: %w", err)
			}
			buf = buf[:0]
		}
	}
	buf = append(buf, `],"fw_rules":[`...)
	for i, r := range e.Rules {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"fw_id":`...)
		str(r.ID)
		buf = append(buf, `,"source_tag":`...)
		str(r.SourceTag)
		buf = append(buf, `,"dest_tag":`...)
		str(r.DestTag)
		buf = append(buf, '}')
		if len(buf) > 32<<10 {
			if _, err := bw.Write(buf); err != nil {
				return fmt.Errorf("write env: %w", err)
			}
			buf = buf[:0]
		}
	}
	buf = append(buf, "]}\n"...)
	if _, err := bw.Write(buf); err != nil {
		return fmt.Errorf("write env: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write env: %w", err)
	}
	return nil
}

// appendJSONString appends s as a JSON string. Plain printable ASCII, the
// common case for ids and tags, is copied as is; anything else goes through
// encoding/json so escaping matches the standard library exactly.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // cannot fail for a string
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
