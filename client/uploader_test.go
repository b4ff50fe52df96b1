package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/client"
	"github.com/custos-audit/custos/client/clienttest"
	"github.com/custos-audit/custos/ingest"
)

// TestUploadFormatsDeliverTheSameRecords sends the same records as NDJSON,
// a pretty-printed JSON array and both Purview CSV layouts, compressed or
// not, and checks that the server stored exactly those records each time:
// the array's elements byte for byte as they are in the file.
func TestUploadFormatsDeliverTheSameRecords(t *testing.T) {
	recs := fixtureRecords(t, 1234)
	sorted := func(recs [][]byte) []string {
		out := make([]string, len(recs))
		for i, r := range recs {
			out[i] = string(r)
		}
		slices.Sort(out)
		return out
	}
	inputs := map[string]struct {
		in   []byte
		want []string
	}{
		"ndjson":      {toNDJSON(recs), sorted(recs)},
		"array":       {toArray(t, recs), sorted(indented(t, recs))},
		"csv-current": {toCSV(t, recs, false), sorted(recs)},
		"csv-old":     {toCSV(t, recs, true), sorted(recs)},
	}
	for name, input := range inputs {
		in, want := input.in, input.want
		for _, comp := range []string{"none", "gzip", "zstd"} {
			for _, enc := range []string{"zstd", "gzip"} {
				t.Run(fmt.Sprintf("%s/%s/send-%s", name, comp, enc), func(t *testing.T) {
					srv, c := newTest(t)
					c.Encoding = enc
					up := c.NewUploader("acme", client.UploadOptions{BatchRecords: 100, Concurrency: 3})
					if err := up.Upload(context.Background(), name, bytes.NewReader(compress(t, comp, in))); err != nil {
						t.Fatal(err)
					}
					sum, err := up.Close(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					if sum.Accepted != int64(len(recs)) || sum.Records != int64(len(recs)) || sum.Rejected != 0 || sum.Duplicate != 0 {
						t.Errorf("summary = %+v", sum.Stats)
					}
					got := make([]string, 0, len(recs))
					for _, r := range srv.Records("acme") {
						got = append(got, string(r))
					}
					slices.Sort(got)
					if !slices.Equal(got, want) {
						t.Errorf("stored %d records that differ from the %d sent", len(got), len(want))
					}
					if calls := srv.IngestCalls(); calls != 13 {
						t.Errorf("%d requests, want 13 batches of at most 100", calls)
					}
				})
			}
		}
	}
}

// TestUploadRejectionLocations checks that rejections by the server (by
// batch index) and by the client land on the right file and line, across
// batches and files, listed in input order.
func TestUploadRejectionLocations(t *testing.T) {
	good := func(id int) string { return fmt.Sprintf(`{"Id":"r%d","CreationTime":"2024-01-01T00:00:00"}`, id) }
	var nd strings.Builder
	line := 0
	want := []string{}
	for i := range 40 {
		switch {
		case i == 5:
			nd.WriteString(`{"Id":"bad5","CreationTime":"yesterday"}` + "\n")
			want = append(want, fmt.Sprintf("a.ndjson:%d: CreationTime: unparsable time \"yesterday\" [bad5 CreationTime]", line+1))
		case i == 17:
			nd.WriteString(`{"CreationTime":"2024-01-01T00:00:00"}` + "\n")
			want = append(want, fmt.Sprintf("a.ndjson:%d: Id: missing [ Id]", line+1))
		case i == 18:
			nd.WriteString("not json at all\n")
			want = append(want, fmt.Sprintf("a.ndjson:%d: not a JSON object (client)", line+1))
		case i == 30:
			nd.WriteString(`{"Id": broken}` + "\n")
			want = append(want, fmt.Sprintf("a.ndjson:%d: invalid JSON: invalid character 'b' looking for beginning of value", line+1))
		default:
			nd.WriteString(good(i) + "\n")
		}
		line++
		if i%6 == 0 {
			nd.WriteString("\n")
			line++
		}
	}
	csvIn := "CreationDate,UserIds,Operations,AuditData\n" +
		`d,u,o,"{""Id"":""c1"",` + "\n" + `""CreationTime"":""2024-01-01T00:00:00""}"` + "\n" + // lines 2-3
		`d,u,o,"{""Id"":""c2"",""CreationTime"":""tomorrow""}"` + "\n" + // line 4
		`d,u"x,o,"{""Id"":""c3""}"` + "\n" + // line 5
		`d,u,o,"{""Id"":""c4"",""CreationTime"":""2024-01-01T00:00:00""}"` + "\n"
	want = append(want,
		`b.csv:4: CreationTime: unparsable time "tomorrow" [c2 CreationTime]`,
		`b.csv:5: invalid CSV: a quote inside an unquoted field (column 2) (client)`)
	arr := "[\n" + good(100) + ",\n{\n \"Id\": \"a2\",\n \"CreationTime\": 5\n}\n]"
	want = append(want, `c.json:3: CreationTime: unparsable time "5" [a2 CreationTime]`)

	srv, c := newTest(t)
	up := c.NewUploader("acme", client.UploadOptions{BatchRecords: 7, Concurrency: 4, ListRejections: 100})
	ctx := context.Background()
	for _, f := range []struct{ name, in string }{{"a.ndjson", nd.String()}, {"b.csv", csvIn}, {"c.json", arr}} {
		if err := up.Upload(ctx, f.name, strings.NewReader(f.in)); err != nil {
			t.Fatal(err)
		}
	}
	sum, err := up.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range sum.Rejections {
		s := fmt.Sprintf("%s: %s", r.Location, r.Error)
		if r.Client {
			s += " (client)"
		} else if r.ID != "" || r.Field != "" {
			s += fmt.Sprintf(" [%s %s]", r.ID, r.Field)
		}
		got = append(got, s)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rejections:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if sum.Rejected != int64(len(want)) || sum.Accepted != int64(len(srv.Records("acme"))) || sum.Accepted != 36+2+1 {
		t.Errorf("counts = %+v", sum.Stats)
	}

	// With a short list, the earliest rejections are kept whatever order
	// the batches were answered in.
	_, c = newTest(t)
	up = c.NewUploader("acme", client.UploadOptions{BatchRecords: 3, Concurrency: 4, ListRejections: 2})
	up.Upload(ctx, "a.ndjson", strings.NewReader(nd.String()))
	sum, _ = up.Close(ctx)
	if len(sum.Rejections) != 2 || sum.Rejections[0].Location.String() != strings.SplitN(want[0], ": ", 2)[0] ||
		sum.Rejections[1].Location.String() != strings.SplitN(want[1], ": ", 2)[0] || sum.Rejected != 4 {
		t.Errorf("short list = %+v, %d rejected", sum.Rejections, sum.Rejected)
	}
}

func TestUploadRetriesThenSucceeds(t *testing.T) {
	srv, c := newTest(t)
	srv.Inject(clienttest.Fault{Status: 429, RetryAfter: "0"}, clienttest.Fault{Status: 429, RetryAfter: "0"}, clienttest.Fault{Status: 503, RetryAfter: "0"}, clienttest.Fault{Drop: true})
	var retried atomic.Int64
	up := c.NewUploader("acme", client.UploadOptions{BatchRecords: 50, OnRetry: func(error, time.Duration) { retried.Add(1) }})
	recs := fixtureRecords(t, 500)
	if err := up.Upload(context.Background(), "x", bytes.NewReader(toNDJSON(recs))); err != nil {
		t.Fatal(err)
	}
	sum, err := up.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Accepted != 500 || len(srv.Records("acme")) != 500 || sum.Retries != 4 || retried.Load() != 4 || srv.IngestCalls() != 14 {
		t.Errorf("summary %+v, %d stored, %d retry callbacks, %d requests", sum.Stats, len(srv.Records("acme")), retried.Load(), srv.IngestCalls())
	}
}

// TestUploadFailureNamesWhatWasNotDelivered makes the second batch fail
// for good and checks that every record is accounted for: delivered, in a
// failed batch, or at or after the point where reading stopped.
func TestUploadFailureNamesWhatWasNotDelivered(t *testing.T) {
	for _, f := range []clienttest.Fault{{Status: 503, RetryAfter: "0"}, {Status: 400, Message: "nope"}} {
		t.Run(fmt.Sprint(f.Status), func(t *testing.T) {
			srv, c := newTest(t)
			c.Attempts = 3
			srv.Inject(clienttest.Fault{}, f, f, f)
			up := c.NewUploader("acme", client.UploadOptions{BatchRecords: 10, Concurrency: 1})
			recs := fixtureRecords(t, 100)
			var in bytes.Buffer
			for _, r := range recs {
				in.Write(r)
				in.WriteByte('\n')
			}
			err := up.Upload(context.Background(), "in.ndjson", &in)
			if !errors.Is(err, client.ErrStopped) {
				t.Errorf("Upload: err = %v, want ErrStopped", err)
			}
			sum, err := up.Close(context.Background())
			var ae *client.APIError
			if !errors.As(err, &ae) || ae.Status != f.Status {
				t.Fatalf("Close: err = %v, want the %d", err, f.Status)
			}
			if len(sum.Failures) == 0 || client.FormatRanges(sum.Failures[0].Ranges) != "in.ndjson:11-20" || !errors.As(sum.Failures[0].Err, &ae) {
				t.Fatalf("failures = %+v", sum.Failures)
			}
			for _, fl := range sum.Failures[1:] {
				if !errors.Is(fl.Err, client.ErrStopped) {
					t.Errorf("later failure %+v: want ErrStopped", fl)
				}
			}
			if sum.StoppedAt == nil || sum.StoppedAt.File != "in.ndjson" {
				t.Fatalf("StoppedAt = %v", sum.StoppedAt)
			}
			notRead := int64(len(recs) - sum.StoppedAt.Line + 1)
			if sum.Records != 10 || len(srv.Records("acme")) != 10 || sum.Records+sum.Failed+notRead != int64(len(recs)) {
				t.Errorf("delivered %d, failed %d, not read from line %d: does not add up to %d", sum.Records, sum.Failed, sum.StoppedAt.Line, len(recs))
			}
			wantCalls := 1 + 3
			if f.Status == http.StatusBadRequest {
				wantCalls = 1 + 1
			}
			if got := srv.IngestCalls(); got != wantCalls {
				t.Errorf("%d requests, want %d", got, wantCalls)
			}
		})
	}
}

func TestUploadCancelled(t *testing.T) {
	srv, c := newTest(t)
	c.MinBackoff, c.MaxBackoff = time.Hour, time.Hour
	srv.Inject(clienttest.Fault{Status: 503})
	ctx, cancel := context.WithCancel(context.Background())
	up := c.NewUploader("acme", client.UploadOptions{BatchRecords: 10, Concurrency: 1})
	go func() {
		for up.Stats().Retries == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	err := up.Upload(ctx, "in", bytes.NewReader(toNDJSON(fixtureRecords(t, 100))))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Upload: err = %v, want cancelled", err)
	}
	sum, err := up.Close(context.Background())
	if err == nil || sum.Failed == 0 || sum.StoppedAt == nil {
		t.Errorf("Close = %+v, %v; want failures and a stop", sum, err)
	}
}

func TestAddChecksRecords(t *testing.T) {
	srv, c := newTest(t)
	up := c.NewUploader("acme", client.UploadOptions{})
	ctx := context.Background()
	multi := "{\"Id\":\"2\",\n\"CreationTime\":\"2024-01-01T00:00:00\"}"
	up.Add(ctx, []byte(`{"Id":"1","CreationTime":"2024-01-01T00:00:00"}`), client.Location{File: "gen", Line: 1})
	up.Add(ctx, []byte(multi), client.Location{File: "gen", Line: 2})
	up.Add(ctx, []byte(`[{"Id":"3"}]`), client.Location{File: "gen", Line: 3})
	up.Add(ctx, []byte(`{"Id":"4","x":"`+strings.Repeat("y", client.MaxRecordBytes)+`"}`), client.Location{File: "gen", Line: 4})
	up.Add(ctx, []byte("{\"Id\":\"5\",\n\"CreationTime\":tru}"), client.Location{File: "gen", Line: 5})
	up.Add(ctx, []byte("{\"Id\":\"6\"}\n{\"Id\":\"7\"}"), client.Location{File: "gen", Line: 6})
	sum, err := up.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A record with a line break is sent as it is; one that is not valid
	// JSON is refused before it can cut a JSON array batch short.
	// The two valid records go in different batches (NDJSON and a JSON
	// array), which may arrive in either order.
	got := srv.Records("acme")
	if sum.Accepted != 2 || sum.Rejected != 4 || len(got) != 2 || !slices.ContainsFunc(got, func(r []byte) bool { return string(r) == multi }) {
		t.Errorf("summary = %+v, stored %q", sum.Stats, got)
	}
	for i, want := range []string{"not a JSON object", "over the 1048576 byte limit",
		"invalid JSON: invalid character '}' in literal true", "invalid JSON: invalid character '{' after top-level value"} {
		if !strings.Contains(sum.Rejections[i].Error, want) || sum.Rejections[i].Line != i+3 || !sum.Rejections[i].Client {
			t.Errorf("rejection %d = %+v, want %q", i, sum.Rejections[i], want)
		}
	}
}

// TestUploadKeepsRecordBytes checks what goes on the wire and what a server
// stores, both the fake one and one running the real ingest code: NDJSON
// lines as they are (surrounding white space trimmed); JSON array elements
// byte for byte, sent as JSON array bodies when they span lines and as
// NDJSON when they do not; Purview CSV cells made one line, as before.
func TestUploadKeepsRecordBytes(t *testing.T) {
	rec := func(id, rest string) string {
		return `{"Id":"` + id + `","CreationTime":"2024-05-01T10:00:00","Operation":"Op"` + rest + `}`
	}
	p1 := "{\n    \"Id\": \"p1\",\n    \"CreationTime\": \"2024-05-01T10:00:00\",\n    \"Operation\": \"FileAccessed\",\n" +
		"    \"Subject\": \"a \\\"quoted\\\", \\u00e9 \\/ text, naïve\",\n    \"Empty\": { },\n    \"N\": 1.50E+2\n  }"
	p2 := "{\r\n\t\t\"Id\" : \"p2\" ,\r\n\t\t\"CreationTime\":\"2024-05-01T10:00:01.1234567Z\",\"Operation\":\"Send\",\"List\":[ 1 , 2 ]\r\n\t}"
	s1, s2 := rec("s1", `, "Spaced" : [ 1, 2 ]`), rec("s2", "")
	n1 := "{ \"Id\" : \"n1\", \"CreationTime\":\"2024-05-01T10:00:00\", \"Operation\":\"Op\" }"
	cell := "{\n  \"Id\": \"c1\",\n  \"CreationTime\": \"2024-05-01T10:00:00\",\n  \"Operation\": \"Op\"\n}"
	type post struct{ contentType, body string }
	tests := []struct {
		name  string
		in    string
		want  []string // stored records, in order
		posts []post   // requests, in order
	}{
		{
			name:  "NDJSON",
			in:    "  " + n1 + "  \r\n\n" + s1,
			want:  []string{n1, s1},
			posts: []post{{"application/x-ndjson", n1 + "\n" + s1 + "\n"}},
		},
		{
			name:  "pretty JSON array",
			in:    "[\n  " + p1 + ",\n\t" + p2 + "\n]\n",
			want:  []string{p1, p2},
			posts: []post{{"application/json", "[" + p1 + "," + p2 + "]"}},
		},
		{
			name:  "JSON array, one element per line",
			in:    "[" + s1 + ",\n" + s2 + "]",
			want:  []string{s1, s2},
			posts: []post{{"application/x-ndjson", s1 + "\n" + s2 + "\n"}},
		},
		{
			name: "JSON array, some elements spanning lines",
			in:   "[" + p1 + ",\n" + s1 + ", " + s2 + ",\n" + p2 + "]",
			want: []string{p1, s1, s2, p2},
			posts: []post{{"application/json", "[" + p1 + "]"}, {"application/x-ndjson", s1 + "\n" + s2 + "\n"},
				{"application/json", "[" + p2 + "]"}},
		},
		{
			name:  "Purview CSV",
			in:    "CreationDate,UserIds,Operations,AuditData\n" + `d,u,o,"` + strings.ReplaceAll(cell, `"`, `""`) + `"` + "\n",
			want:  []string{`{"Id":"c1","CreationTime":"2024-05-01T10:00:00","Operation":"Op"}`},
			posts: []post{{"application/x-ndjson", `{"Id":"c1","CreationTime":"2024-05-01T10:00:00","Operation":"Op"}` + "\n"}},
		},
	}
	ctx := context.Background()
	upload := func(t *testing.T, c *client.Client, in string) {
		t.Helper()
		up := c.NewUploader("acme", client.UploadOptions{Concurrency: 1}) // one sender: batches arrive in order
		if err := up.Upload(ctx, "in", strings.NewReader(in)); err != nil {
			t.Fatal(err)
		}
		if sum, err := up.Close(ctx); err != nil || sum.Rejected != 0 {
			t.Fatalf("summary %+v, %v", sum, err)
		}
	}
	for _, tt := range tests {
		t.Run(tt.name+"/fake server", func(t *testing.T) {
			srv, c := newTest(t)
			upload(t, c, tt.in)
			var got []string
			for _, r := range srv.Records("acme") {
				got = append(got, string(r))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("stored\n%q\nwant\n%q", got, tt.want)
			}
		})
		t.Run(tt.name+"/ingest", func(t *testing.T) {
			srv := newIngestServer(t)
			c := client.New(srv.URL, "t")
			c.Encoding = "identity"
			upload(t, c, tt.in)
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if !slices.Equal(srv.raws, tt.want) {
				t.Errorf("stored\n%q\nwant\n%q", srv.raws, tt.want)
			}
			var posts []post
			for i := range srv.bodies {
				posts = append(posts, post{srv.types[i], srv.bodies[i]})
			}
			if !slices.Equal(posts, tt.posts) {
				t.Errorf("requests\n%q\nwant\n%q", posts, tt.posts)
			}
		})
	}
}

// ingestServer answers ingest requests with the server's own ingest code,
// reading the Content-Type as the API does, and keeps what it is sent and
// the raw records it would store.
type ingestServer struct {
	*httptest.Server
	mu                  sync.Mutex
	types, bodies, raws []string
}

func newIngestServer(t *testing.T) *ingestServer {
	s := &ingestServer{}
	svc := ingest.New(appendFunc(func(_ context.Context, recs []audit.Record) ([]bool, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, r := range recs {
			s.raws = append(s.raws, string(r.Raw))
		}
		return make([]bool, len(recs)), nil
	}), ingest.Config{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ct := strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0])
		var body bytes.Buffer
		res, err := svc.Ingest(r.Context(), ingest.Batch{
			Tenant: "acme", Source: "test", Body: io.TeeReader(r.Body, &body),
			Encoding: r.Header.Get("Content-Encoding"), NDJSON: ct == "application/x-ndjson",
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.types = append(s.types, ct)
		s.bodies = append(s.bodies, body.String())
		s.mu.Unlock()
		json.NewEncoder(w).Encode(res)
	}))
	t.Cleanup(s.Close)
	return s
}

type appendFunc func(context.Context, []audit.Record) ([]bool, error)

func (f appendFunc) Append(ctx context.Context, recs []audit.Record) ([]bool, error) {
	return f(ctx, recs)
}

// TestUploadUnaccountedRecords checks that an answer which does not count
// every record sent is reported, not trusted.
func TestUploadUnaccountedRecords(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, `{"accepted":2,"duplicate":0,"rejected":0}`)
	}))
	defer srv.Close()
	up := client.New(srv.URL, "t").NewUploader("acme", client.UploadOptions{})
	up.Upload(context.Background(), "in", strings.NewReader("{\"Id\":\"1\"}\n{\"Id\":\"2\"}\n{\"Id\":\"3\"}\n"))
	sum, err := up.Close(context.Background())
	if err == nil || len(sum.Failures) != 1 || sum.Failed != 1 || !strings.Contains(sum.Failures[0].Err.Error(), "accounted for 2 of the 3") {
		t.Errorf("= %+v, %v; want one unaccounted record reported", sum, err)
	}
}
