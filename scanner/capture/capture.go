package capture

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/gopacket/gopacket/afpacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/scanfleet/scanfleet"
	"github.com/scanfleet/scanfleet/scanner"
)

// TaskTypeName is the name of the task type.
const TaskTypeName = "capture"

// The artifact a capture stores.
const (
	ArtifactName        = "capture.pcap"
	ArtifactContentType = "application/vnd.tcpdump.pcap"
)

// Defaults and bounds.
const (
	DefaultMaxBytes = 100 << 20
	DefaultSnaplen  = 65535
	DefaultDuration = 30 * time.Second
)

// StopReason says why a capture ended: a closed set.
type StopReason string

// The stop reasons.
const (
	StopCount    StopReason = "count"    // args.count packets were captured
	StopBytes    StopReason = "bytes"    // the next packet would have made the file larger than args.max_bytes
	StopDuration StopReason = "duration" // args.duration passed
	StopCancel   StopReason = "cancel"   // the task was cancelled or timed out
)

// TaskType describes capture tasks.
func TaskType() *scanfleet.TaskType {
	return &scanfleet.TaskType{
		Name:        TaskTypeName,
		Description: "Captures packets on an interface of the worker into a pcap file, with a tcpdump-style filter limited to the workspace's addresses.",
		Params: []scanfleet.Param{
			{Name: "interface", Type: scanfleet.ParamString, Mandatory: true, Description: "Interface to capture on, such as eth0."},
			{Name: "filter", Type: scanfleet.ParamString, Description: "Filter in tcpdump's syntax, restricted to host, net, port, portrange, ip, ip6, arp, tcp, udp, sctp, icmp, icmp6, greater, less, comparisons on packet bytes and lengths (tcp[tcpflags] & tcp-syn != 0, ip[8] < 64, len > 1000), not, and, or and parentheses."},
			{Name: "bpf", Type: scanfleet.ParamString, Description: "Instead of filter: a classic BPF program as `tcpdump -ddd` prints it."},
			{Name: "count", Type: scanfleet.ParamInteger, Default: float64(0), Min: ptr[int64](0), Description: "Stop after this many packets; 0 for no limit."},
			{Name: "max_bytes", Type: scanfleet.ParamInteger, Default: float64(DefaultMaxBytes), Min: ptr[int64](1024), Max: ptr[int64](scanfleet.MaxArtifactSize), Description: "Stop before the pcap file grows larger than this."},
			{Name: "duration", Type: scanfleet.ParamDuration, Default: DefaultDuration.String(), Description: "Stop after this long."},
			{Name: "snaplen", Type: scanfleet.ParamInteger, Default: float64(DefaultSnaplen), Min: ptr[int64](64), Max: ptr[int64](65535), Description: "Bytes kept of each packet."},
			{Name: "scope_only", Type: scanfleet.ParamBoolean, Default: true, Description: "Keep only IP packets from or to an address of the task's targets in scope."},
			{Name: "promiscuous", Type: scanfleet.ParamBoolean, Default: false, Description: "Also capture frames not addressed to the interface."},
		},
		Requirements: []scanfleet.Requirement{scanfleet.RequireRawSockets},
		Timeout:      time.Hour,
	}
}

func ptr[T any](v T) *T { return &v }

// Config configures the executor.
type Config struct {
	// TempDir is where the pcap is written before it is stored; empty
	// uses os.TempDir().
	TempDir string
	// PollInterval is how often a capture waiting for packets checks for
	// its end; zero means 100ms.
	PollInterval time.Duration
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.PollInterval == 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	return c
}

// Executor runs capture tasks.
type Executor struct {
	cfg Config
}

var _ scanfleet.Executor = (*Executor)(nil)

// New returns an executor.
func New(cfg Config) *Executor { return &Executor{cfg: cfg.WithDefaults()} }

// TaskType implements scanfleet.Executor.
func (*Executor) TaskType() *scanfleet.TaskType { return TaskType() }

// options are a task's arguments, checked.
type options struct {
	iface       string
	filter      node
	raw         []bpf.RawInstruction
	count       int64
	maxBytes    int64
	duration    time.Duration
	snaplen     uint32
	scopeOnly   bool
	promiscuous bool
}

