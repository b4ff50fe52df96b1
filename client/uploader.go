package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Location is where a record came from.
type Location struct {
	File string // as the caller named it; "-" reads as stdin
	Line int    // 1-based; 0 when unknown
}

func (l Location) String() string {
	f := l.File
	if f == "-" {
		f = "stdin"
	}
	if l.Line <= 0 {
		return f
	}
	return fmt.Sprintf("%s:%d", f, l.Line)
}

// Rejection is one record that was not stored because it is invalid.
type Rejection struct {
	Location
	ID     string // the record's Id, when the server could read it
	Field  string // the field at fault, when known
	Error  string
	Client bool  // refused by the client before sending
	order  int64 // input order, to list the earliest rejections
}

// Range is a run of records of one file, from line First to line Last.
type Range struct {
	File        string
	First, Last int
}

func (r Range) String() string {
	l := Location{File: r.File, Line: r.First}.String()
	if r.Last > r.First {
		l += fmt.Sprintf("-%d", r.Last)
	}
	return l
}

// Failure is a batch that was not delivered.
type Failure struct {
	Records int
	Ranges  []Range // where its records came from, in order
	Err     error
	seq     int64
}

// ErrStopped marks batches that were never sent because an earlier batch
// failed; Add and Upload return it (wrapped) after such a failure.
var ErrStopped = errors.New("not sent: the upload stopped after a batch failed")

// Stats are running counts of an upload.
type Stats struct {
	Records   int64 // records the server answered for
	Bytes     int64 // the bytes of their batches, before compression
	Accepted  int64
	Duplicate int64
	Rejected  int64 // by the server or the client
	Retries   int64 // requests sent again after a retryable failure
	Failed    int64 // records in batches that were not delivered
}

// Summary is the outcome of an upload.
type Summary struct {
	Stats
	// Rejections lists the earliest rejected records in input order, at
	// most UploadOptions.ListRejections; Rejected counts them all.
	Rejections []Rejection
	// Failures lists the batches that were not delivered.
	Failures []Failure
	// StoppedAt is the first record Add refused after a failure: it and
	// everything after it in the input was not sent. Nil when Add never
	// refused one.
	StoppedAt *Location
}

// UploadOptions tunes an Uploader; zero values take the defaults.
type UploadOptions struct {
	BatchRecords   int // records per request (default 5,000)
	BatchBytes     int // bytes per request before compression (default 4 MiB)
	Concurrency    int // requests in flight (default 4)
	ListRejections int // rejections kept for Summary (default 20)
	// OnRetry, when set, is called (from the sending goroutines) before a
	// request is retried.
	OnRetry func(err error, wait time.Duration)
}

// Uploader sends a stream of records to one tenant in batches, several at
// a time, and maps the server's per-record errors back to where each record
// came from. Add, Upload and Close are for one goroutine; Stats may be
// called from any.
type Uploader struct {
	c      *Client
	tenant string
	opt    UploadOptions

	cur     *batch
	work    chan *batch
	free    chan *batch
	wg      sync.WaitGroup
	started bool
	seq     int64

	stopped atomic.Bool
	st      struct { // running counts, read by Stats
		records, bytes, accepted, duplicate, rejected, retries, failed atomic.Int64
	}

	mu         sync.Mutex // guards what follows
	rejections []Rejection
	failures   []Failure
	stoppedAt  *Location
	firstErr   error
}

// batch is a request being filled or in flight. Records without a line
// break go as NDJSON, one per line. A record with line breaks (a
// pretty-printed JSON array element) cannot be a line: such records go in
// batches of their own, sent as a JSON array, so that each keeps its bytes.
type batch struct {
	ctx   context.Context
	array bool       // a JSON array batch
	buf   []byte     // NDJSON lines, or '[' and the comma-separated elements
	wire  []byte     // the body encoded for sending
	locs  []Location // of each record, by batch index
	seq0  int64      // input sequence number of the first record
}

