package wal

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// payloadFor derives a payload from its seq, so that any replayed frame can
// be checked without remembering what was written. Sizes vary from 1 byte to
// about 3 KB unless size says otherwise.
func payloadFor(seq uint64) []byte {
	return payloadOfSize(seq, 1+int(seq*7919%3000))
}

func payloadOfSize(seq uint64, size int) []byte {
	rng := rand.New(rand.NewPCG(seq, 0x5eed))
	p := make([]byte, size)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p
}

func mustOpen(t testing.TB, dir string, opts Options) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

// appendRange appends payloadFor(seq) for seqs from..to, syncing every
// syncEvery frames and at the end.
func appendRange(t testing.TB, l *Log, from, to uint64, syncEvery int) {
	t.Helper()
	for seq := from; seq <= to; seq++ {
		got, err := l.Append(payloadFor(seq))
		if err != nil {
			t.Fatalf("Append(%d): %v", seq, err)
		}
		if got != seq {
			t.Fatalf("Append returned seq %d, want %d", got, seq)
		}
		if syncEvery > 0 && int(seq-from+1)%syncEvery == 0 {
			if err := l.Sync(); err != nil {
				t.Fatalf("Sync: %v", err)
			}
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
}

// checkReplay replays from `from` and requires exactly the frames from..to
// (none if to < from), each with payloadFor(seq).
func checkReplay(t testing.TB, l *Log, from, to uint64) {
	t.Helper()
	from = max(from, 1) // Replay treats 0 as 1
	want := from
	err := l.Replay(from, func(seq uint64, p []byte) error {
		if seq != want {
			return fmt.Errorf("replayed seq %d, want %d", seq, want)
		}
		if !bytes.Equal(p, payloadFor(seq)) {
			return fmt.Errorf("seq %d: payload differs (%d bytes, want %d)", seq, len(p), len(payloadFor(seq)))
		}
		want++
		return nil
	})
	if err != nil {
		t.Fatalf("Replay(%d): %v", from, err)
	}
	if to >= from && want != to+1 {
		t.Fatalf("Replay(%d) ended before seq %d, want through %d", from, want, to)
	}
	if to < from && want != from {
		t.Fatalf("Replay(%d) returned frames up to %d, want none", from, want-1)
	}
}

// segmentFiles returns the bases of the segment files in dir, in order.
func segmentFiles(t testing.TB, dir string) []uint64 {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var bases []uint64
	for _, s := range segs {
		bases = append(bases, s.base)
	}
	return bases
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// frameOffset is where frame seq starts in the segment whose first frame is
// base, given that every frame holds payloadFor(its seq).
func frameOffset(base, seq uint64) int64 {
	var off int64
	for s := base; s < seq; s++ {
		off += headerSize + int64(len(payloadFor(s)))
	}
	return off
}

func TestRoundTripAcrossRolls(t *testing.T) {
	dir := t.TempDir()
	const segSize = 8 << 10
	l := mustOpen(t, dir, Options{SegmentSize: segSize})
	if l.NextSeq() != 1 || l.FirstSeq() != 1 {
		t.Fatalf("fresh log: NextSeq %d FirstSeq %d, want 1 and 1", l.NextSeq(), l.FirstSeq())
	}
	appendRange(t, l, 1, 300, 7)
	// One frame larger than a whole segment must still fit, alone.
	big := payloadOfSize(301, 3*segSize)
	if seq, err := l.Append(big); err != nil || seq != 301 {
		t.Fatalf("Append(big) = %d, %v", seq, err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}

	bases := segmentFiles(t, dir)
	if len(bases) < 20 {
		t.Fatalf("only %d segments for ~450 KB at %d bytes each; rolls are not happening", len(bases), segSize)
	}
	var total int64
	for i, base := range bases {
		size := fileSize(t, filepath.Join(dir, segName(base)))
		total += size
		// Each segment holds frames base..(next base - 1) back to back,
		// and only a single oversized frame may exceed the limit.
		if i+1 < len(bases) && size > segSize && bases[i+1] != base+1 {
			t.Errorf("segment %s is %d bytes with several frames, limit %d", segName(base), size, segSize)
		}
		if i+1 < len(bases) && bases[i+1] <= 301 && size != frameOffset(base, bases[i+1]) {
			t.Errorf("segment %s is %d bytes, want %d for seqs %d..%d", segName(base), size, frameOffset(base, bases[i+1]), base, bases[i+1]-1)
		}
	}
	if l.Size() != total {
		t.Errorf("Size() = %d, files hold %d", l.Size(), total)
	}

	check := func(l *Log) {
		t.Helper()
		want := uint64(1)
		err := l.Replay(1, func(seq uint64, p []byte) error {
			wantP := payloadFor(seq)
			if seq == 301 {
				wantP = big
			}
			if seq != want || !bytes.Equal(p, wantP) {
				return fmt.Errorf("replayed seq %d (%d bytes), want seq %d (%d bytes)", seq, len(p), want, len(wantP))
			}
			want++
			return nil
		})
		if err != nil || want != 302 {
			t.Fatalf("Replay stopped before seq %d: %v", want, err)
		}
	}
	check(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = mustOpen(t, dir, Options{SegmentSize: segSize})
	defer l.Close()
	if l.Repaired() != 0 {
		t.Errorf("clean log reopened with %d bytes repaired", l.Repaired())
	}
	if l.NextSeq() != 302 {
		t.Errorf("NextSeq after reopen = %d, want 302", l.NextSeq())
	}
	check(l)
}

func TestRestartContinuesSeq(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 4 << 10}
	l := mustOpen(t, dir, opts)
	appendRange(t, l, 1, 5, 0)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		l = mustOpen(t, dir, opts)
		from := uint64(6 + round*10)
		if got := l.NextSeq(); got != from {
			t.Fatalf("round %d: NextSeq after restart = %d, want %d", round, got, from)
		}
		appendRange(t, l, from, from+9, 4)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	l = mustOpen(t, dir, opts)
	defer l.Close()
	checkReplay(t, l, 1, 35)
}

// A crash right after a roll leaves an empty last segment; Open must accept
// it and keep appending into it.
func TestRestartWithEmptyLastSegment(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	appendRange(t, l, 1, 10, 0)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, segName(11)), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, Options{})
	if l.NextSeq() != 11 {
		t.Fatalf("NextSeq = %d, want 11", l.NextSeq())
	}
	appendRange(t, l, 11, 12, 0)
	l.Close()
	if got := segmentFiles(t, dir); !slices.Equal(got, []uint64{1, 11}) {
		t.Fatalf("segments %v, want [1 11]", got)
	}
	if size := fileSize(t, filepath.Join(dir, segName(11))); size != frameOffset(11, 13) {
		t.Fatalf("empty segment was not reused: it holds %d bytes", size)
	}
	l = mustOpen(t, dir, Options{})
	defer l.Close()
	checkReplay(t, l, 1, 12)
}

func TestReplayOnlySyncedFrames(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{})
	defer l.Close()
	appendRange(t, l, 1, 3, 0)
	for seq := uint64(4); seq <= 5; seq++ {
		if _, err := l.Append(payloadFor(seq)); err != nil {
			t.Fatal(err)
		}
	}
	checkReplay(t, l, 1, 3)
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	checkReplay(t, l, 1, 5)
}

func TestReplayFrom(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 8 << 10})
	defer l.Close()
	appendRange(t, l, 1, 100, 10)
	bases := segmentFiles(t, dir)
	if len(bases) < 4 {
		t.Fatalf("want several segments, got %d", len(bases))
	}
	for _, from := range []uint64{0, 1, 2, bases[1] - 1, bases[1], bases[1] + 1, bases[2], 50, 99, 100, 101, 1000, math.MaxUint64} {
		t.Run(fmt.Sprint(from), func(t *testing.T) {
			checkReplay(t, l, max(from, 1), 100)
			if from == 0 { // 0 means from the start
				checkReplay(t, l, 0, 100)
			}
		})
	}
}

