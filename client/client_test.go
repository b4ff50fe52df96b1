package client_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/custos-audit/custos/client"
	"github.com/custos-audit/custos/client/clienttest"
)

// newTest starts a fake server with tenant "acme" and returns a client
// with the admin token and fast retries.
func newTest(t *testing.T) (*clienttest.Server, *client.Client) {
	t.Helper()
	srv := clienttest.NewServer()
	t.Cleanup(srv.Close)
	srv.AddTenant("acme")
	c := client.New(srv.URL, srv.AdminToken)
	c.MinBackoff, c.MaxBackoff = time.Millisecond, 5*time.Millisecond
	return srv, c
}

func TestTenantsAndTokens(t *testing.T) {
	_, c := newTest(t)
	ctx := context.Background()

	tn, err := c.CreateTenant(ctx, "contoso", "Contoso Ltd")
	if err != nil {
		t.Fatal(err)
	}
	if tn.ID != "contoso" || tn.Name != "Contoso Ltd" || tn.Created.IsZero() {
		t.Errorf("created tenant = %+v", tn)
	}
	_, err = c.CreateTenant(ctx, "contoso", "again")
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Errorf("creating it again: err = %v, want a 409 APIError", err)
	}
	list, err := c.ListTenants(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("ListTenants = %v, %v; want acme and contoso", list, err)
	}

	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tok, err := c.CreateToken(ctx, client.TokenRequest{Tenant: "contoso", Role: "ingest", Name: "laptop", Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Secret == "" || tok.ID == "" || tok.Tenant != "contoso" || tok.Role != "ingest" || tok.Expires == nil || !tok.Expires.Equal(exp) {
		t.Errorf("created token = %+v", tok)
	}
	toks, err := c.ListTokens(ctx, "contoso")
	if err != nil || len(toks) != 1 || toks[0].ID != tok.ID {
		t.Fatalf("ListTokens(contoso) = %+v, %v", toks, err)
	}
	// The new token works for ingest, and stops working once revoked.
	ic := client.New(c.Server(), tok.Secret)
	if _, err := ic.IngestBatch(ctx, "contoso", []byte(`{"Id":"1","CreationTime":"2024-01-01T00:00:00"}`+"\n")); err != nil {
		t.Fatalf("ingest with the new token: %v", err)
	}
	if err := c.RevokeToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	_, err = ic.IngestBatch(ctx, "contoso", []byte(`{"Id":"2","CreationTime":"2024-01-01T00:00:00"}`+"\n"))
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Errorf("ingest with a revoked token: err = %v, want a 401 APIError", err)
	}
	if err := c.RevokeToken(ctx, "nope"); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("revoking an unknown token: err = %v, want 404", err)
	}
}

func TestIngestBatchEncodings(t *testing.T) {
	for _, enc := range []string{"zstd", "gzip", "identity"} {
		t.Run(enc, func(t *testing.T) {
			srv, c := newTest(t)
			c.Encoding = enc
			body := []byte(`{"Id":"a","CreationTime":"2024-01-01T00:00:00"}` + "\n" +
				`{"Id":"b","CreationTime":"yesterday"}` + "\n" +
				`{"Id":"a","CreationTime":"2024-01-01T00:00:00"}` + "\n")
			res, err := c.IngestBatch(context.Background(), "acme", body)
			if err != nil {
				t.Fatal(err)
			}
			if res.Accepted != 1 || res.Duplicate != 1 || res.Rejected != 1 || len(res.Errors) != 1 || res.Errors[0].Index != 1 || res.Errors[0].Field != "CreationTime" {
				t.Errorf("result = %+v", res)
			}
			want := enc
			if enc == "identity" {
				want = ""
			}
			if got := srv.Encodings(); len(got) != 1 || got[0] != want {
				t.Errorf("Content-Encoding sent = %q, want %q", got, want)
			}
		})
	}
}