// NewUploader returns an Uploader sending to tenant.
func (c *Client) NewUploader(tenant string, opt UploadOptions) *Uploader {
	if opt.BatchRecords <= 0 {
		opt.BatchRecords = 5000
	}
	if opt.BatchBytes <= 0 {
		opt.BatchBytes = 4 << 20
	}
	if opt.Concurrency <= 0 {
		opt.Concurrency = 4
	}
	if opt.ListRejections <= 0 {
		opt.ListRejections = 20
	}
	return &Uploader{
		c:      c,
		tenant: tenant,
		opt:    opt,
		work:   make(chan *batch),
		free:   make(chan *batch, opt.Concurrency+1),
	}
}

// Add queues one record (one JSON object); it is copied and sent as it is.
// A record that spans lines must be valid JSON, since it goes in a JSON
// array batch, which one invalid element would cut short. Add blocks while
// every sender is busy. After a batch has failed it refuses the record with
// an error wrapping ErrStopped.
func (u *Uploader) Add(ctx context.Context, rec []byte, loc Location) error {
	if u.stopped.Load() {
		u.refuse(loc, ErrStopped)
		return fmt.Errorf("%w: %w", ErrStopped, u.cause())
	}
	if err := ctx.Err(); err != nil {
		u.refuse(loc, err)
		return err
	}
	multiline, reason := checkRecord(rec)
	if reason != "" {
		u.Reject(loc, reason)
		return nil
	}
	b := u.cur
	if b != nil && (len(b.locs) >= u.opt.BatchRecords || len(b.buf)+len(rec)+1 > u.opt.BatchBytes || b.array != multiline) {
		if err := u.flush(ctx); err != nil {
			u.refuse(loc, err)
			return err
		}
		b = nil
	}
	if b == nil {
		b = u.newBatch(multiline)
		u.cur = b
	}
	if b.array {
		if len(b.locs) > 0 {
			b.buf = append(b.buf, ',')
		}
		b.buf = append(b.buf, rec...)
	} else {
		b.buf = append(b.buf, rec...)
		b.buf = append(b.buf, '\n')
	}
	b.locs = append(b.locs, loc)
	u.seq++
	return nil
}

// Reject counts a record the caller could not send (one that could not be
// read from its input) as rejected, listed like the server's rejections.
func (u *Uploader) Reject(loc Location, reason string) {
	u.st.rejected.Add(1)
	u.mu.Lock()
	// Ordered before the record that will be added next (see sendBatch).
	u.addRejection(Rejection{Location: loc, Error: reason, Client: true, order: 2 * u.seq})
	u.mu.Unlock()
}

// checkRecord says why a record cannot be sent as it is ("" when it can),
// and whether it has a line break, so that it must go in a JSON array
// batch: in NDJSON it would shift the server's batch indexes. A leading '['
// would make the server read an NDJSON batch as a JSON array. A record for
// a JSON array batch is checked for valid JSON, since the server stops
// reading an array at its first syntax error; NDJSON records are left for
// the server to judge one by one.
func checkRecord(rec []byte) (multiline bool, reason string) {
	switch {
	case len(rec) > MaxRecordBytes:
		return false, tooBig(len(rec))
	case len(rec) == 0:
		return false, "empty record"
	case rec[0] != '{':
		return false, "not a JSON object"
	case bytes.IndexByte(rec, '\n') < 0:
		return false, ""
	}
	if !json.Valid(rec) {
		// Unmarshal says what is wrong; only done for invalid records.
		err := json.Unmarshal(rec, new(json.RawMessage))
		return true, fmt.Sprintf("invalid JSON: %v", err)
	}
	return true, ""
}