func TestReplayStopsAtCallbackError(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{SegmentSize: 4 << 10})
	defer l.Close()
	appendRange(t, l, 1, 30, 0)
	stop := errors.New("stop")
	var last uint64
	err := l.Replay(1, func(seq uint64, _ []byte) error {
		last = seq
		if seq == 17 {
			return stop
		}
		return nil
	})
	if err != stop || last != 17 {
		t.Fatalf("Replay = %v after seq %d, want the callback's error after 17", err, last)
	}
}

func TestTruncateBefore(t *testing.T) {
	const n = 120
	build := func(t *testing.T) (string, *Log, []uint64) {
		dir := t.TempDir()
		l := mustOpen(t, dir, Options{SegmentSize: 8 << 10})
		appendRange(t, l, 1, n, 5)
		bases := segmentFiles(t, dir)
		if len(bases) < 5 {
			t.Fatalf("want several segments, got %d", len(bases))
		}
		return dir, l, bases
	}
	_, probeLog, probe := build(t)
	probeLog.Close()
	cuts := []uint64{0, 1, probe[1] - 1, probe[1], probe[1] + 1, probe[3], n / 2, probe[len(probe)-1], n, n + 1, math.MaxUint64}

	for _, cut := range cuts {
		t.Run(fmt.Sprint(cut), func(t *testing.T) {
			dir, l, bases := build(t)
			defer func() { l.Close() }()
			if err := l.TruncateBefore(cut); err != nil {
				t.Fatal(err)
			}
			// A segment goes only if every frame in it is below cut,
			// which the next segment's base tells; the last never goes.
			var want []uint64
			for i, b := range bases {
				if i == len(bases)-1 || bases[i+1] > cut {
					want = append(want, b)
				}
			}
			if got := segmentFiles(t, dir); !slices.Equal(got, want) {
				t.Fatalf("segments after TruncateBefore(%d) = %v, want %v", cut, got, want)
			}
			if first := l.FirstSeq(); first != want[0] || (cut >= 1 && cut <= n && first > cut) {
				t.Fatalf("FirstSeq = %d after TruncateBefore(%d), segments %v", first, cut, want)
			}
			checkReplay(t, l, max(cut, want[0]), n)

			// The log keeps working, and the truncated form survives a restart.
			appendRange(t, l, n+1, n+3, 0)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l = mustOpen(t, dir, Options{SegmentSize: 8 << 10})
			if l.FirstSeq() != want[0] || l.NextSeq() != n+4 {
				t.Fatalf("after restart FirstSeq %d NextSeq %d, want %d and %d", l.FirstSeq(), l.NextSeq(), want[0], n+4)
			}
			checkReplay(t, l, want[0], n+3)
		})
	}
}

