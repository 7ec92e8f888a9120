package execscan

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/scanfleet/scanfleet"
)

// Defaults of Config.
const (
	DefaultMaxLineBytes    = 64 << 20 // 64 MiB
	DefaultMaxLogLineBytes = 4 << 10  // 4 KiB
	DefaultKillGrace       = 2 * time.Second
	DefaultCheckTimeout    = time.Minute
)

// maxEnvValue is the most one environment variable may hold on Linux
// (MAX_ARG_STRLEN, 32 pages, including "NAME=").
const maxEnvValue = 32*4096 - 1

// maxDroppedLogs bounds the log lines naming out-of-scope targets; the
// count in the task's output covers all of them.
const maxDroppedLogs = 100

// Config configures an Executor.
type Config struct {
	// Env holds the values of the manifest's environment_variables, from
	// the worker's configuration. Every declared variable must be set;
	// other entries are ignored, so a worker may pass more than one
	// executor needs.
	Env map[string]string
	// PluginOptions are passed to every run as AGENT_CONFIG_<NAME>
	// (Faraday's plugin arguments, such as IGNORE_INFO). Default none.
	PluginOptions map[string]string
	// MaxLineBytes bounds one stdout line; a longer line fails the task.
	// A manifest's max_line_bytes overrides it. Default 64 MiB.
	MaxLineBytes int
	// MaxLogLineBytes bounds one stderr line in the task's log; the rest
	// is cut with a note saying how much. Default 4 KiB.
	MaxLogLineBytes int
	// KillGrace is how long a program's process group has between SIGTERM
	// and SIGKILL once a task is cancelled or times out. Default 2s.
	KillGrace time.Duration
	// CheckTimeout bounds each check_cmd. Default 1 minute.
	CheckTimeout time.Duration
	// Logger receives the worker-side log (program start, kills); the
	// program's own output goes to the task's log. Default discards.
	Logger *slog.Logger
}

// WithDefaults returns the config with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.MaxLineBytes = cmp.Or(c.MaxLineBytes, DefaultMaxLineBytes)
	c.MaxLogLineBytes = cmp.Or(c.MaxLogLineBytes, DefaultMaxLogLineBytes)
	c.KillGrace = cmp.Or(c.KillGrace, DefaultKillGrace)
	c.CheckTimeout = cmp.Or(c.CheckTimeout, DefaultCheckTimeout)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.MaxLineBytes < 0 || c.MaxLineBytes > MaxLineLimit:
		return fmt.Errorf("MaxLineBytes: %d is not between 1 and %d", c.MaxLineBytes, MaxLineLimit)
	case c.MaxLogLineBytes < 0:
		return fmt.Errorf("MaxLogLineBytes: %d is negative", c.MaxLogLineBytes)
	case c.KillGrace < 0:
		return fmt.Errorf("KillGrace: %s is negative", c.KillGrace)
	case c.CheckTimeout < 0:
		return fmt.Errorf("CheckTimeout: %s is negative", c.CheckTimeout)
	}
	for name := range c.PluginOptions {
		if !isEnvName(name) {
			return fmt.Errorf("PluginOptions: %q is not a variable name (letters, digits and '_')", name)
		}
	}
	return nil
}

// Executor runs one external executor's tasks. It holds no state between
// runs, so a worker may run many of its tasks at once.
type Executor struct {
	m       *Manifest
	tt      *scanfleet.TaskType
	cfg     Config
	maxLine int
	// fixedEnv is the environment every run shares: the base variables,
	// the declared ones and the plugin options.
	fixedEnv []string
}

var _ scanfleet.Executor = (*Executor)(nil)

// New returns the executor of a loaded manifest. It fails when a variable
// the manifest declares is not configured.
func New(m *Manifest, cfg Config) (*Executor, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("executor %s: %w", m.Name, err)
	}
	cfg = cfg.WithDefaults()
	e := &Executor{m: m, tt: m.TaskType(), cfg: cfg, maxLine: cmp.Or(m.MaxLineBytes, cfg.MaxLineBytes)}
	if err := e.tt.Validate(); err != nil {
		return nil, fmt.Errorf("executor %s: %s", m.Name, errText(err))
	}
	e.fixedEnv = []string{
		"PATH=" + cmp.Or(os.Getenv("PATH"), "/usr/local/bin:/usr/bin:/bin"),
		"HOME=" + cmp.Or(os.Getenv("HOME"), "/"),
		"LANG=" + cmp.Or(os.Getenv("LANG"), "C.UTF-8"),
		"SCANFLEET_EXECUTOR_DIR=" + m.Dir,
	}
	var missing []string
	for _, name := range m.EnvironmentVariables {
		v, ok := cfg.Env[name]
		if !ok {
			missing = append(missing, name)
			continue
		}
		e.fixedEnv = append(e.fixedEnv, name+"="+v)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("executor %s: environment variable %s is declared by %s but not configured", m.Name, strings.Join(missing, ", "), m.Path)
	}
	for _, name := range sortedKeys(cfg.PluginOptions) {
		e.fixedEnv = append(e.fixedEnv, "AGENT_CONFIG_"+strings.ToUpper(name)+"="+cfg.PluginOptions[name])
	}
	return e, nil
}