// Upload reads the records of r (NDJSON, a JSON array or a Purview CSV
// export, optionally compressed; see RecordReader) and adds them, naming
// them after name. Records that cannot be read are rejected and reading
// goes on; an error means the rest of r was not read or sent.
func (u *Uploader) Upload(ctx context.Context, name string, r io.Reader) error {
	rr, err := NewRecordReader(r)
	if err != nil {
		return fmt.Errorf("%s: %w", Location{File: name}, err)
	}
	defer rr.Close()
	for {
		rec, err := rr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", Location{File: name}, err)
		}
		loc := Location{File: name, Line: rec.Line}
		if rec.Problem != "" {
			u.Reject(loc, rec.Problem)
			continue
		}
		if err := u.Add(ctx, rec.Data, loc); err != nil {
			return err
		}
	}
}

// Close sends what is queued, waits for every request and returns the
// summary. The error is not nil when any record was not delivered.
func (u *Uploader) Close(ctx context.Context) (Summary, error) {
	if u.cur != nil && len(u.cur.locs) > 0 {
		if u.stopped.Load() {
			u.fail(u.cur, ErrStopped)
		} else if err := u.flush(ctx); err != nil {
			u.fail(u.cur, err)
		}
		u.cur = nil
	}
	if u.started {
		close(u.work)
		u.wg.Wait()
		u.started = false
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	sum := Summary{
		Stats:      u.Stats(),
		Rejections: append([]Rejection(nil), u.rejections...),
		Failures:   append([]Failure(nil), u.failures...),
		StoppedAt:  u.stoppedAt,
	}
	switch {
	case sum.Failed == 1:
		return sum, fmt.Errorf("1 record not delivered: %w", u.firstErr)
	case sum.Failed > 0:
		return sum, fmt.Errorf("%d records not delivered: %w", sum.Failed, u.firstErr)
	case sum.StoppedAt != nil:
		return sum, fmt.Errorf("stopped at %s: %w", sum.StoppedAt, u.firstErr)
	}
	return sum, nil
}

// Stats returns the running counts.
func (u *Uploader) Stats() Stats {
	return Stats{
		Records:   u.st.records.Load(),
		Bytes:     u.st.bytes.Load(),
		Accepted:  u.st.accepted.Load(),
		Duplicate: u.st.duplicate.Load(),
		Rejected:  u.st.rejected.Load(),
		Retries:   u.st.retries.Load(),
		Failed:    u.st.failed.Load(),
	}
}

func (u *Uploader) newBatch(array bool) *batch {
	var b *batch
	select {
	case b = <-u.free:
		b.buf, b.locs = b.buf[:0], b.locs[:0]
	default:
		b = &batch{buf: make([]byte, 0, u.opt.BatchBytes)}
	}
	b.seq0 = u.seq
	b.array = array
	if array {
		b.buf = append(b.buf, '[')
	}
	return b
}

// flush hands the current batch to a sender.
func (u *Uploader) flush(ctx context.Context) error {
	b := u.cur
	if !u.started {
		u.started = true
		for range u.opt.Concurrency {
			u.wg.Add(1)
			go u.send()
		}
	}
	b.ctx = ctx
	select {
	case u.work <- b:
		u.cur = nil
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (u *Uploader) send() {
	defer u.wg.Done()
	for b := range u.work {
		u.sendBatch(b)
		select {
		case u.free <- b:
		default:
		}
	}
}

func (u *Uploader) sendBatch(b *batch) {
	if u.stopped.Load() {
		u.fail(b, ErrStopped)
		return
	}
	body, contentType := b.buf, contentNDJSON
	if b.array {
		body, contentType = append(b.buf, ']'), contentJSON
	}
	wire, err := u.c.encode(body, b.wire)
	if err != nil {
		u.fail(b, err)
		return
	}
	b.wire = wire
	res, err := u.c.ingest(b.ctx, u.tenant, wire, contentType, func(err error, wait time.Duration) {
		u.st.retries.Add(1)
		if u.opt.OnRetry != nil {
			u.opt.OnRetry(err, wait)
		}
	})
	if err != nil {
		u.fail(b, err)
		return
	}
	n := len(b.locs)
	u.st.records.Add(int64(n))
	u.st.bytes.Add(int64(len(body)))
	u.st.accepted.Add(int64(res.Accepted))
	u.st.duplicate.Add(int64(res.Duplicate))
	u.st.rejected.Add(int64(res.Rejected))
	u.mu.Lock()
	defer u.mu.Unlock()
	if got := res.Accepted + res.Duplicate + res.Rejected; got != n {
		// Records the answer does not account for may be lost: say so
		// rather than trust the batch, but go on, as this is no reason
		// to think the next batch will fare the same.
		missing := max(n-got, 0)
		err := fmt.Errorf("the server accounted for %d of the %d records sent", got, n)
		u.st.failed.Add(int64(missing))
		u.addFailure(Failure{Records: missing, Ranges: ranges(b.locs), Err: err, seq: b.seq0})
		if u.firstErr == nil {
			u.firstErr = err
		}
	}
	for _, e := range res.Errors {
		// Record k of the input has order 2k+1; rejections by the
		// client between records k-1 and k have 2k.
		r := Rejection{ID: e.ID, Field: e.Field, Error: e.Error, order: 2*(b.seq0+int64(e.Index)) + 1}
		if e.Index >= 0 && e.Index < len(b.locs) {
			r.Location = b.locs[e.Index]
		} else {
			// The server named a record the batch does not have; say
			// which batch, at least.
			r.Location = b.locs[0]
			r.Error = fmt.Sprintf("(batch index %d) %s", e.Index, e.Error)
		}
		u.addRejection(r)
	}
}

// addRejection keeps the earliest ListRejections rejections by input
// order, so the listing does not depend on which batch answered first.
// u.mu must be held.
func (u *Uploader) addRejection(r Rejection) {
	i := sort.Search(len(u.rejections), func(i int) bool { return u.rejections[i].order > r.order })
	if i >= u.opt.ListRejections {
		return
	}
	u.rejections = append(u.rejections, Rejection{})
	copy(u.rejections[i+1:], u.rejections[i:])
	u.rejections[i] = r
	if len(u.rejections) > u.opt.ListRejections {
		u.rejections = u.rejections[:u.opt.ListRejections]
	}
}

// fail records a batch as not delivered and stops the upload: whatever made
// one batch fail after its retries (a bad token, an unknown tenant, a
// server that stays down) would make the next ones fail too.
func (u *Uploader) fail(b *batch, err error) {
	u.st.failed.Add(int64(len(b.locs)))
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.firstErr == nil && !errors.Is(err, ErrStopped) {
		u.firstErr = err
	}
	u.stopped.Store(true) // after firstErr is set: Add reports it
	u.addFailure(Failure{Records: len(b.locs), Ranges: ranges(b.locs), Err: err, seq: b.seq0})
}

// addFailure lists a failure in input order, whichever sender failed
// first. u.mu must be held.
func (u *Uploader) addFailure(f Failure) {
	u.failures = append(u.failures, f)
	sort.SliceStable(u.failures, func(i, j int) bool { return u.failures[i].seq < u.failures[j].seq })
}

// refuse notes the first record Add did not take, and why.
func (u *Uploader) refuse(loc Location, err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stoppedAt == nil {
		l := loc
		u.stoppedAt = &l
	}
	if u.firstErr == nil {
		u.firstErr = err
	}
}

// cause is the error that stopped the upload.
func (u *Uploader) cause() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.firstErr
}

// ranges turns the locations of a batch into runs of records of one file
// (lines skipped between them were blank or rejected before sending).
func ranges(locs []Location) []Range {
	var out []Range
	for _, l := range locs {
		if n := len(out); n > 0 && out[n-1].File == l.File && l.Line >= out[n-1].Last {
			out[n-1].Last = l.Line
			continue
		}
		out = append(out, Range{File: l.File, First: l.Line, Last: l.Line})
	}
	return out
}

// FormatRanges lists ranges compactly: "a.ndjson:1-5000, b.ndjson:1-20".
func FormatRanges(rs []Range) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ", ")
}