func TestIngestRetries(t *testing.T) {
	rec := []byte(`{"Id":"x","CreationTime":"2024-01-01T00:00:00"}` + "\n")
	tests := []struct {
		name      string
		faults    []clienttest.Fault
		attempts  int
		wantCalls int
		wantErr   int // APIError status; 0 for success, -1 for another error
	}{
		{"429s then success", []clienttest.Fault{{Status: 429, RetryAfter: "0"}, {Status: 429, RetryAfter: "0"}, {Status: 429, RetryAfter: "0"}}, 8, 4, 0},
		{"503 and 500 then success", []clienttest.Fault{{Status: 503, RetryAfter: "0"}, {Status: 500}}, 8, 3, 0},
		{"dropped connection then success", []clienttest.Fault{{Drop: true}}, 8, 2, 0},
		{"400 is not retried", []clienttest.Fault{{Status: 400, Message: "bad"}}, 8, 1, 400},
		{"413 is not retried", []clienttest.Fault{{Status: 413}}, 8, 1, 413},
		{"attempts are bounded", []clienttest.Fault{{Status: 503}, {Status: 503}, {Status: 503}, {Status: 503}}, 3, 3, 503},
		{"dropped every time", []clienttest.Fault{{Drop: true}, {Drop: true}}, 2, 2, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, c := newTest(t)
			c.Attempts = tt.attempts
			srv.Inject(tt.faults...)
			res, err := c.IngestBatch(context.Background(), "acme", rec)
			if got := srv.IngestCalls(); got != tt.wantCalls {
				t.Errorf("requests = %d, want %d", got, tt.wantCalls)
			}
			var ae *client.APIError
			switch {
			case tt.wantErr == 0:
				if err != nil || res.Accepted != 1 {
					t.Errorf("= %+v, %v; want 1 accepted", res, err)
				}
			case tt.wantErr < 0:
				if err == nil || errors.As(err, &ae) {
					t.Errorf("err = %v, want a transport error", err)
				}
			default:
				if !errors.As(err, &ae) || ae.Status != tt.wantErr {
					t.Errorf("err = %v, want an APIError %d", err, tt.wantErr)
				}
			}
		})
	}
}

func TestRetryAfterHonoured(t *testing.T) {
	srv, c := newTest(t)
	srv.Inject(clienttest.Fault{Status: 429, RetryAfter: "1"})
	start := time.Now()
	if _, err := c.IngestBatch(context.Background(), "acme", []byte(`{"Id":"x","CreationTime":"2024-01-01T00:00:00"}`)); err != nil {
		t.Fatal(err)
	}
	// The backoff alone would be a few milliseconds.
	if el := time.Since(start); el < time.Second {
		t.Errorf("retried after %v, before the server's Retry-After of 1s", el)
	}
}

func TestIngestCancelled(t *testing.T) {
	srv, c := newTest(t)
	c.MinBackoff, c.MaxBackoff = time.Hour, time.Hour
	srv.Inject(clienttest.Fault{Status: 503})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.IngestBatch(ctx, "acme", []byte(`{"Id":"x","CreationTime":"2024-01-01T00:00:00"}`))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want the context's deadline", err)
	}
}

func TestWrongTokenAndTenant(t *testing.T) {
	srv, _ := newTest(t)
	ctx := context.Background()
	var ae *client.APIError
	_, err := client.New(srv.URL, "custos_bad_token").ListTenants(ctx)
	if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || ae.Message == "" {
		t.Errorf("bad token: err = %v, want 401 with a message", err)
	}
	_, err = client.New(srv.URL, srv.AdminToken).IngestBatch(ctx, "nope", []byte(`{"Id":"x"}`))
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || srv.IngestCalls() != 1 {
		t.Errorf("unknown tenant: err = %v after %d requests, want one 404", err, srv.IngestCalls())
	}
}

func TestNormalizeServer(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:8470":          "http://127.0.0.1:8470",
		"https://custos.example/": "https://custos.example",
		" http://h:1// ":          "http://h:1",
	} {
		if got := client.NormalizeServer(in); got != want {
			t.Errorf("NormalizeServer(%q) = %q, want %q", in, got, want)
		}
	}
}