// copyDir copies the segment files of src into a new temporary directory.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	for _, base := range segmentFiles(t, src) {
		b, err := os.ReadFile(filepath.Join(src, segName(base)))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, segName(base)), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func TestTornTailEveryLength(t *testing.T) {
	for _, tc := range []struct {
		name    string
		segSize int64
	}{
		{"last frame shares its segment", 1 << 20},
		{"last frame alone in its segment", 1}, // every frame gets its own segment
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 11 // payloadFor(11) is 1 + 11*7919%3000 = 110 bytes: 133 cut points
			opts := Options{SegmentSize: tc.segSize}
			src := t.TempDir()
			l := mustOpen(t, src, opts)
			appendRange(t, l, 1, n, 0)
			l.Close()
			bases := segmentFiles(t, src)
			lastBase := bases[len(bases)-1]
			start := frameOffset(lastBase, n)
			end := frameOffset(lastBase, n+1)

			for cut := start + 1; cut < end; cut++ {
				dir := copyDir(t, src)
				path := filepath.Join(dir, segName(lastBase))
				if err := os.Truncate(path, cut); err != nil {
					t.Fatal(err)
				}
				var logbuf bytes.Buffer
				opts := opts
				opts.Logger = slog.New(slog.NewTextHandler(&logbuf, nil))
				l, err := Open(dir, opts)
				if err != nil {
					t.Fatalf("cut at %d of %d: Open: %v", cut, end, err)
				}
				if l.Repaired() != cut-start {
					t.Fatalf("cut at %d: Repaired() = %d, want %d", cut, l.Repaired(), cut-start)
				}
				if !strings.Contains(logbuf.String(), "torn tail") {
					t.Fatalf("cut at %d: repair not logged; log: %q", cut, logbuf.String())
				}
				if size := fileSize(t, path); size != start {
					t.Fatalf("cut at %d: segment is %d bytes after repair, want %d", cut, size, start)
				}
				if l.NextSeq() != n {
					t.Fatalf("cut at %d: NextSeq = %d, want %d", cut, l.NextSeq(), n)
				}
				checkReplay(t, l, 1, n-1)
				// Appending resumes on the clean boundary and survives.
				appendRange(t, l, n, n, 0)
				l.Close()
				l = mustOpen(t, dir, opts)
				if l.Repaired() != 0 {
					t.Fatalf("cut at %d: second Open repaired %d more bytes", cut, l.Repaired())
				}
				checkReplay(t, l, 1, n)
				l.Close()
			}
		})
	}
}

