package wal

import (
	"fmt"
	"testing"
)

// BenchmarkAppendSync measures durable throughput: each iteration appends
// `frames` batches of `size` bytes and syncs once, as the store's committer
// does per group commit. MB/s counts payload bytes made durable.
func BenchmarkAppendSync(b *testing.B) {
	for _, bc := range []struct {
		size, frames int
	}{
		{64 << 10, 1},
		{1 << 20, 1},
		{64 << 10, 8},
	} {
		b.Run(fmt.Sprintf("%dKiB-x%d", bc.size>>10, bc.frames), func(b *testing.B) {
			l := mustOpen(b, b.TempDir(), Options{})
			defer l.Close()
			payload := payloadOfSize(1, bc.size)
			b.SetBytes(int64(bc.size * bc.frames))
			for b.Loop() {
				for range bc.frames {
					if _, err := l.Append(payload); err != nil {
						b.Fatal(err)
					}
				}
				if err := l.Sync(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReplay measures reading a log back, as the store does on start.
func BenchmarkReplay(b *testing.B) {
	l := mustOpen(b, b.TempDir(), Options{})
	defer l.Close()
	payload := payloadOfSize(1, 256<<10)
	for range 512 { // 128 MiB
		if _, err := l.Append(payload); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(512 * int64(len(payload)))
	for b.Loop() {
		if err := l.Replay(1, func(uint64, []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpen measures recovery: Open verifies every frame of a 128 MiB
// log before it accepts appends.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	l := mustOpen(b, dir, Options{})
	payload := payloadOfSize(1, 256<<10)
	for range 512 {
		if _, err := l.Append(payload); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(512 * int64(len(payload)))
	for b.Loop() {
		l, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		l.Close()
	}
}
