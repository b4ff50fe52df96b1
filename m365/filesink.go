package m365

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/zeebo/xxh3"
)

// FileSink appends records to an NDJSON file, one per line, each record
// once. Re-opening an existing file resumes it: the Ids already in it are
// not written again, and a last line torn by a crash is cut off (its window
// was not checkpointed, so it is fetched again).
//
// Records are keyed by Id alone: Ids are GUIDs, and the file does not say
// which tenant a line came from. Memory is one 16-byte hash per record.
type FileSink struct {
	mu     sync.Mutex
	f      *os.File
	w      *bufio.Writer
	seen   map[xxh3.Uint128]struct{}
	stats  FileSinkStats
	closed bool
}

// FileSinkStats counts what a FileSink did.
type FileSinkStats struct {
	Existing   int64 // records found in the file when it was opened
	Written    int64 // records appended
	Duplicates int64 // records dropped because their Id was already written
	NoID       int64 // records without an Id, written without deduplication
}

// OpenFileSink opens (or creates) path for appending.
func OpenFileSink(path string) (*FileSink, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	s := &FileSink{f: f, seen: map[xxh3.Uint128]struct{}{}}
	good, err := s.load()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, fmt.Errorf("output %s: cutting a torn last line: %w", path, err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("output %s: %w", path, err)
	}
	s.w = bufio.NewWriterSize(f, 1<<20)
	return s, nil
}

// load reads the Ids of the existing lines and returns the length of the
// file up to its last complete line.
func (s *FileSink) load() (int64, error) {
	r := bufio.NewReaderSize(s.f, 1<<20)
	var off int64
	for line := 1; ; line++ {
		b, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A long record: gather the rest of the line.
			long := append([]byte(nil), b...)
			for errors.Is(err, bufio.ErrBufferFull) {
				b, err = r.ReadSlice('\n')
				long = append(long, b...)
			}
			b = long
		}
		if errors.Is(err, io.EOF) {
			return off, nil // b, if any, is a torn line
		}
		if err != nil {
			return 0, err
		}
		rec := bytes.TrimSpace(b)
		if len(rec) > 0 {
			id, ok, perr := recordID(rec)
			if perr != nil {
				return 0, fmt.Errorf("line %d: %w (not written by custos collect?)", line, perr)
			}
			if ok {
				s.seen[xxh3.HashString128(id)] = struct{}{}
			}
			s.stats.Existing++
		}
		off += int64(len(b))
	}
}

// recordID extracts the record's Id without decoding the rest.
func recordID(rec []byte) (string, bool, error) {
	var v struct {
		ID *string `json:"Id"`
	}
	if err := json.Unmarshal(rec, &v); err != nil {
		return "", false, fmt.Errorf("record is not a JSON object: %w", err)
	}
	if v.ID == nil || *v.ID == "" {
		return "", false, nil
	}
	return *v.ID, true, nil
}

// Write implements Sink.
func (s *FileSink) Write(ctx context.Context, tenant string, records []json.RawMessage) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	// Parse outside the lock; only the set and the file are shared.
	type item struct {
		key  xxh3.Uint128
		hasK bool
		rec  []byte
	}
	items := make([]item, len(records))
	for i, r := range records {
		id, ok, err := recordID(r)
		if err != nil {
			return fmt.Errorf("tenant %s: %w", tenant, err)
		}
		rec := []byte(r)
		if bytes.ContainsAny(rec, "\r\n") {
			// One record per line: compact pretty-printed records.
			var buf bytes.Buffer
			if err := json.Compact(&buf, rec); err != nil {
				return fmt.Errorf("tenant %s: %w", tenant, err)
			}
			rec = buf.Bytes()
		}
		items[i] = item{hasK: ok, rec: rec}
		if ok {
			items[i].key = xxh3.HashString128(id)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("output closed")
	}
	for _, it := range items {
		if it.hasK {
			if _, dup := s.seen[it.key]; dup {
				s.stats.Duplicates++
				continue
			}
		} else {
			s.stats.NoID++
		}
		if _, err := s.w.Write(it.rec); err != nil {
			return fmt.Errorf("output: %w", err)
		}
		if err := s.w.WriteByte('\n'); err != nil {
			return fmt.Errorf("output: %w", err)
		}
		if it.hasK {
			s.seen[it.key] = struct{}{}
		}
		s.stats.Written++
	}
	return nil
}

// Sync flushes and fsyncs, so a checkpoint written after it never points
// past records a power loss could take back.
func (s *FileSink) Sync(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("output closed")
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	return nil
}

// Stats returns the sink's counters.
func (s *FileSink) Stats() FileSinkStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Close flushes, syncs and closes the file.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	ferr := s.w.Flush()
	serr := s.f.Sync()
	cerr := s.f.Close()
	if err := errors.Join(ferr, serr, cerr); err != nil {
		return fmt.Errorf("output: %w", err)
	}
	return nil
}