func TestTailGarbageIsRepaired(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	var hdr [headerSize]byte
	encodeHeader(&hdr, 21, payloadFor(21))
	badCRC := append(hdr[:], payloadFor(21)...)
	badCRC[len(badCRC)-1] ^= 1
	hugeLen := slices.Clone(hdr[:])
	hugeLen[offLen+3] = 0x7f

	for _, tc := range []struct {
		name string
		tail []byte
	}{
		{"one zero", make([]byte, 1)},
		{"zeros shorter than a header", make([]byte, headerSize-1)},
		{"zeros as long as a header", make([]byte, headerSize)},
		{"zeroed page", make([]byte, 4096)},
		{"zeroed MiB", make([]byte, 1<<20)},
		{"one random byte", random(1)},
		{"random bytes", random(100)},
		{"random 64 KiB", random(64 << 10)},
		// (Magic with a higher version is a newer format, not garbage:
		// see TestCorruptionIsReported.)
		{"magic and version then random", append([]byte("CWAL\x01"), random(500)...)},
		{"header alone", hdr[:]},
		{"header with a length past the end", hugeLen},
		{"whole frame with a bad checksum", badCRC},
		{"bad checksum then zeros", append(slices.Clone(badCRC), make([]byte, 8192)...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := mustOpen(t, dir, Options{SegmentSize: 16 << 10})
			appendRange(t, l, 1, 20, 3)
			l.Close()
			bases := segmentFiles(t, dir)
			path := filepath.Join(dir, segName(bases[len(bases)-1]))
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.Write(tc.tail); err != nil {
				t.Fatal(err)
			}
			f.Close()

			l, err = Open(dir, Options{SegmentSize: 16 << 10})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer l.Close()
			if l.Repaired() != int64(len(tc.tail)) {
				t.Errorf("Repaired() = %d, want %d", l.Repaired(), len(tc.tail))
			}
			checkReplay(t, l, 1, 20)
			appendRange(t, l, 21, 22, 0)
			checkReplay(t, l, 1, 22)
		})
	}
}

// snapshot returns the contents of every file in dir, to prove Open changed nothing.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, base := range segmentFiles(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, segName(base)))
		if err != nil {
			t.Fatal(err)
		}
		m[segName(base)] = string(b)
	}
	return m
}

