package synscan

import "math/bits"

// permutation is a keyed bijection of [0, n): a balanced Feistel network
// over the smallest even number of bits that holds n, with cycle walking
// to stay inside [0, n). The scan visits probe indexes in this order so
// that consecutive probes go to unrelated addresses and ports (no burst on
// one host or one port), without a table of n entries.
type permutation struct {
	n    uint64
	half uint   // bits per Feistel half
	mask uint64 // (1<<half)-1
	keys [4]uint64
}

func newPermutation(n uint64, seed [4]uint64) *permutation {
	b := uint(1)
	if n > 1 {
		b = uint(bits.Len64(n - 1))
	}
	half := (b + 1) / 2
	return &permutation{n: n, half: half, mask: 1<<half - 1, keys: seed}
}

// At returns the i-th index of the walk, 0 <= i < n.
func (p *permutation) At(i uint64) uint64 {
	x := i
	for {
		x = p.feistel(x)
		if x < p.n {
			return x
		}
	}
}

func (p *permutation) feistel(x uint64) uint64 {
	l, r := x>>p.half, x&p.mask
	for _, k := range p.keys {
		l, r = r, l^(mix64(r^k)&p.mask)
	}
	return l<<p.half | r
}

// mix64 is the finaliser of SplitMix64: a cheap, well-diffusing round
// function (the key does the secrecy, which a scan order hardly needs).
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
