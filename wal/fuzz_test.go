package wal

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// frameBytes encodes one frame as Append writes it.
func frameBytes(seq uint64, payload []byte) []byte {
	var hdr [headerSize]byte
	encodeHeader(&hdr, seq, payload)
	return append(hdr[:], payload...)
}

// FuzzOpenReplay feeds arbitrary bytes to Open as the only segment file. Open
// must either fail with a *CorruptionError (an intact frame out of place) or
// succeed having kept a prefix of intact frames with seqs 1, 2, …, and the
// repaired log must then take appends and reopen cleanly. Seeds live in
// testdata/fuzz/FuzzOpenReplay.
func FuzzOpenReplay(f *testing.F) {
	one := frameBytes(1, []byte("hello"))
	two := append(frameBytes(1, []byte(`{"Id":"a"}`)), frameBytes(2, []byte(`{"Id":"b"}`))...)
	f.Add([]byte{})
	f.Add(one)
	f.Add(two)
	f.Add(append(bytes.Clone(two), make([]byte, 100)...))
	f.Add(append(bytes.Clone(two), "CWAL\x01\x00\x00\x00garbage"...))
	f.Add(two[:len(two)-3])
	f.Add(frameBytes(2, []byte("wrong first seq")))
	f.Add(append(frameBytes(1, nil), frameBytes(3, []byte("gap"))...))

	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, segName(1))
		if err := os.WriteFile(path, data, 0o640); err != nil {
			t.Fatal(err)
		}
		l, err := Open(dir, Options{SegmentSize: 1 << 20})
		if err != nil {
			var ce *CorruptionError
			if !errors.As(err, &ce) {
				t.Fatalf("Open failed without a CorruptionError: %v", err)
			}
			return
		}
		// What survives is a prefix of data made of intact frames
		// 1..n, and Repaired accounts for the rest exactly.
		var kept int64
		var payloads [][]byte
		err = l.Replay(0, func(seq uint64, p []byte) error {
			if seq != uint64(len(payloads)+1) {
				t.Fatalf("replayed seq %d after %d frames", seq, len(payloads))
			}
			if !bytes.Equal(data[kept:kept+headerSize+int64(len(p))], frameBytes(seq, p)) {
				t.Fatalf("seq %d does not match the input bytes at offset %d", seq, kept)
			}
			kept += headerSize + int64(len(p))
			payloads = append(payloads, p)
			return nil
		})
		if err != nil {
			l.Close()
			t.Fatalf("Replay after a successful Open: %v", err)
		}
		if kept+l.Repaired() != int64(len(data)) {
			t.Fatalf("kept %d + repaired %d != %d input bytes", kept, l.Repaired(), len(data))
		}
		next := uint64(len(payloads) + 1)
		if l.NextSeq() != next {
			t.Fatalf("NextSeq = %d, want %d", l.NextSeq(), next)
		}

		if seq, err := l.Append([]byte("after")); err != nil || seq != next {
			t.Fatalf("Append = %d, %v; want %d", seq, err, next)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		l, err = Open(dir, Options{SegmentSize: 1 << 20})
		if err != nil {
			t.Fatalf("reopen: %v", err)
		}
		defer l.Close()
		if l.Repaired() != 0 || l.NextSeq() != next+1 {
			t.Fatalf("reopen: repaired %d, NextSeq %d; want 0 and %d", l.Repaired(), l.NextSeq(), next+1)
		}
	})
}
