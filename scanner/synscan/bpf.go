package synscan

import (
	"golang.org/x/net/bpf"
)

// snapLen is how much of a reply the filter keeps: enough for the headers
// of an ICMP error quoting an IPv6 probe.
const snapLen = 256

// replyFilter is the classic BPF program of the receive socket (attached
// with SO_ATTACH_FILTER; the socket is SOCK_DGRAM, so offsets start at the
// network header). It keeps, addressed to a port in [lo, hi]: TCP segments
// with RST, or with SYN and ACK; and ICMP destination unreachable (v4
// type 3, v6 type 1), whose quoted probe the parser checks. Outgoing
// packets (our own probes and resets, seen on loopback) are dropped.
func replyFilter(lo, hi uint16) ([]bpf.RawInstruction, error) {
	var prog []bpf.Instruction
	// Labels are resolved in a second pass: a jump's Skip holds the
	// label's id until then.
	labels := map[int]int{}
	type fix struct {
		at, label int
		onFalse   bool
	}
	var fixes []fix
	label := func(id int) { labels[id] = len(prog) }
	jmp := func(cond bpf.JumpTest, val uint32, t, f int) {
		at := len(prog)
		prog = append(prog, bpf.JumpIf{Cond: cond, Val: val})
		if t >= 0 {
			fixes = append(fixes, fix{at, t, false})
		}
		if f >= 0 {
			fixes = append(fixes, fix{at, f, true})
		}
	}
	goTo := func(l int) {
		fixes = append(fixes, fix{len(prog), l, false})
		prog = append(prog, bpf.Jump{})
	}
	const (
		lV4 = iota + 1
		lV6
		lTCP4
		lICMP4
		lTCP6
		lICMP6
		lFlags
		lDrop
		lKeep
	)
	const next = -1 // fall through
	// Not our own outgoing packets.
	prog = append(prog, bpf.LoadExtension{Num: bpf.ExtType})
	jmp(bpf.JumpEqual, 4, lDrop, next) // PACKET_OUTGOING
	prog = append(prog, bpf.LoadAbsolute{Off: 0, Size: 1}, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0xf0})
	jmp(bpf.JumpEqual, 0x40, lV4, next)
	jmp(bpf.JumpEqual, 0x60, lV6, lDrop)

	label(lV4)
	prog = append(prog, bpf.LoadAbsolute{Off: 6, Size: 2})
	jmp(bpf.JumpBitsSet, 0x1fff, lDrop, next) // a later fragment
	prog = append(prog, bpf.LoadMemShift{Off: 0}, bpf.LoadAbsolute{Off: 9, Size: 1})
	jmp(bpf.JumpEqual, 6, lTCP4, next)
	jmp(bpf.JumpEqual, 1, lICMP4, lDrop)
	label(lTCP4)
	prog = append(prog, bpf.LoadIndirect{Off: 2, Size: 2})
	jmp(bpf.JumpLessThan, uint32(lo), lDrop, next)
	jmp(bpf.JumpGreaterThan, uint32(hi), lDrop, next)
	prog = append(prog, bpf.LoadIndirect{Off: 13, Size: 1})
	goTo(lFlags)
	label(lICMP4)
	prog = append(prog, bpf.LoadIndirect{Off: 0, Size: 1})
	jmp(bpf.JumpEqual, 3, lKeep, lDrop)

	label(lV6)
	prog = append(prog, bpf.LoadAbsolute{Off: 6, Size: 1})
	jmp(bpf.JumpEqual, 6, lTCP6, next)
	jmp(bpf.JumpEqual, 58, lICMP6, lDrop)
	label(lTCP6)
	prog = append(prog, bpf.LoadAbsolute{Off: ip6Len + 2, Size: 2})
	jmp(bpf.JumpLessThan, uint32(lo), lDrop, next)
	jmp(bpf.JumpGreaterThan, uint32(hi), lDrop, next)
	prog = append(prog, bpf.LoadAbsolute{Off: ip6Len + 13, Size: 1})
	goTo(lFlags)
	label(lICMP6)
	prog = append(prog, bpf.LoadAbsolute{Off: ip6Len, Size: 1})
	jmp(bpf.JumpEqual, 1, lKeep, lDrop)

	label(lFlags) // A holds the TCP flags
	jmp(bpf.JumpBitsSet, tcpRST, lKeep, next)
	prog = append(prog, bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: tcpSYN | tcpACK})
	jmp(bpf.JumpEqual, tcpSYN|tcpACK, lKeep, lDrop)
	label(lDrop)
	prog = append(prog, bpf.RetConstant{Val: 0})
	label(lKeep)
	prog = append(prog, bpf.RetConstant{Val: snapLen})

	for _, f := range fixes {
		skip := labels[f.label] - f.at - 1
		switch j := prog[f.at].(type) {
		case bpf.Jump:
			j.Skip = uint32(skip)
			prog[f.at] = j
		case bpf.JumpIf:
			if f.onFalse {
				j.SkipFalse = uint8(skip)
			} else {
				j.SkipTrue = uint8(skip)
			}
			prog[f.at] = j
		}
	}
	return bpf.Assemble(prog)
}