func TestCorruptionIsReported(t *testing.T) {
	const n = 60
	const segSize = 16 << 10
	// layout builds a log of n frames and returns its directory and
	// segment bases; every test case damages a fresh copy.
	src := t.TempDir()
	l := mustOpen(t, src, Options{SegmentSize: segSize})
	appendRange(t, l, 1, n, 4)
	l.Close()
	bases := segmentFiles(t, src)
	if len(bases) < 4 {
		t.Fatalf("want at least 4 segments, got %v", bases)
	}
	mid, last := bases[1], bases[len(bases)-1]
	if bases[len(bases)-1]+3 > n {
		t.Fatalf("last segment %d too short for the test, n=%d", last, n)
	}

	flip := func(base uint64, off int64) func(t *testing.T, dir string) {
		return func(t *testing.T, dir string) {
			path := filepath.Join(dir, segName(base))
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[off] ^= 0x10
			if err := os.WriteFile(path, b, 0o640); err != nil {
				t.Fatal(err)
			}
		}
	}
	frame := func(base, seq uint64) int64 { return frameOffset(base, seq) }

	for _, tc := range []struct {
		name    string
		damage  func(t *testing.T, dir string)
		segment uint64 // which file the error must name
		offset  int64  // and where in it
	}{
		{"payload bit in first segment", flip(1, frame(1, 2)+headerSize+5), 1, frame(1, 2)},
		{"payload bit in middle segment", flip(mid, frame(mid, mid+1)+headerSize), mid, frame(mid, mid+1)},
		{"last byte of a middle segment", flip(mid, frame(mid, bases[2])-1), mid, frame(mid, bases[2]-1)},
		{"length field in middle segment", flip(mid, frame(mid, mid)+offLen+1), mid, frame(mid, mid)},
		{"seq field in middle segment", flip(mid, frame(mid, mid)+offSeq), mid, frame(mid, mid)},
		{"magic in middle segment", flip(mid, frame(mid, mid+1)), mid, frame(mid, mid+1)},
		{"checksum in middle segment", flip(mid, frame(mid, mid+1)+offCRC), mid, frame(mid, mid+1)},
		{"payload bit in last segment, intact frames follow", flip(last, frame(last, last)+headerSize+1), last, frame(last, last)},
		{"length field in last segment, intact frames follow", flip(last, frame(last, last+1)+offLen), last, frame(last, last+1)},
		{"middle segment missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, segName(mid))); err != nil {
				t.Fatal(err)
			}
		}, 1, frame(1, mid)},
		{"torn tail in a middle segment", func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, segName(mid)), frame(mid, bases[2])-7); err != nil {
				t.Fatal(err)
			}
		}, mid, frame(mid, bases[2]-1)},
		{"zeros after a middle segment", func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, segName(mid)), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(make([]byte, 100))
			f.Close()
		}, mid, frame(mid, bases[2])},
		{"frame of a newer format version at the tail", func(t *testing.T, dir string) {
			f, err := os.OpenFile(filepath.Join(dir, segName(last)), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			b := frameBytes(n+1, []byte("from the future"))
			b[offVersion] = version + 1
			f.Write(b)
			f.Close()
		}, last, frame(last, n+1)},
		{"intact frame with the wrong seq at the tail", func(t *testing.T, dir string) {
			var hdr [headerSize]byte
			encodeHeader(&hdr, 3, payloadFor(3))
			f, err := os.OpenFile(filepath.Join(dir, segName(last)), os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(append(hdr[:], payloadFor(3)...))
			f.Close()
		}, last, frame(last, n+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			tc.damage(t, dir)
			before := snapshot(t, dir)

			l, err := Open(dir, Options{SegmentSize: segSize})
			if err == nil {
				l.Close()
				t.Fatal("Open succeeded on a damaged log")
			}
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("Open error %v is not a *CorruptionError", err)
			}
			if ce.Segment != filepath.Join(dir, segName(tc.segment)) || ce.Offset != tc.offset {
				t.Fatalf("error names %s offset %d, want %s offset %d: %v", ce.Segment, ce.Offset, segName(tc.segment), tc.offset, err)
			}
			if !strings.Contains(err.Error(), segName(tc.segment)) || !strings.Contains(err.Error(), fmt.Sprint(tc.offset)) {
				t.Fatalf("error text lacks file or offset: %v", err)
			}
			if !maps.Equal(before, snapshot(t, dir)) {
				t.Fatal("Open modified a log it refused to open")
			}
		})
	}

	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		keep   uint64 // frames that survive
	}{
		{"flipped bit", flip(last, frame(last, last+1)+headerSize+3), last},
		{"frame with the wrong seq", func(t *testing.T, dir string) {
			path := filepath.Join(dir, segName(last))
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			at := frame(last, last+1)
			copy(b[at:], frameBytes(last+5, payloadFor(last+1)))
			if err := os.WriteFile(path, b, 0o640); err != nil {
				t.Fatal(err)
			}
		}, last},
	} {
		t.Run("DropCorruptTail recovers the last segment: "+tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			tc.damage(t, dir)
			opts := Options{SegmentSize: segSize, DropCorruptTail: true}
			l, err := Open(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			if want := frame(last, n+1) - frame(last, tc.keep+1); l.Repaired() != want {
				t.Fatalf("Repaired() = %d, want %d", l.Repaired(), want)
			}
			checkReplay(t, l, 1, tc.keep)
			if l.NextSeq() != tc.keep+1 {
				t.Fatalf("NextSeq = %d, want %d", l.NextSeq(), tc.keep+1)
			}
			// Appends resume right after the kept frames.
			appendRange(t, l, tc.keep+1, n, 0)
			l.Close()
			l = mustOpen(t, dir, Options{SegmentSize: segSize})
			defer l.Close()
			if l.Repaired() != 0 {
				t.Fatalf("second Open repaired %d bytes", l.Repaired())
			}
			checkReplay(t, l, 1, n)
		})
	}

	t.Run("DropCorruptTail leaves older segments alone", func(t *testing.T) {
		dir := copyDir(t, src)
		flip(mid, frame(mid, mid)+headerSize)(t, dir)
		var ce *CorruptionError
		if _, err := Open(dir, Options{SegmentSize: segSize, DropCorruptTail: true}); !errors.As(err, &ce) {
			t.Fatalf("Open = %v, want a *CorruptionError", err)
		}
	})
}