// TaskType implements scanfleet.Executor; see Manifest.TaskType.
func (e *Executor) TaskType() *scanfleet.TaskType { return e.tt }

// Manifest returns the executor's manifest, for a worker to announce.
func (e *Executor) Manifest() *Manifest { return e.m }

// Run runs the check commands, then the program, ingesting its output as
// it arrives. It sets the output fields lines, records, skipped and
// out_of_scope, and exit_code once the program ran.
func (e *Executor) Run(ctx context.Context, in *scanfleet.TaskInput, env scanfleet.ExecEnv) error {
	args, err := e.tt.ValidateArgs(in.Args)
	if err != nil {
		return errors.New(errText(err))
	}
	matcher, err := in.Matcher()
	if err != nil {
		return err
	}
	if err := e.checkAddressArgs(args, matcher); err != nil {
		return err
	}
	targets, skip := e.scope(in, args, matcher, env)
	if skip {
		env.Log("no target is in scope: the program was not run")
		setResults(env, &output{})
		return nil
	}

	runDir, err := os.MkdirTemp("", "scanfleet-"+e.m.Name+"-")
	if err != nil {
		return fmt.Errorf("create run directory: %w", err)
	}
	defer os.RemoveAll(runDir)
	environ, err := e.environ(in, args, targets, runDir, env)
	if err != nil {
		return err
	}
	o := &output{env: env, maxLine: e.maxLine, skipInvalid: e.m.SkipInvalidLines}
	defer setResults(env, o)
	for i, argv := range e.m.CheckCmds {
		if err := e.check(ctx, i, argv, environ, env); err != nil {
			return err
		}
	}
	return e.run(ctx, in, environ, o, env)
}

func setResults(env scanfleet.ExecEnv, o *output) {
	env.Result("lines", o.lines)
	env.Result("records", o.records)
	env.Result("skipped", o.skipped)
}

// checkAddressArgs refuses a task whose ip or cidr argument (other than
// the target arguments, which scope filters) is not wholly in scope: the
// program would be pointed outside it.
func (e *Executor) checkAddressArgs(args map[string]any, m *scanfleet.ScopeMatcher) error {
	for _, name := range sortedKeys(e.m.Arguments) {
		a := e.m.Arguments[name]
		v, ok := args[name]
		if !ok || isTargetArg(name) || (a.Type != scanfleet.ParamIP && a.Type != scanfleet.ParamCIDR) {
			continue
		}
		if d := m.Check(fmt.Sprint(v)); !d.In {
			return scanfleet.Errorf(scanfleet.EINVALID, "args.%s: %s", name, d.Reason)
		}
	}
	return nil
}

// scope checks the targets against the task's scope. A TARGET or TARGETS
// argument the scan did not set is filled with the task's in-scope
// targets; one it set is filtered the same way. It returns the task's
// in-scope targets, and skip when a target argument ends up empty
// although targets were given or it is mandatory: the program is then
// not run, since it might fall back to something of its own.
func (e *Executor) scope(in *scanfleet.TaskInput, args map[string]any, m *scanfleet.ScopeMatcher, env scanfleet.ExecEnv) (targets []string, skip bool) {
	targets, dropped := scopeTargets(m, in.Targets)
	var report []string
	filled := false
	for _, name := range sortedKeys(e.m.Arguments) {
		if !isTargetArg(name) {
			continue
		}
		filled = true
		a := e.m.Arguments[name]
		list, d := targets, dropped
		if v, ok := args[name]; ok {
			list, d = scopeTargets(m, splitTargets(v))
		}
		report = append(report, d...)
		switch {
		case len(list) == 0 && (len(d) > 0 || a.Mandatory):
			skip = true
		case len(list) == 0:
			delete(args, name)
		case a.Type == scanfleet.ParamList:
			args[name] = list
		default:
			args[name] = strings.Join(list, " ")
		}
	}
	if !filled {
		report = dropped
	}
	for i, r := range report {
		if i == maxDroppedLogs {
			env.Log(fmt.Sprintf("… and %d more out-of-scope targets", len(report)-i))
			break
		}
		env.Log("out of scope, not passed to the program: " + r)
	}
	env.Result("out_of_scope", len(report))
	return targets, skip
}

