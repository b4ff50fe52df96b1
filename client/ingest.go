package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// IngestResult is the server's answer to one batch.
type IngestResult struct {
	Accepted        int           `json:"accepted"`
	Duplicate       int           `json:"duplicate"`
	Rejected        int           `json:"rejected"`
	Errors          []RecordError `json:"errors,omitempty"`
	ErrorsTruncated bool          `json:"errors_truncated,omitempty"`
}

// RecordError is why the server rejected one record of a batch.
type RecordError struct {
	Index int    `json:"index"` // 0-based position in the batch
	Line  int    `json:"line,omitempty"`
	ID    string `json:"id,omitempty"`
	Field string `json:"field,omitempty"`
	Error string `json:"error"`
}

// The Content-Types of ingest bodies: NDJSON is always read line by line,
// a JSON array element by element, each element's bytes kept as they are.
const (
	contentNDJSON = "application/x-ndjson"
	contentJSON   = "application/json"
)

// maxRetryAfter caps how long a Retry-After can park a request, so a
// misconfigured proxy cannot stall an upload for hours.
const maxRetryAfter = 5 * time.Minute

// IngestBatch sends one NDJSON batch (one record per line) to the tenant,
// compressed with c.Encoding, retrying as described in the package comment.
// The error is an *APIError for a final error answer.
func (c *Client) IngestBatch(ctx context.Context, tenant string, ndjson []byte) (IngestResult, error) {
	body, err := c.encode(ndjson, nil)
	if err != nil {
		return IngestResult{}, err
	}
	return c.ingest(ctx, tenant, body, contentNDJSON, nil)
}

// ingest posts an already encoded body of the given Content-Type; onRetry,
// when not nil, is told of every retry before its wait.
func (c *Client) ingest(ctx context.Context, tenant string, body []byte, contentType string, onRetry func(err error, wait time.Duration)) (IngestResult, error) {
	path := "/api/v1/tenants/" + url.PathEscape(tenant) + "/records"
	attempts := max(c.Attempts, 1)
	for attempt := 1; ; attempt++ {
		res, err := c.ingestOnce(ctx, path, body, contentType)
		if err == nil {
			return res, nil
		}
		if ctx.Err() != nil {
			return IngestResult{}, ctx.Err()
		}
		if !retryable(err) || attempt >= attempts {
			if attempt > 1 {
				err = fmt.Errorf("after %d attempts: %w", attempt, err)
			}
			return IngestResult{}, err
		}
		wait := c.backoff(attempt, err)
		if onRetry != nil {
			onRetry(err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return IngestResult{}, ctx.Err()
		case <-t.C:
		}
	}
}

func (c *Client) ingestOnce(ctx context.Context, path string, body []byte, contentType string) (IngestResult, error) {
	req, err := c.newRequest(ctx, http.MethodPost, path, bytes.NewReader(body))
	if err != nil {
		return IngestResult{}, err
	}
	req.Header.Set("Content-Type", contentType)
	if enc := c.encoding(); enc != "identity" {
		req.Header.Set("Content-Encoding", enc)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return IngestResult{}, err // a *url.Error: it names the method and URL
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return IngestResult{}, readAPIError(resp)
	}
	var res IngestResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		// The batch may or may not be stored; a retry is harmless since
		// the server drops what it already has as duplicates.
		return IngestResult{}, fmt.Errorf("POST %s: read answer: %w", path, err)
	}
	return res, nil
}

// retryable tells errors after which the same request may succeed: the
// server's "busy" and "unavailable" answers, other server errors, and
// transport failures. Other client errors (4xx) would fail again.
func retryable(err error) bool {
	if errors.Is(err, context.Canceled) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusTooManyRequests || ae.Status >= 500
	}
	var ee *encodeError
	return !errors.As(err, &ee)
}

// backoff is the wait before retry number attempt (1 for the first): the
// exponential step with "equal jitter" (half fixed, half random) so that
// concurrent uploaders spread out, but never less than a Retry-After.
func (c *Client) backoff(attempt int, err error) time.Duration {
	lo, hi := c.MinBackoff, c.MaxBackoff
	if lo <= 0 {
		lo = time.Millisecond
	}
	if hi < lo {
		hi = lo
	}
	d := lo
	for i := 1; i < attempt && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	d = d/2 + rand.N(d/2+1)
	var ae *APIError
	if errors.As(err, &ae) && ae.RetryAfter > 0 {
		ra := min(ae.RetryAfter, maxRetryAfter)
		// Spread the retries of concurrent requests a little past the
		// instant the server named, rather than all at once.
		d = max(d, ra+rand.N(ra/8+1))
	}
	return d
}

// encodeError is a failure to compress a batch: a bug or a bad setting,
// never worth retrying.
type encodeError struct{ err error }

func (e *encodeError) Error() string { return "encode batch: " + e.err.Error() }
func (e *encodeError) Unwrap() error { return e.err }

func (c *Client) encoding() string {
	switch e := strings.ToLower(strings.TrimSpace(c.Encoding)); e {
	case "", "none":
		return "identity"
	default:
		return e
	}
}

type zstdEncoder interface {
	EncodeAll(src, dst []byte) []byte
}

// encode compresses src with c.Encoding, appending to dst[:0].
func (c *Client) encode(src, dst []byte) ([]byte, error) {
	switch enc := c.encoding(); enc {
	case "identity":
		return append(dst[:0], src...), nil
	case "zstd":
		c.zstdOnce.Do(func() {
			// The fastest level: batches are recompressed by nobody, and
			// on two cores the CPU is better spent reading input.
			c.zstd, c.zstdErr = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithLowerEncoderMem(true))
		})
		if c.zstdErr != nil {
			return nil, &encodeError{c.zstdErr}
		}
		return c.zstd.EncodeAll(src, dst[:0]), nil
	case "gzip":
		buf := bytes.NewBuffer(dst[:0])
		zw, _ := c.gzipPool.Get().(*gzip.Writer)
		if zw == nil {
			var err error
			if zw, err = gzip.NewWriterLevel(buf, gzip.BestSpeed); err != nil {
				return nil, &encodeError{err}
			}
		} else {
			zw.Reset(buf)
		}
		if _, err := zw.Write(src); err != nil {
			return nil, &encodeError{err}
		}
		if err := zw.Close(); err != nil {
			return nil, &encodeError{err}
		}
		c.gzipPool.Put(zw)
		return buf.Bytes(), nil
	default:
		return nil, &encodeError{fmt.Errorf("unknown encoding %q (want zstd, gzip or none)", c.Encoding)}
	}
}
