package synscan

import (
	"context"
	"time"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
)

// TaskTypeName is the name of the task type this package runs.
const TaskTypeName = "synscan"

// Defaults of the task parameters.
const (
	DefaultPorts   = "1-1024"
	DefaultRate    = 100_000
	DefaultRetries = 1
	DefaultWait    = time.Second
	// DefaultSenders is 0: one sending goroutine per CPU the process may
	// use (GOMAXPROCS). On a veth or loopback the target's answer and the
	// kernel's reset are handled inside the sender's system call, so one
	// sender keeps one core busy; on one core this is one sender.
	DefaultSenders = 0
	// SourcePorts is how many source ports one scan uses, from
	// source_port on.
	SourcePorts = 256
	// trackLimit is the largest number of probes (addresses × ports)
	// whose answers are tracked one bit each (two bitmaps of 128 MiB at
	// the limit); a larger scan resends every probe on a retry and
	// cannot stop waiting early.
	trackLimit = 1 << 30
)

// TaskType returns the synscan task type: a stateless TCP SYN scan that
// needs raw sockets, so it runs in the baremetal pool.
func TaskType() *scanfleet.TaskType {
	return &scanfleet.TaskType{
		Name: TaskTypeName,
		Description: "TCP SYN scan with raw packets (masscan/zmap design): probes every port of every target " +
			"in a random order at a set rate, and reports open ports as service records and the hosts that have one.",
		Params: []scanfleet.Param{
			{Name: "ports", Type: scanfleet.ParamPortList, Default: DefaultPorts, Description: `Ports to probe, such as "22,80,443,8000-8100".`},
			{Name: "rate", Type: scanfleet.ParamInteger, Default: float64(DefaultRate), Min: ptr[int64](1), Max: ptr[int64](100_000_000), Description: "Probes per second."},
			{Name: "retries", Type: scanfleet.ParamInteger, Default: float64(DefaultRetries), Min: ptr[int64](0), Max: ptr[int64](10), Description: "Extra passes over the probes that got no answer."},
			{Name: "wait", Type: scanfleet.ParamDuration, Default: DefaultWait.String(), Description: "How long to wait for late replies after each pass; the wait ends early once every probe is answered."},
			{Name: "source_port", Type: scanfleet.ParamInteger, Default: float64(0), Min: ptr[int64](0), Max: ptr[int64](65536 - SourcePorts), Description: "First of the 256 source ports; 0 picks a range outside the kernel's ephemeral ports."},
			{Name: "send_rst", Type: scanfleet.ParamBoolean, Default: false, Description: "Reset each half-open connection ourselves. The scanning host's kernel already does so unless a firewall drops unsolicited SYN-ACKs."},
			{Name: "senders", Type: scanfleet.ParamInteger, Default: float64(DefaultSenders), Min: ptr[int64](0), Max: ptr[int64](64), Description: "Sending threads; the rate is shared among them. 0 is one per CPU."},
		},
		Requirements: []scanfleet.Requirement{scanfleet.RequireRawSockets},
		Timeout:      scanfleet.DefaultTaskTimeout,
	}
}

func ptr[T any](v T) *T { return &v }

// Executor runs synscan tasks.
type Executor struct{}

var _ scanfleet.Executor = Executor{}

// TaskType returns TaskType().
func (Executor) TaskType() *scanfleet.TaskType { return TaskType() }

// params are a task's arguments, parsed.
type params struct {
	ports      []uint16
	rate       int64
	retries    int
	wait       time.Duration
	sourcePort uint16
	sendRST    bool
	senders    int
}

func parseParams(in *scanfleet.TaskInput) (params, error) {
	a, err := scanner.ValidateArgs(TaskType(), in)
	if err != nil {
		return params{}, err
	}
	p := params{
		rate:       a.Int("rate"),
		retries:    int(a.Int("retries")),
		wait:       a.Duration("wait"),
		sourcePort: uint16(a.Int("source_port")),
		sendRST:    a.Bool("send_rst"),
		senders:    int(a.Int("senders")),
	}
	if p.ports, err = scanfleet.ParsePortList(a.String("ports")); err != nil {
		return params{}, scanfleet.Errorf(scanfleet.EINVALID, "args.ports: %v", err)
	}
	return p, nil
}

// Run scans in's targets: only addresses of scanner.NewPlan are probed,
// and only replies from them are recorded.
func (Executor) Run(ctx context.Context, in *scanfleet.TaskInput, env scanfleet.ExecEnv) error {
	p, err := parseParams(in)
	if err != nil {
		return err
	}
	return run(ctx, in, env, p)
}
