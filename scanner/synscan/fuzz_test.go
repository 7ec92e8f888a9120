package synscan

import (
	"testing"
)

// FuzzParseReply feeds the reply parser bytes as they come off the wire
// (the corpus in testdata/fuzz/FuzzParseReply holds SYN-ACKs, resets and
// ICMP errors of both families, and truncations of them). It must never
// panic, and what it accepts must be consistent.
func FuzzParseReply(f *testing.F) {
	tmpl4, _ := newTemplate(us4, macA, macB)
	probe4 := make([]byte, 100)
	probe4 = probe4[:tmpl4.fill(probe4, them4, 443, 61007, 0x01020304, tcpSYN)]
	f.Add(replyPacket(f, them4, us4, 443, 61007, 99, 0x01020305, true, true, false))
	f.Add(replyPacket(f, them6, us6, 22, 61000, 0, 7, false, true, true))
	f.Add(unreachPacket(f, false, probe4))
	f.Add(probe4[ethLen:])
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok := parseReply(b)
		if !ok {
			if r != (reply{}) {
				t.Fatalf("rejected with fields set: %+v", r)
			}
			return
		}
		if r.kind < replySynAck || r.kind > replyUnreach {
			t.Fatalf("kind %d", r.kind)
		}
		if !r.target.IsValid() || !r.us.IsValid() || r.target.Is4() != r.us.Is4() {
			t.Fatalf("addresses %v %v", r.target, r.us)
		}
		if r.tport == 0 || r.uport == 0 {
			t.Fatalf("ports %d %d", r.tport, r.uport)
		}
		if r.target.Is4() && b[0]>>4 != 4 || r.target.Is6() && b[0]>>4 != 6 {
			t.Fatalf("family of %v from version %d", r.target, b[0]>>4)
		}
	})
}
