package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// fpSize is how many of a file's first bytes identify it besides its
// device and inode: enough to hold a whole audit record, so two files
// starting alike are in practice the same file.
const fpSize = 1024

// tailer follows the files matching some glob patterns: it reads complete
// lines, follows appends, notices rotation by rename (the old file is read
// to its end through the descriptor it holds) and by copytruncate (the
// file shrinks or its first bytes change), and picks up new files.
type tailer struct {
	globs   []string
	poll    time.Duration
	maxLine int
	// chunkRecords and chunkBytes bound one chunk, so that a chunk never
	// overfills a batch.
	chunkRecords, chunkBytes int
	logger                   *slog.Logger
	m                        *metrics
	submit                   func(ctx context.Context, c *chunk) error

	files map[string]*tailFile // by Position.key()
	// known are positions saved by an earlier run or left by a file that
	// was truncated, not yet claimed by a file: a file that turns up with
	// the same device and inode, or the same fingerprint, continues there.
	known []Position
	first bool // the first scan has not run yet
}

type tailFile struct {
	f        *os.File
	pos      Position
	size     int64 // size at the last stat
	gone     bool  // no pattern matches it any more (renamed away or deleted)
	idle     int   // scans at end of file since gone
	skipping bool  // inside a line longer than maxLine
	buf      []byte
}

func newTailer(globs []string, saved []Position) *tailer {
	return &tailer{globs: globs, files: map[string]*tailFile{}, known: saved, first: true}
}