// environ builds the program's whole environment; nothing of the
// worker's own leaks in but PATH, HOME and LANG.
func (e *Executor) environ(in *scanfleet.TaskInput, args map[string]any, targets []string, runDir string, env scanfleet.ExecEnv) ([]string, error) {
	out := append([]string{"TMPDIR=" + runDir}, e.fixedEnv...)
	for _, name := range sortedKeys(args) {
		key := "EXECUTOR_CONFIG_" + strings.ToUpper(name)
		var val string
		switch v := args[name].(type) {
		case bool:
			if !v {
				// Absent, not "false": Faraday's executors test
				// presence (`if os.environ.get(...)`).
				continue
			}
			val = "true"
		case int64:
			val = strconv.FormatInt(v, 10)
		case string:
			val = v
		default: // lists
			b, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("args.%s: %w", name, err)
			}
			val = string(b)
		}
		if len(key)+1+len(val) > maxEnvValue {
			return nil, fmt.Errorf("args.%s: %d bytes are more than an environment variable can hold (%d); split the task's targets", name, len(val), maxEnvValue)
		}
		if strings.IndexByte(val, 0) >= 0 {
			return nil, fmt.Errorf("args.%s: holds a NUL byte, which an environment variable cannot", name)
		}
		out = append(out, key+"="+val)
	}
	task := *in
	task.Args = args
	task.Targets = targets
	b, err := json.Marshal(task)
	if err != nil {
		return nil, fmt.Errorf("encode task: %w", err)
	}
	file := filepath.Join(runDir, "task.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		return nil, fmt.Errorf("write task: %w", err)
	}
	out = append(out, "SCANFLEET_TASK_FILE="+file)
	if len("SCANFLEET_TASK=")+len(b) <= maxEnvValue {
		out = append(out, "SCANFLEET_TASK="+string(b))
	} else {
		env.Log(fmt.Sprintf("the task is %d bytes of JSON, too large for SCANFLEET_TASK: read SCANFLEET_TASK_FILE", len(b)))
	}
	sort.Strings(out)
	return out, nil
}

// check runs one preflight command; its failure fails the task with the
// command's output, which also goes to the task's log.
func (e *Executor) check(ctx context.Context, i int, argv []string, environ []string, env scanfleet.ExecEnv) error {
	name := fmt.Sprintf("check_cmds[%d] (%s)", i, strings.Join(argv, " "))
	path, err := e.program(argv[0])
	if err != nil {
		env.Log(name + ": " + err.Error())
		return fmt.Errorf("preflight %s: %w", name, err)
	}
	cctx, cancel := context.WithTimeout(ctx, e.cfg.CheckTimeout)
	defer cancel()
	out := &cappedBuffer{max: 64 << 10}
	cmd := &exec.Cmd{
		Path: path, Args: argv, Env: environ, Dir: e.m.Dir, Stdout: out, Stderr: out,
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		// A process the check left behind may hold its output open.
		WaitDelay: e.cfg.KillGrace,
	}
	if err := cmd.Start(); err != nil {
		env.Log(name + ": " + err.Error())
		return fmt.Errorf("preflight %s: %w", name, err)
	}
	// The group, not just the command: a check may be a script that
	// starts the tool.
	stop := context.AfterFunc(cctx, func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	err = cmd.Wait()
	stop()
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything it left behind
	text := strings.TrimSpace(out.String())
	if err == nil {
		first, _, _ := strings.Cut(text, "\n")
		env.Log(strings.TrimSpace(name + ": ok " + logText([]byte(first), 0)))
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("preflight %s: %w", name, context.Cause(ctx))
	}
	if cctx.Err() != nil {
		err = fmt.Errorf("took longer than %s", e.cfg.CheckTimeout)
	}
	env.Log(fmt.Sprintf("%s failed: %v", name, err))
	for _, line := range strings.Split(text, "\n") {
		if line != "" {
			env.Log(name + ": " + logText([]byte(line), 0))
		}
	}
	if text == "" {
		text = "(no output)"
	} else if len(text) > 2000 {
		// The whole output is in the log; the task's error stays short.
		text = logText([]byte(text[:2000]), len(text)-2000)
	}
	return fmt.Errorf("preflight %s failed: %v: %s", name, err, text)
}

// program resolves argv[0] as Manifest.Cmd describes.
func (e *Executor) program(name string) (string, error) {
	if p, local := programPath(e.m.Dir, name); local {
		return p, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%q is not in the executor's directory nor in PATH", name)
	}
	return p, nil
}

// cappedBuffer keeps the first max bytes written to it.
type cappedBuffer struct {
	max int
	buf []byte
	cut int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	room := b.max - len(b.buf)
	if room >= len(p) {
		b.buf = append(b.buf, p...)
	} else {
		b.buf = append(b.buf, p[:max(room, 0)]...)
		b.cut += len(p) - max(room, 0)
	}
	return len(p), nil
}

func (b *cappedBuffer) String() string {
	s := strings.ToValidUTF8(string(b.buf), "\uFFFD")
	if b.cut > 0 {
		s += fmt.Sprintf(" … [%d more bytes]", b.cut)
	}
	return s
}

var _ io.Writer = (*cappedBuffer)(nil)