// A frame damaged after Open verified it is reported by Replay, not skipped.
func TestReplayReportsLaterDamage(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 8 << 10})
	defer l.Close()
	appendRange(t, l, 1, 40, 0)
	path := filepath.Join(dir, segName(1))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff}, frameOffset(1, 2)+headerSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	var ce *CorruptionError
	if err := l.Replay(1, func(uint64, []byte) error { return nil }); !errors.As(err, &ce) || ce.Offset != frameOffset(1, 2) {
		t.Fatalf("Replay = %v, want a *CorruptionError at offset %d", err, frameOffset(1, 2))
	}
}

func TestAppendRejectsOversizedPayload(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{})
	defer l.Close()
	if _, err := l.Append(make([]byte, MaxPayloadSize+1)); err == nil {
		t.Fatal("Append accepted a payload over MaxPayloadSize")
	}
	// The rejection does not poison the log.
	appendRange(t, l, 1, 2, 0)
	checkReplay(t, l, 1, 2)
}

func TestEmptyPayload(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	for range 3 {
		if _, err := l.Append(nil); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	l = mustOpen(t, dir, Options{})
	defer l.Close()
	n := 0
	if err := l.Replay(1, func(seq uint64, p []byte) error {
		n++
		if len(p) != 0 {
			return fmt.Errorf("seq %d: %d bytes", seq, len(p))
		}
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("Replay: %d frames, %v", n, err)
	}
}

func TestClosedLog(t *testing.T) {
	l := mustOpen(t, t.TempDir(), Options{})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append = %v", err)
	}
	if err := l.Sync(); !errors.Is(err, ErrClosed) {
		t.Errorf("Sync = %v", err)
	}
	if err := l.Replay(1, func(uint64, []byte) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Replay = %v", err)
	}
	if err := l.TruncateBefore(1); !errors.Is(err, ErrClosed) {
		t.Errorf("TruncateBefore = %v", err)
	}
	if err := l.Close(); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{})
	if l2, err := Open(dir, Options{}); err == nil {
		l2.Close()
		t.Fatal("a second Open of the same directory succeeded")
	}
	l.Close()
	l = mustOpen(t, dir, Options{})
	l.Close()
}

// Appends, syncs, replays and truncations from several goroutines: run with
// -race. Every acknowledged payload must replay under its seq.
func TestConcurrentUse(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, Options{SegmentSize: 32 << 10})
	var mu sync.Mutex
	written := map[uint64][]byte{}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				p := fmt.Appendf(nil, "writer %d frame %d %s", w, i, strings.Repeat("x", i*10))
				seq, err := l.Append(p)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				written[seq] = p
				mu.Unlock()
				if i%5 == 0 {
					if err := l.Sync(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	done := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			prev := uint64(0)
			err := l.Replay(l.FirstSeq(), func(seq uint64, p []byte) error {
				if prev != 0 && seq != prev+1 {
					return fmt.Errorf("seq %d after %d", seq, prev)
				}
				prev = seq
				return nil
			})
			if err != nil {
				t.Error(err)
				return
			}
			if err := l.TruncateBefore(prev / 2); err != nil {
				t.Error(err)
				return
			}
			_ = l.Size()
		}
	})
	wg.Wait()
	close(done)
	readers.Wait()
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	if l.NextSeq() != 801 {
		t.Fatalf("NextSeq = %d after 800 appends", l.NextSeq())
	}
	first := l.FirstSeq()
	got := 0
	if err := l.Replay(first, func(seq uint64, p []byte) error {
		got++
		if !bytes.Equal(p, written[seq]) {
			return fmt.Errorf("seq %d replayed %q, appended %q", seq, p, written[seq])
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got != int(801-first) {
		t.Fatalf("replayed %d frames from %d, want %d", got, first, 801-first)
	}
	l.Close()
}