// run scans and reads until ctx ends or a chunk cannot be submitted.
func (t *tailer) run(ctx context.Context) error {
	defer func() {
		for _, tf := range t.files {
			tf.f.Close()
		}
	}()
	tick := time.NewTicker(t.poll)
	defer tick.Stop()
	for {
		if err := t.scan(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// scan checks every followed file, looks for new ones and reads what each
// has that is new.
func (t *tailer) scan(ctx context.Context) error {
	matched := map[string]string{} // key → path
	for _, g := range t.globs {
		paths, err := filepath.Glob(g)
		if err != nil {
			return fmt.Errorf("--file %q: %w", g, err)
		}
		sort.Strings(paths)
		for _, p := range paths {
			fi, err := os.Stat(p)
			if err != nil || !fi.Mode().IsRegular() {
				continue
			}
			dev, ino := fileID(fi)
			k := Position{Dev: dev, Ino: ino}.key()
			if _, dup := matched[k]; !dup {
				matched[k] = p
			}
		}
	}

	// Followed files first: one truncated by copytruncate leaves its
	// position in known, where its copy, if matched, finds it below.
	var forget []Position
	for k, tf := range t.files {
		p, ok := matched[k]
		if ok {
			tf.pos.Path = p
			tf.gone, tf.idle = false, 0
		} else if !tf.gone {
			tf.gone = true
			t.logger.Info("file rotated away or deleted; reading it to its end", "path", tf.pos.Path)
		}
		if err := t.checkTruncated(tf); err != nil {
			t.logger.Warn("cannot check file", "path", tf.pos.Path, "err", err)
		}
	}
	for k, p := range matched {
		if _, ok := t.files[k]; ok {
			continue
		}
		tf, err := t.open(p)
		if err != nil {
			t.logger.Warn("cannot open file", "path", p, "err", err)
			continue
		}
		if _, ok := t.files[tf.pos.key()]; ok { // replaced between stat and open
			tf.f.Close()
			continue
		}
		t.files[tf.pos.key()] = tf
	}
	if t.first {
		t.first = false
		t.findRenamed()
		// Saved positions no file claimed: the file went away while the
		// forwarder was not running. If it had unread bytes, they are lost.
		for _, p := range t.known {
			if p.Offset < p.Size {
				t.m.lostFiles.Inc()
				t.logger.Error("a file the forwarder was reading went away while it was stopped; the lines it had not read are lost",
					"path", p.Path, "read_to", p.Offset, "size_last_seen", p.Size)
			} else {
				// Read to the size last seen; whether more was written
				// before it went away cannot be known.
				t.logger.Info("a file read to its end went away while the forwarder was stopped", "path", p.Path)
			}
			forget = append(forget, Position{Dev: p.Dev, Ino: p.Ino, Offset: -1})
		}
		t.known = nil
	}

	keys := make([]string, 0, len(t.files))
	for k := range t.files {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return t.files[keys[i]].pos.Path < t.files[keys[j]].pos.Path })
	for _, k := range keys {
		tf := t.files[k]
		n, err := t.read(ctx, tf)
		if err != nil {
			return err
		}
		if tf.gone && n == 0 {
			// Two quiet scans after it went away: a writer that had it
			// open has had time to finish its last line.
			if tf.idle++; tf.idle >= 2 {
				tf.f.Close()
				delete(t.files, k)
				forget = append(forget, Position{Dev: tf.pos.Dev, Ino: tf.pos.Ino, Offset: -1, Path: tf.pos.Path})
			}
		}
	}
	if len(forget) > 0 {
		return t.submit(ctx, &chunk{positions: forget})
	}
	return nil
}

// findRenamed looks for the files of unclaimed saved positions in the
// directory they were in: a file rotated by rename while the forwarder was
// not running (app.log → app.log.1, which the pattern may not match) still
// has its unread end, which is read before the file is let go.
func (t *tailer) findRenamed() {
	byDir := map[string][]Position{}
	for _, p := range t.known {
		if p.Path != "" {
			byDir[filepath.Dir(p.Path)] = append(byDir[filepath.Dir(p.Path)], p)
		}
	}
	for dir, ps := range byDir {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			path := filepath.Join(dir, e.Name())
			fi, err := os.Stat(path)
			if err != nil {
				continue
			}
			dev, ino := fileID(fi)
			for _, p := range ps {
				if p.Dev != dev || p.Ino != ino {
					continue
				}
				if _, ok := t.files[p.key()]; ok {
					break
				}
				tf, err := t.open(path)
				if err != nil || tf.pos.key() != p.key() || tf.pos.Offset == 0 && p.Offset > 0 {
					if err == nil {
						tf.f.Close()
					}
					break
				}
				tf.gone = true
				t.files[p.key()] = tf
				t.logger.Info("reading the rest of a file rotated away while the forwarder was stopped", "path", path)
				break
			}
		}
	}
}

// open starts following the file at path: from a saved or known position
// when its identity matches one, else from its beginning.
func (t *tailer) open(path string) (*tailFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	dev, ino := fileID(fi)
	tf := &tailFile{f: f, size: fi.Size(), pos: Position{Dev: dev, Ino: ino, Path: path}}
	n := min(fi.Size(), fpSize)
	head := make([]byte, n)
	if _, err := f.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, err
	}
	for i, p := range t.known {
		sameID := p.Dev == dev && p.Ino == ino
		sameFP := p.FPLen <= len(head) && fingerprint(head[:p.FPLen]) == p.FP
		// A fingerprint alone identifies a file only when it is a full
		// one: a short prefix such as `{"CreationTime":"20` is common.
		if !(sameID && sameFP) && !(sameFP && p.FPLen == fpSize) {
			continue
		}
		if p.Offset > fi.Size() {
			// Shorter than what was read of it: truncated meanwhile.
			if sameID {
				t.known = append(t.known[:i], t.known[i+1:]...)
			}
			break
		}
		tf.pos.Offset, tf.pos.FPLen, tf.pos.FP = p.Offset, p.FPLen, p.FP
		t.known = append(t.known[:i], t.known[i+1:]...)
		t.logger.Info("following file", "path", path, "from", p.Offset)
		return tf, nil
	}
	if len(head) == fpSize {
		// A copy of a file being followed (copytruncate's copy seen
		// before the truncation): what was read of the original is in it.
		fp := fingerprint(head)
		for _, o := range t.files {
			if o.pos.FPLen == fpSize && o.pos.FP == fp {
				tf.pos.Offset, tf.pos.FPLen, tf.pos.FP = min(o.pos.Offset, fi.Size()), fpSize, fp
				t.logger.Info("following a copy of a followed file", "path", path, "copy_of", o.pos.Path, "from", tf.pos.Offset)
				return tf, nil
			}
		}
	}
	t.logger.Info("following new file", "path", path)
	return tf, nil
}

