package synscan

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// cookieKey is the per-scan secret of the SYN cookies: replies are matched
// to probes by recomputing the keyed hash of the 4-tuple instead of keeping
// a table of what was sent (masscan's and zmap's validation).
type cookieKey struct{ k0, k1 uint64 }

// cookie returns the keyed hash of a target address and port. Its low 32
// bits are the probe's sequence number; the high bits choose the source
// port within the scan's range, so that a reply is valid only if it is
// addressed to the port that probe came from.
func (k cookieKey) cookie(addr netip.Addr, port uint16) uint64 {
	a := addr.As16()
	return sipHash24(k.k0, k.k1,
		binary.LittleEndian.Uint64(a[:8]),
		binary.LittleEndian.Uint64(a[8:]),
		uint64(port))
}

// sipHash24 is SipHash-2-4 of a 24-byte message given as three
// little-endian words.
func sipHash24(k0, k1, m0, m1, m2 uint64) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	for _, m := range [...]uint64{m0, m1, m2, 24 << 56} {
		v3 ^= m
		round()
		round()
		v0 ^= m
	}
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}