func parseOptions(in *scanfleet.TaskInput) (options, error) {
	args, err := scanner.ValidateArgs(TaskType(), in)
	if err != nil {
		return options{}, err
	}
	o := options{
		iface:       args.String("interface"),
		count:       args.Int("count"),
		maxBytes:    args.Int("max_bytes"),
		duration:    args.Duration("duration"),
		snaplen:     uint32(args.Int("snaplen")),
		scopeOnly:   args.Bool("scope_only"),
		promiscuous: args.Bool("promiscuous"),
	}
	if o.iface == "" {
		return options{}, scanfleet.Errorf(scanfleet.EINVALID, "args.interface: is empty")
	}
	if o.duration <= 0 {
		return options{}, scanfleet.Errorf(scanfleet.EINVALID, "args.duration: must be more than 0s")
	}
	if args.String("filter") != "" && args.String("bpf") != "" {
		return options{}, scanfleet.Errorf(scanfleet.EINVALID, "args.bpf: give either filter or bpf, not both")
	}
	if o.filter, err = parseFilter(args.String("filter")); err != nil {
		return options{}, scanfleet.Errorf(scanfleet.EINVALID, "args.filter: %v", err)
	}
	if s := args.String("bpf"); s != "" {
		if o.raw, err = parseRawBPF(s); err != nil {
			return options{}, scanfleet.Errorf(scanfleet.EINVALID, "args.bpf: %v", err)
		}
	}
	return o, nil
}

// noNames is the resolver of a capture's plan: a capture filters by
// address, and has no reason to send DNS queries.
type noNames struct{}

func (noNames) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return nil, errors.New("a capture filters by address; names are not resolved")
}

