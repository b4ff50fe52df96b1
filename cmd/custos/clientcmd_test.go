package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/custos-audit/custos/client/clienttest"
)

type cmdOutput struct {
	stdout, stderr string
	err            error
}

// lastLine is the last line of stdout.
func (o cmdOutput) lastLine() string {
	lines := strings.Split(strings.TrimRight(o.stdout, "\n"), "\n")
	return lines[len(lines)-1]
}

// runClientCmd runs a client command with its own streams and environment.
func runClientCmd(t *testing.T, cmd func(context.Context, []string, cliEnv) error, vars map[string]string, stdin string, args ...string) cmdOutput {
	t.Helper()
	var out, errOut bytes.Buffer
	env := cliEnv{
		stdin:  strings.NewReader(stdin),
		stdout: &out,
		stderr: &errOut,
		getenv: func(k string) string { return vars[k] },
	}
	err := cmd(context.Background(), args, env)
	return cmdOutput{out.String(), errOut.String(), err}
}

func newFakeServer(t *testing.T) (*clienttest.Server, map[string]string) {
	srv := clienttest.NewServer()
	t.Cleanup(srv.Close)
	srv.AddTenant("acme")
	return srv, map[string]string{"CUSTOS_SERVER": srv.URL, "CUSTOS_TOKEN": srv.AdminToken}
}

func writeTestFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func compressBytes(t *testing.T, how string, b []byte) []byte {
	var buf bytes.Buffer
	var w interface {
		Write([]byte) (int, error)
		Close() error
	}
	switch how {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "zstd":
		zw, err := zstd.NewWriter(&buf)
		if err != nil {
			t.Fatal(err)
		}
		w = zw
	}
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func testRecord(id string) string {
	return fmt.Sprintf(`{"Id":"%s","CreationTime":"2024-05-01T10:00:00","Operation":"MailItemsAccessed","Subject":"a, \"b\" and c"}`, id)
}

// csvCell quotes a JSON record for a CSV cell by hand: doubled quotes.
func csvCell(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func TestIngestAllLayoutsDeliverTheSameRecords(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	var nd, arr, cur, old strings.Builder
	var pretty []string // the array's elements as written: kept byte for byte
	arr.WriteString("[\n")
	cur.WriteString("RecordId,CreationDate,RecordType,Operation,UserId,AuditData,AssociatedAdminUnits,AssociatedAdminUnitsNames\r\n")
	old.WriteString("CreationDate,UserIds,Operations,AuditData\r\n")
	for i, id := range ids {
		nd.WriteString(testRecord(id) + "\n\n")
		if i > 0 {
			arr.WriteString(",\n")
		}
		var ind bytes.Buffer
		json.Indent(&ind, []byte(testRecord(id)), "  ", "  ")
		arr.WriteString("  " + ind.String())
		pretty = append(pretty, ind.String())
		cur.WriteString(fmt.Sprintf("%s,2024-05-01T10:00:00.0000000Z,2,MailItemsAccessed,a@x.com,%s,,\r\n", id, csvCell(testRecord(id))))
		// The older layout, with the record pretty-printed over lines.
		old.WriteString(fmt.Sprintf("2024-05-01T10:00:00.0000000Z,a@x.com,MailItemsAccessed,%s\r\n", csvCell(ind.String())))
	}
	arr.WriteString("\n]\n")
	want := make([]string, len(ids))
	for i, id := range ids {
		want[i] = testRecord(id)
	}
	dir := t.TempDir()
	inputs := map[string][]byte{
		"a.ndjson":      []byte(nd.String()),
		"b.json.gz":     compressBytes(t, "gzip", []byte(arr.String())),
		"c.csv.zst":     compressBytes(t, "zstd", []byte(cur.String())),
		"d.csv":         []byte(old.String()),
		"e.ndjson.zst":  compressBytes(t, "zstd", []byte(nd.String())),
		"f.json":        []byte(arr.String()),
		"g-purview.csv": []byte(cur.String()),
	}
	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			srv, env := newFakeServer(t)
			p := writeTestFile(t, dir, name, data)
			o := runClientCmd(t, ingestCmd, env, "", "--tenant", "acme", "--json", p)
			if o.err != nil {
				t.Fatalf("%v\n%s", o.err, o.stderr)
			}
			if got := o.lastLine(); got != `{"accepted":3,"duplicate":0,"rejected":0}` {
				t.Errorf("last line of stdout = %q", got)
			}
			var got []string
			for _, r := range srv.Records("acme") {
				got = append(got, string(r))
			}
			slices.Sort(got)
			want := want
			if strings.Contains(name, ".json") {
				want = pretty
			}
			if !slices.Equal(got, want) {
				t.Errorf("stored\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
	// Standard input, twice the same records: all duplicates the second time.
	srv, env := newFakeServer(t)
	for i, wantLine := range []string{`{"accepted":3,"duplicate":0,"rejected":0}`, `{"accepted":0,"duplicate":3,"rejected":0}`} {
		o := runClientCmd(t, ingestCmd, env, nd.String(), "--tenant", "acme", "--json", "--compress", "gzip", "-")
		if o.err != nil || o.lastLine() != wantLine {
			t.Errorf("stdin run %d: %v, last line %q, want %q\n%s", i+1, o.err, o.lastLine(), wantLine, o.stderr)
		}
	}
	if encs := srv.Encodings(); len(encs) != 2 || encs[0] != "gzip" {
		t.Errorf("encodings = %v, want gzip", encs)
	}
}

func TestIngestReportsRejectedRecordsByFileAndLine(t *testing.T) {
	srv, env := newFakeServer(t)
	dir := t.TempDir()
	var nd strings.Builder
	var wantLines []string
	for i := 1; i <= 60; i++ {
		switch {
		case i%2 == 0:
			nd.WriteString(fmt.Sprintf(`{"Id":"bad%d","CreationTime":"yesterday"}`+"\n", i))
			wantLines = append(wantLines, fmt.Sprintf(`bad.ndjson:%d: CreationTime: unparsable time "yesterday" (Id bad%d)`, i, i))
		case i == 3:
			nd.WriteString("not json\n")
			wantLines = append(wantLines, "bad.ndjson:3: not a JSON object (not sent)")
		default:
			nd.WriteString(testRecord(fmt.Sprint("g", i)) + "\n")
		}
	}
	p := writeTestFile(t, dir, "bad.ndjson", []byte(nd.String()))
	o := runClientCmd(t, ingestCmd, env, "", "--tenant", "acme", "--json", "--batch-records", "7", p)
	if o.err != nil {
		t.Fatalf("rejections alone must not fail the command: %v", o.err)
	}
	if got := o.lastLine(); got != `{"accepted":29,"duplicate":0,"rejected":31}` {
		t.Errorf("last line = %q", got)
	}
	for _, l := range wantLines[:maxListedRejections] {
		if !strings.Contains(o.stderr, "  "+strings.Replace(l, "bad.ndjson", p, 1)+"\n") {
			t.Errorf("stderr lacks %q:\n%s", l, o.stderr)
		}
	}
	if strings.Contains(o.stderr, fmt.Sprintf("%s:42:", p)) || !strings.Contains(o.stderr, "… and 11 more") {
		t.Errorf("want the first 20 rejections and a count of the rest:\n%s", o.stderr)
	}
	if len(srv.Records("acme")) != 29 {
		t.Errorf("stored %d", len(srv.Records("acme")))
	}
	o = runClientCmd(t, ingestCmd, env, "", "--tenant", "acme", "--strict", p)
	if o.err == nil || !strings.Contains(o.err.Error(), "31 records rejected (--strict)") {
		t.Errorf("--strict: err = %v", o.err)
	}
}

func TestIngestRetriesAndFailures(t *testing.T) {
	dir := t.TempDir()
	var nd strings.Builder
	for i := 1; i <= 30; i++ {
		nd.WriteString(testRecord(fmt.Sprint("r", i)) + "\n")
	}
	p := writeTestFile(t, dir, "in.ndjson", []byte(nd.String()))
	q := writeTestFile(t, dir, "more.ndjson", []byte(nd.String()))

	t.Run("succeeds after 429s", func(t *testing.T) {
		srv, env := newFakeServer(t)
		srv.Inject(clienttest.Fault{Status: 429, RetryAfter: "0"}, clienttest.Fault{Status: 429, RetryAfter: "0"})
		o := runClientCmd(t, ingestCmd, env, "", "--tenant", "acme", "--json", "--concurrency", "1", p)
		if o.err != nil || o.lastLine() != `{"accepted":30,"duplicate":0,"rejected":0}` || srv.IngestCalls() != 3 {
			t.Errorf("err %v, last line %q, %d requests\n%s", o.err, o.lastLine(), srv.IngestCalls(), o.stderr)
		}
		if !strings.Contains(o.stderr, "retrying in") || !strings.Contains(o.stderr, "2 requests were retried") {
			t.Errorf("stderr does not tell of the retries:\n%s", o.stderr)
		}
	})
	t.Run("400 fails at once and names what was not delivered", func(t *testing.T) {
		srv, env := newFakeServer(t)
		srv.Inject(clienttest.Fault{}, clienttest.Fault{Status: 400, Message: "no such thing"})
		o := runClientCmd(t, ingestCmd, env, "", "--tenant", "acme", "--json", "--concurrency", "1", "--batch-records", "10", "--attempts", "5", p, q)
		if o.err == nil {
			t.Fatal("no error")
		}
		if srv.IngestCalls() > 3 {
			t.Errorf("%d requests: the 400 was retried", srv.IngestCalls())
		}
		for _, want := range []string{
			"not delivered:\n  " + p + ":11-20 (10 records): server answered 400 Bad Request: no such thing\n",
			"not read: ",
			"Sending the same inputs again is safe",
		} {
			if !strings.Contains(o.stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, o.stderr)
			}
		}
		// Where reading stopped depends on timing, but it cannot have
		// reached the end of the second file.
		if !regexp.MustCompile(`\nnot read: [^\n]*` + regexp.QuoteMeta(q)).MatchString(o.stderr) {
			t.Errorf("stderr does not name %s as not read:\n%s", q, o.stderr)
		}
		if o.lastLine() != `{"accepted":10,"duplicate":0,"rejected":0}` {
			t.Errorf("last line = %q", o.lastLine())
		}
	})
	t.Run("503 until the attempts run out", func(t *testing.T) {
		srv, env := newFakeServer(t)
		f := clienttest.Fault{Status: 503, RetryAfter: "0", Message: "disk headroom exhausted"}
		srv.Inject(f, f, f)
		o := runClientCmd(t, ingestCmd, env, "", "--tenant", "acme", "--attempts", "3", p)
		if o.err == nil || !strings.Contains(o.err.Error(), "30 records not delivered: after 3 attempts: server answered 503") {
			t.Fatalf("err = %v", o.err)
		}
		if !strings.Contains(o.stderr, p+":1-30 (30 records): after 3 attempts: server answered 503") || srv.IngestCalls() != 3 {
			t.Errorf("%d requests; stderr:\n%s", srv.IngestCalls(), o.stderr)
		}
	})
	t.Run("unreadable input fails but the others are sent", func(t *testing.T) {
		srv, env := newFakeServer(t)
		bad := writeTestFile(t, dir, "broken.json", []byte("[\n"+testRecord("x1")+",\n"+testRecord("x2")+"\n"+testRecord("x3")+"]"))
		o := runClientCmd(t, ingestCmd, env, "", "--tenant", "acme", bad, p)
		if o.err == nil || !strings.Contains(o.stderr, "could not read: "+bad+": line 4: malformed JSON array") {
			t.Errorf("err %v; stderr:\n%s", o.err, o.stderr)
		}
		if n := len(srv.Records("acme")); n != 32 {
			t.Errorf("stored %d records, want the 2 before the break and the 30 of the other file", n)
		}
	})
}

func TestIngestUsage(t *testing.T) {
	_, env := newFakeServer(t)
	for _, tt := range []struct {
		args []string
		vars map[string]string
		want string
	}{
		{[]string{"x.ndjson"}, env, "--tenant is required"},
		{[]string{"--tenant", "acme"}, env, "no input"},
		{[]string{"--tenant", "acme", "-", "-"}, env, "more than once"},
		{[]string{"--tenant", "acme", "--compress", "lz4", "x"}, env, "--compress"},
		{[]string{"--tenant", "acme", "x"}, map[string]string{"CUSTOS_SERVER": "http://127.0.0.1:1"}, "CUSTOS_TOKEN"},
		{[]string{"--tenant", "acme", "--server", "ftp://x", "--token", "t", "x"}, nil, "--server"},
	} {
		o := runClientCmd(t, ingestCmd, tt.vars, "", tt.args...)
		var ue usageError
		if !errors.As(o.err, &ue) || !strings.Contains(o.err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want a usage error about %q", tt.args, o.err, tt.want)
		}
	}
}

func TestClientFlagsAndEnvironment(t *testing.T) {
	srv, env := newFakeServer(t)
	// The environment alone.
	o := runClientCmd(t, tenantCmd, env, "", "list")
	if o.err != nil || !strings.Contains(o.stdout, "acme") {
		t.Fatalf("env only: %v %q", o.err, o.stdout)
	}
	// Flags win over the environment.
	wrong := map[string]string{"CUSTOS_SERVER": "http://127.0.0.1:1", "CUSTOS_TOKEN": "custos_wrong_token"}
	o = runClientCmd(t, tenantCmd, wrong, "", "list", "--server", srv.URL, "--token", srv.AdminToken)
	if o.err != nil {
		t.Fatalf("flags over env: %v", o.err)
	}
	// A wrong token says how to fix it.
	o = runClientCmd(t, tenantCmd, map[string]string{"CUSTOS_SERVER": srv.URL, "CUSTOS_TOKEN": "custos_wrong_token"}, "", "list")
	if o.err == nil || !strings.Contains(o.err.Error(), "401") || !strings.Contains(o.err.Error(), "CUSTOS_TOKEN") {
		t.Errorf("wrong token: err = %v", o.err)
	}
	// No server at the address.
	o = runClientCmd(t, tenantCmd, map[string]string{"CUSTOS_SERVER": "127.0.0.1:1", "CUSTOS_TOKEN": "t"}, "", "list")
	if o.err == nil || !strings.Contains(o.err.Error(), "CUSTOS_SERVER") {
		t.Errorf("no server: err = %v", o.err)
	}
}

func TestTenantAndTokenCommands(t *testing.T) {
	_, env := newFakeServer(t)
	o := runClientCmd(t, tenantCmd, env, "", "create", "--id", "contoso", "--name", "Contoso Ltd")
	if o.err != nil || o.stdout != "created tenant contoso (Contoso Ltd)\n" {
		t.Fatalf("tenant create: %v %q", o.err, o.stdout)
	}
	o = runClientCmd(t, tenantCmd, env, "", "create", "--id", "contoso")
	if o.err == nil || !strings.Contains(o.err.Error(), "409") {
		t.Errorf("tenant create again: %v", o.err)
	}
	o = runClientCmd(t, tenantCmd, env, "", "list", "--format", "ndjson")
	if o.err != nil || strings.Count(o.stdout, "\n") != 2 || !strings.Contains(o.stdout, `"id":"contoso","name":"Contoso Ltd"`) {
		t.Errorf("tenant list ndjson: %v %q", o.err, o.stdout)
	}

	o = runClientCmd(t, tokenCmd, env, "", "create", "--tenant", "contoso", "--role", "ingest", "--name", "laptop", "--expires", "720h")
	if o.err != nil {
		t.Fatal(o.err)
	}
	tok := o.lastLine()
	if !strings.HasPrefix(tok, "custos_") || strings.ContainsAny(tok, " \t") || !strings.Contains(o.stderr, "for tenant contoso, expires ") {
		t.Fatalf("token create: stdout %q, stderr %q", o.stdout, o.stderr)
	}
	exp := time.Now().Add(720 * time.Hour).UTC().Format("2006-01-02")
	if !strings.Contains(o.stderr, exp) {
		t.Errorf("expiry %s not in %q", exp, o.stderr)
	}
	// The printed token works for ingest, into its tenant.
	ing := map[string]string{"CUSTOS_SERVER": env["CUSTOS_SERVER"], "CUSTOS_TOKEN": tok}
	o = runClientCmd(t, ingestCmd, ing, testRecord("t1")+"\n", "--tenant", "contoso", "--json", "-")
	if o.err != nil || o.lastLine() != `{"accepted":1,"duplicate":0,"rejected":0}` {
		t.Errorf("ingest with the new token: %v %q\n%s", o.err, o.lastLine(), o.stderr)
	}
	o = runClientCmd(t, tokenCmd, env, "", "create", "--role", "admin")
	if o.err != nil || !strings.HasPrefix(o.lastLine(), "custos_") || !strings.Contains(o.stderr, "all tenants (global), never expires") {
		t.Errorf("global token: %v %q %q", o.err, o.stdout, o.stderr)
	}

	o = runClientCmd(t, tokenCmd, env, "", "list", "--tenant", "contoso")
	if o.err != nil || !strings.Contains(o.stdout, "ID ") || !strings.Contains(o.stdout, "laptop") || strings.Count(o.stdout, "\n") != 2 || strings.Contains(o.stdout, tok) {
		t.Errorf("token list: %v\n%s", o.err, o.stdout)
	}
	o = runClientCmd(t, tokenCmd, env, "", "list", "--format", "ndjson")
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(o.stdout), "\n") {
		var v struct{ ID, Tenant string }
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("token list ndjson line %q: %v", l, err)
		}
		if v.Tenant == "contoso" {
			ids = append(ids, v.ID)
		}
	}
	if len(ids) != 1 {
		t.Fatalf("contoso tokens = %v", ids)
	}
	// Flags after the id are taken too.
	o = runClientCmd(t, tokenCmd, nil, "", "revoke", ids[0], "--server", env["CUSTOS_SERVER"], "--token", env["CUSTOS_TOKEN"])
	if o.err != nil || o.stdout != "revoked token "+ids[0]+"\n" {
		t.Errorf("revoke: %v %q", o.err, o.stdout)
	}
	o = runClientCmd(t, ingestCmd, ing, testRecord("t2")+"\n", "--tenant", "contoso", "-")
	if o.err == nil || !strings.Contains(o.stderr, "401") {
		t.Errorf("ingest with a revoked token: %v\n%s", o.err, o.stderr)
	}

	for _, tt := range []struct {
		cmd  func(context.Context, []string, cliEnv) error
		args []string
		want string
	}{
		{tokenCmd, []string{"create"}, "--role is required"},
		{tokenCmd, []string{"create", "--role", "root"}, "--role"},
		{tokenCmd, []string{"create", "--role", "read", "--expires", "tomorrow"}, "--expires"},
		{tokenCmd, []string{"create", "--role", "read", "--expires", "2001-01-01T00:00:00Z"}, "in the past"},
		{tokenCmd, []string{"revoke"}, "exactly one"},
		{tokenCmd, []string{"rotate"}, "unknown subcommand"},
		{tokenCmd, nil, "missing subcommand"},
		{tenantCmd, []string{"create"}, "--id is required"},
		{tenantCmd, []string{"list", "extra"}, "unexpected arguments"},
		{tenantCmd, []string{"list", "--format", "xml"}, "--format"},
	} {
		o := runClientCmd(t, tt.cmd, env, "", tt.args...)
		var ue usageError
		if !errors.As(o.err, &ue) || !strings.Contains(o.err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want a usage error about %q", tt.args, o.err, tt.want)
		}
	}
}

func TestParseExpiry(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"720h":                 now.Add(720 * time.Hour),
		"90d":                  now.AddDate(0, 0, 90),
		"2027-06-01T12:00:00Z": time.Date(2027, 6, 1, 12, 0, 0, 0, time.UTC),
	} {
		got, err := parseExpiry(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseExpiry(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"-1h", "0d", "soon", "2025-01-01T00:00:00Z"} {
		if _, err := parseExpiry(in, now); err == nil {
			t.Errorf("parseExpiry(%q): no error", in)
		}
	}
}

func TestGroup(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1234: "-1,234"} {
		if got := group(n); got != want {
			t.Errorf("group(%d) = %q, want %q", n, got, want)
		}
	}
}
