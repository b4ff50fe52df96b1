package simulate

import "math"

// rng is a tiny splitmix64 generator. The simulator uses its own rather than
// math/rand so that a seed produces byte-identical output across Go releases,
// and so that every user, day and record can own a cheap independent stream
// derived from the seed (see mix).
type rng struct{ s uint64 }

const golden = 0x9e3779b97f4a7c15

func (r *rng) u64() uint64 {
	r.s += golden
	return fmix(r.s)
}

// fmix is the splitmix64 finaliser: a bijective avalanche of 64 bits.
func fmix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// mix derives a new 64-bit key from a key and a tag, so that streams for
// (seed, user, day) are independent of each other and of iteration order.
func mix(key uint64, tags ...uint64) uint64 {
	for _, t := range tags {
		key = fmix(key ^ fmix(t+golden))
	}
	return key
}

func newRNG(key uint64, tags ...uint64) rng { return rng{s: mix(key, tags...)} }

// intn returns a value in [0, n). n must be positive and below 2^32. The
// multiply-shift is biased by at most n/2^32, irrelevant here.
func (r *rng) intn(n int) int {
	return int((uint64(uint32(r.u64()>>32)) * uint64(n)) >> 32)
}

// between returns a value in [lo, hi].
func (r *rng) between(lo, hi int) int { return lo + r.intn(hi-lo+1) }

// float returns a value in [0, 1).
func (r *rng) float() float64 { return float64(r.u64()>>11) / (1 << 53) }

func (r *rng) chance(p float64) bool { return r.float() < p }

// norm returns a standard normal deviate (Box–Muller, one of the pair).
func (r *rng) norm() float64 {
	u := 1 - r.float() // (0, 1]
	return math.Sqrt(-2*math.Log(u)) * math.Cos(2*math.Pi*r.float())
}

// lognormal returns a positive factor with mean 1 and the given spread.
func (r *rng) lognormal(sigma float64) float64 {
	return math.Exp(sigma*r.norm() - sigma*sigma/2)
}

// geometric returns k >= 0 with P(k) = (1-p)^k p, capped at max.
func (r *rng) geometric(p float64, max int) int {
	k := 0
	for k < max && !r.chance(p) {
		k++
	}
	return k
}

// round turns an expected count into an integer whose mean is that count.
func (r *rng) round(x float64) int {
	if x <= 0 {
		return 0
	}
	n := math.Floor(x)
	if r.float() < x-n {
		n++
	}
	return int(n)
}

// guid is a 16-byte identifier printed as a lower-case RFC 4122 UUID.
type guid [16]byte

func (r *rng) guid() guid {
	var g guid
	a, b := r.u64(), r.u64()
	for i := 0; i < 8; i++ {
		g[i] = byte(a >> (8 * i))
		g[8+i] = byte(b >> (8 * i))
	}
	g[6] = g[6]&0x0f | 0x40 // version 4
	g[8] = g[8]&0x3f | 0x80 // RFC 4122 variant
	return g
}

// guidOf derives a stable GUID from a key, for objects (users, mailboxes,
// sites) whose identifiers must not change from day to day.
func guidOf(key uint64, tags ...uint64) guid {
	r := newRNG(key, tags...)
	return r.guid()
}

func (g guid) String() string { return string(appendGUID(nil, g)) }

const hexLower = "0123456789abcdef"
const hexUpper = "0123456789ABCDEF"

func appendGUID(b []byte, g guid) []byte {
	for i, x := range g {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, hexLower[x>>4], hexLower[x&15])
	}
	return b
}

func appendHexUpper(b []byte, v uint64, digits int) []byte {
	for i := digits - 1; i >= 0; i-- {
		b = append(b, hexUpper[(v>>(4*uint(i)))&15])
	}
	return b
}

const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
const b64std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// appendB64 appends n base64 characters drawn from the 64-bit words of r;
// Exchange store ids and token ids look like base64 of opaque bytes.
func appendB64(b []byte, r *rng, n int, alphabet string) []byte {
	var w uint64
	for i := 0; i < n; i++ {
		if i%10 == 0 {
			w = r.u64()
		}
		b = append(b, alphabet[w&63])
		w >>= 6
	}
	return b
}