// Run captures on args.interface until a limit is reached or ctx ends, and
// stores the pcap as the artifact capture.pcap. A cancelled capture stores
// what it has before it returns the cancel.
func (e *Executor) Run(ctx context.Context, in *scanfleet.TaskInput, env scanfleet.ExecEnv) error {
	o, err := parseOptions(in)
	if err != nil {
		return err
	}
	var scope node
	if o.scopeOnly {
		plan, err := scanner.NewPlan(ctx, in, noNames{})
		if err != nil {
			return err
		}
		for _, s := range plan.OutOfScope {
			env.Log(fmt.Sprintf("capture: not in the filter, out of scope: %s: %s", s.Target, s.Reason))
		}
		for _, s := range plan.Unresolved {
			env.Log(fmt.Sprintf("capture: not in the filter: %s: %s", s.Target, s.Reason))
		}
		env.Result("out_of_scope", len(plan.OutOfScope))
		if len(plan.Prefixes) == 0 {
			return scanfleet.Errorf(scanfleet.EINVALID, "args.scope_only: no target address or prefix is in scope, so the capture would keep nothing; name IP targets or set scope_only to false")
		}
		scope = scopeNode{plan.Prefixes}
	}

	// The socket and everything that looks at the interface first, on
	// this goroutine: see the package comment.
	link, err := interfaceLink(o.iface)
	if err != nil {
		return err
	}
	prog, desc, err := buildProgram(o, scope, link)
	if err != nil {
		return scanfleet.Errorf(scanfleet.EINVALID, "args.filter: %v", err)
	}
	frame := 1 << bits.Len(uint(o.snaplen)+128) // room for the tpacket header
	tp, err := afpacket.NewTPacket(
		afpacket.OptInterface(o.iface),
		afpacket.TPacketVersion2, // frames are handed over one by one, no block timeout
		afpacket.OptFrameSize(frame),
		afpacket.OptBlockSize(max(frame, 1<<20)),
		afpacket.OptNumBlocks(16),
		afpacket.OptPollTimeout(e.cfg.PollInterval),
	)
	if err != nil {
		return fmt.Errorf("open packet socket on %s: %w", o.iface, err)
	}
	defer tp.Close()
	base, err := attach(tp, prog)
	if err != nil {
		return fmt.Errorf("attach filter: %w", err)
	}
	if o.promiscuous {
		if err := tp.SetPromiscuous(true); err != nil {
			return fmt.Errorf("set promiscuous mode on %s: %w", o.iface, err)
		}
	}

	f, err := os.CreateTemp(e.cfg.TempDir, "scanfleet-capture-*.pcap")
	if err != nil {
		return fmt.Errorf("create capture file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<16)
	w := pcapgo.NewWriterNanos(bw)
	lt := layers.LinkTypeEthernet
	if link == linkRawIP {
		lt = layers.LinkTypeRaw
	}
	if err := w.WriteFileHeader(o.snaplen, lt); err != nil {
		return fmt.Errorf("write capture file: %w", err)
	}
	size := int64(24) // the pcap file header

	env.Log(fmt.Sprintf("capture: listening on %s, filter %s, for up to %s", o.iface, desc, o.duration))
	env.Result("filter", desc)
	deadline := time.Now().Add(o.duration)
	var packets, reported int64
	lastReport := time.Now()
	var reason StopReason
	for reason == "" {
		if packets != reported && (packets-reported >= 1000 || time.Since(lastReport) >= time.Second) {
			env.Progress(packets, o.count)
			reported, lastReport = packets, time.Now()
		}
		if ctx.Err() != nil {
			reason = StopCancel
			break
		}
		if !time.Now().Before(deadline) {
			reason = StopDuration
			break
		}
		data, ci, err := tp.ZeroCopyReadPacketData()
		if errors.Is(err, afpacket.ErrTimeout) {
			continue
		} else if err != nil {
			return fmt.Errorf("read packet on %s: %w", o.iface, err)
		}
		if len(data) > int(o.snaplen) {
			data = data[:o.snaplen]
		}
		ci.CaptureLength = len(data)
		ci.AncillaryData = nil
		if size+16+int64(len(data)) > o.maxBytes {
			reason = StopBytes
			break
		}
		if err := w.WritePacket(ci, data); err != nil {
			return fmt.Errorf("write capture file: %w", err)
		}
		size += 16 + int64(len(data))
		packets++
		if o.count > 0 && packets >= o.count {
			reason = StopCount
		}
	}
	var dropped uint
	if st, _, err := tp.SocketStats(); err == nil {
		dropped = st.Drops() - base.Drops()
	}
	tp.Close()
	env.Progress(packets, o.count)
	env.Result("packets", packets)
	env.Result("bytes", size)
	env.Result("dropped", dropped)
	env.Result("stop_reason", string(reason))
	env.Log(fmt.Sprintf("capture: %d packets, %d bytes, %d dropped by the kernel; stopped by %s", packets, size, dropped, reason))

	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write capture file: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind capture file: %w", err)
	}
	actx := ctx
	if reason == StopCancel {
		// What was captured before a cancel is kept, as tcpdump keeps
		// it on ^C; the store gets a bounded time of its own.
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
	}
	if err := env.Artifact(actx, ArtifactName, ArtifactContentType, f); err != nil {
		return fmt.Errorf("store capture: %w", err)
	}
	if reason == StopCancel {
		return context.Cause(ctx)
	}
	return nil
}

// interfaceLink finds iface and how its frames start.
func interfaceLink(iface string) (linkType, error) {
	if _, err := net.InterfaceByName(iface); err != nil {
		return 0, scanfleet.Errorf(scanfleet.EINVALID, "args.interface: no interface %q on this worker", iface)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("open socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(iface)
	if err != nil {
		return 0, scanfleet.Errorf(scanfleet.EINVALID, "args.interface: %q: %v", iface, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFHWADDR, ifr); err != nil {
		return 0, fmt.Errorf("link type of %s: %w", iface, err)
	}
	switch hw := ifr.Uint16(); hw {
	case unix.ARPHRD_ETHER, unix.ARPHRD_LOOPBACK:
		return linkEthernet, nil
	case unix.ARPHRD_NONE:
		return linkRawIP, nil
	default:
		return 0, scanfleet.Errorf(scanfleet.EINVALID, "args.interface: %s has link type %d; only Ethernet, loopback and tun (raw IP) interfaces are supported", iface, hw)
	}
}

// buildProgram compiles the task's filter, ANDed with the scope, and
// describes it for the log.
func buildProgram(o options, scope node, link linkType) ([]bpf.RawInstruction, string, error) {
	if o.raw != nil {
		desc := fmt.Sprintf("raw BPF (%d instructions)", len(o.raw))
		if scope == nil {
			return o.raw, desc, nil
		}
		prog, err := prefixRaw(scope, link, o.raw)
		return prog, "in scope and " + desc, err
	}
	n := o.filter
	desc := "none"
	if n != nil {
		desc = n.String()
	}
	switch {
	case scope != nil && n != nil:
		n = andNode{scope, n}
		desc = "in scope and " + desc
	case scope != nil:
		n = scope
		desc = "in scope"
	}
	prog, err := compileFilter(n, link, o.snaplen)
	return prog, desc, err
}

// dropAll is a filter that keeps nothing.
var dropAll = []bpf.RawInstruction{{Op: 0x06, K: 0}} // ret #0

// attach sets the capture's filter without letting through what arrived
// before it: the socket receives from the moment it is made, so first a
// filter that keeps nothing, then the ring is drained, then the real
// filter (libpcap does the same).
// It returns the socket's counts so far, which are not the capture's.
func attach(tp *afpacket.TPacket, prog []bpf.RawInstruction) (afpacket.SocketStats, error) {
	if err := tp.SetBPF(dropAll); err != nil {
		return afpacket.SocketStats{}, err
	}
	for {
		_, _, err := tp.ZeroCopyReadPacketData()
		if errors.Is(err, afpacket.ErrTimeout) {
			break
		} else if err != nil {
			return afpacket.SocketStats{}, err
		}
	}
	base, _, err := tp.SocketStats()
	if err != nil {
		return afpacket.SocketStats{}, err
	}
	return base, tp.SetBPF(prog)
}
