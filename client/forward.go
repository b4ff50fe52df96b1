package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// SequencedBatch is one batch of a forwarder: NDJSON records plus the
// source name and the batch's sequence number, which let the server notice
// a gap in what a source delivered.
type SequencedBatch struct {
	Tenant   string
	Source   string // X-Custos-Source
	Sequence uint64 // X-Custos-Sequence: 1, 2, 3… per source, kept across retries
	NDJSON   []byte // one record per line
}

// SendSequenced makes one attempt at delivering b, compressed with
// c.Encoding. It does not retry: a forwarder keeps batches in its own disk
// queue and decides itself how long to keep trying, which for it is
// "until delivered", not c.Attempts. The error is an *APIError for an
// error answer; Retryable and Backoff classify it.
func (c *Client) SendSequenced(ctx context.Context, b SequencedBatch) (IngestResult, error) {
	body, err := c.encode(b.NDJSON, nil)
	if err != nil {
		return IngestResult{}, err
	}
	path := tenantPath(b.Tenant, "/records")
	req, err := c.newRequest(ctx, http.MethodPost, path, bytes.NewReader(body))
	if err != nil {
		return IngestResult{}, err
	}
	req.Header.Set("Content-Type", contentNDJSON)
	if enc := c.encoding(); enc != "identity" {
		req.Header.Set("Content-Encoding", enc)
	}
	req.Header.Set("X-Custos-Source", b.Source)
	req.Header.Set("X-Custos-Sequence", strconv.FormatUint(b.Sequence, 10))
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return IngestResult{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return IngestResult{}, readAPIError(resp)
	}
	var res IngestResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		// Stored or not, the batch can be sent again: the server drops
		// records it already holds as duplicates.
		return IngestResult{}, fmt.Errorf("POST %s: read answer: %w", path, err)
	}
	return res, nil
}

// Heartbeat posts a source's heartbeat body (JSON) to
// /api/v1/tenants/{tenant}/sources/{source}/heartbeat, once.
func (c *Client) Heartbeat(ctx context.Context, tenant, source string, body any) error {
	return c.do(ctx, http.MethodPost,
		tenantPath(tenant, "/sources/"+url.PathEscape(source)+"/heartbeat"), body, nil)
}

// Retryable tells whether the same request may succeed later: the server's
// "busy" and "unavailable" answers, other 5xx, and transport failures.
func Retryable(err error) bool { return retryable(err) }

// Backoff is the wait before retry number attempt (1 for the first):
// exponential between c.MinBackoff and c.MaxBackoff with jitter, never
// shorter than the server's Retry-After.
func (c *Client) Backoff(attempt int, err error) time.Duration { return c.backoff(attempt, err) }