// checkTruncated restarts a file from its beginning when copytruncate (or
// any rewrite) replaced its contents: it is shorter than what was read,
// or its first bytes changed.
func (t *tailer) checkTruncated(tf *tailFile) error {
	fi, err := tf.f.Stat()
	if err != nil {
		return err
	}
	tf.size = fi.Size()
	changed := tf.size < tf.pos.Offset
	if !changed && tf.pos.FPLen > 0 {
		head := make([]byte, tf.pos.FPLen)
		if _, err := tf.f.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		changed = fingerprint(head) != tf.pos.FP
	}
	if !changed {
		return nil
	}
	t.logger.Info("file was truncated; reading it from the beginning", "path", tf.pos.Path, "was_read_to", tf.pos.Offset)
	if tf.pos.FPLen == fpSize {
		t.known = append(t.known, tf.pos) // for its copy, if a pattern matches that
	}
	tf.pos.Offset, tf.pos.FPLen, tf.pos.FP, tf.skipping = 0, 0, 0, false
	return nil
}

// read submits the complete lines tf has after its position, chunk by
// chunk, and returns the bytes consumed.
func (t *tailer) read(ctx context.Context, tf *tailFile) (int64, error) {
	var total int64
	for {
		if len(tf.buf) == 0 {
			tf.buf = make([]byte, 256<<10)
		}
		n, err := tf.f.ReadAt(tf.buf, tf.pos.Offset)
		if err != nil && !errors.Is(err, io.EOF) {
			return total, fmt.Errorf("read %s: %w", tf.pos.Path, err)
		}
		if n == 0 {
			return total, nil
		}
		data := tf.buf[:n]
		c := &chunk{ndjson: make([]byte, 0, min(n, t.chunkBytes)+1)}
		used := 0
		lost := 0
		for used < len(data) && c.records < t.chunkRecords && len(c.ndjson) < t.chunkBytes {
			nl := bytes.IndexByte(data[used:], '\n')
			if nl < 0 {
				break
			}
			line := data[used : used+nl]
			used += nl + 1
			if tf.skipping { // the end of a long line, counted when it began
				tf.skipping = false
				continue
			}
			line = bytes.TrimSpace(line)
			switch {
			case len(line) == 0:
			case len(line) > t.maxLine:
				lost++
			default:
				c.ndjson = append(c.ndjson, line...)
				c.ndjson = append(c.ndjson, '\n')
				c.records++
			}
		}
		if used == 0 {
			// No complete line in the buffer.
			switch {
			case tf.skipping || n > t.maxLine:
				// A line longer than the limit: skip what there is of
				// it now, the rest when its newline arrives.
				if !tf.skipping {
					lost++
				}
				tf.skipping = true
				used = n
			case n == len(tf.buf):
				tf.buf = make([]byte, 2*len(tf.buf)) // a long line: read more of it
				continue
			default:
				return total, nil // a partial last line: wait for its newline
			}
		}
		if lost > 0 {
			t.m.tooLong.Add(uint64(lost))
			t.logger.Warn("skipped lines longer than the limit", "path", tf.pos.Path, "lines", lost, "limit", t.maxLine)
		}
		t.advance(tf, data[:used])
		tf.pos.Size = max(tf.size, tf.pos.Offset)
		c.positions = []Position{tf.pos}
		if err := t.submit(ctx, c); err != nil {
			return total, err
		}
		total += int64(used)
	}
}

// advance moves tf past consumed, growing its fingerprint while the file
// is shorter than fpSize.
func (t *tailer) advance(tf *tailFile, consumed []byte) {
	if tf.pos.FPLen < fpSize && tf.pos.Offset == int64(tf.pos.FPLen) {
		// Everything read so far is the fingerprint: extend it with
		// what was just consumed.
		head := make([]byte, tf.pos.FPLen, fpSize)
		if _, err := tf.f.ReadAt(head, 0); err == nil || errors.Is(err, io.EOF) {
			head = append(head, consumed[:min(len(consumed), fpSize-len(head))]...)
			tf.pos.FPLen, tf.pos.FP = len(head), fingerprint(head)
		}
	}
	tf.pos.Offset += int64(len(consumed))
}

func fingerprint(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}
