package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/selfaudit"
)

// TestMain lets end-to-end tests run this test binary as the real custos
// command: with CUSTOS_TEST_MAIN=1 it is main().
func TestMain(m *testing.M) {
	if os.Getenv("CUSTOS_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// server is a custos serve process started by a test.
type server struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	data string
	logs *bytes.Buffer
	done chan struct{}
}

var listenRE = regexp.MustCompile(`msg="custos listening" addr=(\S+)`)

func startServer(t *testing.T, data string, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0", "--min-free-bytes", "-1", "--memory-limit", "1GB"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "CUSTOS_TEST_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, data: data, logs: &bytes.Buffer{}, done: make(chan struct{})}
	addr := make(chan string, 1)
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			s.logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	go func() { cmd.Wait(); close(s.done) }()
	select {
	case a := <-addr:
		s.url = "http://" + a
	case <-s.done:
		t.Fatalf("server exited before listening:\n%s", s.logs)
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("server did not start:\n%s", s.logs)
	}
	t.Cleanup(func() { s.kill() })
	return s
}

func (s *server) kill() {
	select {
	case <-s.done:
	default:
		s.cmd.Process.Signal(syscall.SIGKILL)
		<-s.done
	}
}

func (s *server) adminToken() string {
	b, err := os.ReadFile(filepath.Join(s.data, "admin.token"))
	if err != nil {
		s.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (s *server) call(method, path, token string, body []byte) (int, []byte, error) {
	req, err := http.NewRequest(method, s.url+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (s *server) mustCall(method, path, token string, body []byte, want int) []byte {
	s.t.Helper()
	code, b, err := s.call(method, path, token, body)
	if err != nil || code != want {
		s.t.Fatalf("%s %s: %d %v %s, want %d", method, path, code, err, b, want)
	}
	return b
}

// setupTenant creates a tenant and returns ingest and read tokens for it.
func setupTenant(s *server, tenant string) (ingestTok, readTok string) {
	admin := s.adminToken()
	s.mustCall("POST", "/api/v1/tenants", admin, []byte(`{"id":"`+tenant+`"}`), 201)
	tok := func(role string) string {
		var v struct{ Token string }
		json.Unmarshal(s.mustCall("POST", "/api/v1/tokens", admin, []byte(`{"tenant":"`+tenant+`","role":"`+role+`"}`), 201), &v)
		return v.Token
	}
	return tok("ingest"), tok("read")
}

// storedIDs returns how often each Id is stored for tenant.
func storedIDs(s *server, tenant, token string) map[string]int {
	body := s.mustCall("GET", "/api/v1/tenants/"+tenant+"/records?from=2000-01-01", token, nil, 200)
	ids := map[string]int{}
	for _, l := range bytes.Split(body, []byte("\n")) {
		if len(bytes.TrimSpace(l)) == 0 {
			continue
		}
		var v struct{ Id, Workload string }
		if err := json.Unmarshal(l, &v); err != nil {
			s.t.Fatalf("stored record is not JSON: %s", l)
		}
		if v.Workload != selfaudit.Workload { // earlier listings' own audit records
			ids[v.Id]++
		}
	}
	return ids
}

func e2eRecord(id string, at time.Time) string {
	return fmt.Sprintf(`{"CreationTime":"%s","Id":"%s","Operation":"MailItemsAccessed","OrganizationId":"4a7c8238-5799-4b16-9fc6-9ad8fce5a7d9","RecordType":50,"ResultStatus":"Succeeded","UserKey":"100320009D292C6B","UserType":0,"Version":1,"Workload":"Exchange","ClientIPAddress":"203.0.113.7","UserId":"user%d@contoso.example","AppId":"00000002-0000-0ff1-ce00-000000000000","ClientAppId":"","ClientInfoString":"Client=OWA;Action=ViaProxy","ExternalAccess":false,"LogonType":0,"MailboxGuid":"f5d0d8fc-1e65-4ec5-b1b7-bb2a1b0b5a11","MailboxOwnerUPN":"user%d@contoso.example","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],"OperationCount":1}`,
		at.UTC().Format("2006-01-02T15:04:05"), id, len(id)%50, len(id)%50)
}

// TestKill9EndToEnd: clients ingest continuously over HTTP while the server
// is killed with SIGKILL at random moments; after each restart, every
// acknowledged record is present exactly once.
func TestKill9EndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills the server several times")
	}
	data := t.TempDir()
	rng := rand.New(rand.NewPCG(42, 1))
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
	)
	var ingestTok, readTok string
	base := time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)
	const rounds = 5
	for round := range rounds {
		// A small seal threshold keeps seals in flight when the kill lands.
		s := startServer(t, data, "--seal-bytes", "200000", "--seal-interval", "2s")
		if round == 0 {
			ingestTok, readTok = setupTenant(s, "contoso")
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for c := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for b := 0; ctx.Err() == nil; b++ {
					var lines []string
					var ids []string
					for i := range 100 {
						id := fmt.Sprintf("r%d-c%d-b%d-%d", round, c, b, i)
						if i%5 == 0 && b > 0 { // re-deliveries of the previous batch
							id = fmt.Sprintf("r%d-c%d-b%d-%d", round, c, b-1, i)
						}
						ids = append(ids, id)
						lines = append(lines, e2eRecord(id, base.Add(time.Duration(round*24)*time.Hour+time.Duration(b*100+i)*time.Second)))
					}
					code, body, err := s.call("POST", "/api/v1/tenants/contoso/records", ingestTok, []byte(strings.Join(lines, "\n")))
					if err != nil {
						return // server died
					}
					if code != 200 {
						continue // 429/503: nothing stored, nothing acknowledged
					}
					var res struct{ Accepted, Duplicate, Rejected int }
					json.Unmarshal(body, &res)
					if res.Rejected != 0 || res.Accepted+res.Duplicate != len(ids) {
						t.Errorf("unexpected answer %s", body)
					}
					mu.Lock()
					for _, id := range ids {
						acked[id] = true
					}
					mu.Unlock()
				}
			}()
		}
		time.Sleep(time.Duration(700+rng.IntN(1800)) * time.Millisecond)
		s.kill()
		cancel()
		wg.Wait()
	}
	s := startServer(t, data)
	got := storedIDs(s, "contoso", readTok)
	for id := range acked {
		if got[id] != 1 {
			t.Errorf("acknowledged record %s stored %d times", id, got[id])
		}
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("record %s stored %d times", id, n)
		}
	}
	if len(acked) < 2000 {
		t.Fatalf("only %d records acknowledged: the test exercised too little", len(acked))
	}
	t.Logf("%d records acknowledged across %d kills; %d stored", len(acked), rounds, len(got))
}

// TestGracefulShutdownSeals: SIGTERM finishes in-flight work, seals the
// head and exits 0; the next start needs no WAL replay.
func TestGracefulShutdownSeals(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	ingestTok, readTok := setupTenant(s, "contoso")
	var lines []string
	for i := range 500 {
		lines = append(lines, e2eRecord(fmt.Sprintf("g-%d", i), time.Date(2026, 9, 2, 0, 0, i, 0, time.UTC)))
	}
	s.mustCall("POST", "/api/v1/tenants/contoso/records", ingestTok, []byte(strings.Join(lines, "\n")), 200)
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		t.Fatal("server did not stop on SIGTERM")
	}
	if code := s.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, s.logs)
	}
	if !strings.Contains(s.logs.String(), "sealed head") {
		t.Fatalf("shutdown did not seal:\n%s", s.logs)
	}
	s = startServer(t, data)
	if got := storedIDs(s, "contoso", readTok); len(got) != 500 {
		t.Fatalf("after restart %d records, want 500", len(got))
	}
	if strings.Contains(s.logs.String(), "replayed write-ahead log") {
		t.Fatalf("a clean shutdown still needed a WAL replay:\n%s", s.logs)
	}
}

// TestBootstrapToken: a fresh data directory gets exactly one admin token,
// printed once and saved with mode 0600; a restart prints none.
func TestBootstrapToken(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	fi, err := os.Stat(filepath.Join(data, "admin.token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token: %v %v", fi, err)
	}
	tok := s.adminToken()
	s.mustCall("GET", "/api/v1/tenants", tok, nil, 200)
	s.mustCall("GET", "/api/v1/tenants", "", nil, 401)
	s.mustCall("GET", "/healthz", "", nil, 200)
	s.mustCall("GET", "/readyz", "", nil, 200)
	s.kill()
	s = startServer(t, data)
	if strings.Contains(s.logs.String(), "created bootstrap admin token") {
		t.Fatal("restart created another bootstrap token")
	}
	s.mustCall("GET", "/api/v1/tenants", tok, nil, 200)
}

// runCLI runs this binary as custos with args and returns stdout.
func runCLI(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(append(os.Environ(), "CUSTOS_TEST_MAIN=1"), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("custos %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// TestDuplicateIngestOfSimulatorFile: a simulator file ingested twice, and
// then shuffled, leaves exactly the file's records, once each.
func TestDuplicateIngestOfSimulatorFile(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	env := []string{"CUSTOS_SERVER=" + s.url, "CUSTOS_TOKEN=" + s.adminToken()}
	runCLI(t, env, "tenant", "create", "--id", "contoso")
	out := runCLI(t, env, "token", "create", "--tenant", "contoso", "--role", "ingest")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	ingestEnv := []string{"CUSTOS_SERVER=" + s.url, "CUSTOS_TOKEN=" + lines[len(lines)-1]}

	file := filepath.Join(t.TempDir(), "sim.ndjson")
	runCLI(t, nil, "simulate", "--tenant", "contoso", "--users", "30", "--days", "3", "--start", "2026-03-02",
		"--seed", "9", "--scenario", "storm-0558", "--out", file, "--quiet")
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	recs := strings.Split(strings.TrimSpace(string(raw)), "\n")
	type counts struct{ Accepted, Duplicate, Rejected int }
	ingestFile := func(f string) counts {
		out := runCLI(t, ingestEnv, "ingest", "--tenant", "contoso", "--json", "--quiet", f)
		outLines := strings.Split(strings.TrimSpace(out), "\n")
		var c counts
		if err := json.Unmarshal([]byte(outLines[len(outLines)-1]), &c); err != nil {
			t.Fatalf("--json last line %q: %v", outLines[len(outLines)-1], err)
		}
		return c
	}
	if c := ingestFile(file); c.Accepted != len(recs) || c.Duplicate != 0 || c.Rejected != 0 {
		t.Fatalf("first ingest %+v, want %d accepted", c, len(recs))
	}
	if c := ingestFile(file); c.Accepted != 0 || c.Duplicate != len(recs) {
		t.Fatalf("second ingest %+v, want %d duplicates", c, len(recs))
	}
	shuffled := slices.Clone(recs)
	rand.New(rand.NewPCG(3, 3)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	sf := filepath.Join(t.TempDir(), "shuffled.ndjson")
	os.WriteFile(sf, []byte(strings.Join(shuffled, "\n")+"\n"), 0o644)
	if c := ingestFile(sf); c.Accepted != 0 || c.Duplicate != len(recs) {
		t.Fatalf("shuffled ingest %+v, want %d duplicates", c, len(recs))
	}

	var readTok struct{ Token string }
	json.Unmarshal(s.mustCall("POST", "/api/v1/tokens", s.adminToken(), []byte(`{"tenant":"contoso","role":"read"}`), 201), &readTok)
	// Up to the scenario's end: searches leave self-audit records at now.
	got := strings.Split(strings.TrimSpace(string(s.mustCall("GET", "/api/v1/tenants/contoso/records?from=2000-01-01&to=2026-10-01", readTok.Token, nil, 200))), "\n")
	want := slices.Clone(recs)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("stored contents differ from the file: %d stored, %d in file", len(got), len(want))
	}

	// custos search against a reference filtered here from the file: the
	// attacker's AppId, all output formats, --count and --limit.
	const stormApp = "6b7f0558-3c2d-4e91-a8f0-2d5c0de05580"
	var wantStorm []string
	for _, line := range recs {
		r, err := audit.Parse([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		if strings.EqualFold(r.AppID, stormApp) || strings.EqualFold(r.ClientAppID, stormApp) {
			wantStorm = append(wantStorm, line)
		}
	}
	if len(wantStorm) == 0 {
		t.Fatal("the storm-0558 scenario injected nothing")
	}
	readEnv := []string{"CUSTOS_SERVER=" + s.url, "CUSTOS_TOKEN=" + readTok.Token}
	search := func(args ...string) string {
		return runCLI(t, readEnv, append([]string{"search", "--tenant", "contoso", "--from", "2026-03-01", "--to", "2026-03-10", "--app-id", stormApp}, args...)...)
	}
	nd := strings.Split(strings.TrimSpace(search("--format", "ndjson")), "\n")
	var times []time.Time
	for _, l := range nd {
		r, err := audit.Parse([]byte(l))
		if err != nil {
			t.Fatalf("search output line %q: %v", l, err)
		}
		times = append(times, r.CreationTime)
	}
	if !slices.IsSortedFunc(times, func(a, b time.Time) int { return b.Compare(a) }) {
		t.Error("search output is not newest first")
	}
	gotStorm := slices.Clone(nd)
	slices.Sort(gotStorm)
	slices.Sort(wantStorm)
	if !slices.Equal(gotStorm, wantStorm) {
		t.Fatalf("search --app-id: %d records, reference %d", len(gotStorm), len(wantStorm))
	}
	if n := strings.TrimSpace(search("--count")); n != strconv.Itoa(len(wantStorm)) {
		t.Errorf("search --count = %s, want %d", n, len(wantStorm))
	}
	rows, err := csv.NewReader(strings.NewReader(search("--format", "csv"))).ReadAll()
	if err != nil || len(rows) != len(wantStorm)+1 || rows[0][3] != "AuditData" {
		t.Fatalf("search --format csv: %d rows, %v", len(rows), err)
	}
	for i, row := range rows[1:] {
		if row[3] != nd[i] {
			t.Fatalf("csv row %d AuditData differs from the ndjson record", i)
		}
	}
	table := strings.Split(strings.TrimSpace(search()), "\n")
	if len(table) != len(wantStorm)+1 || !strings.HasPrefix(table[0], "TIME (UTC)") {
		t.Errorf("table: %d lines, want %d and a header", len(table), len(wantStorm)+1)
	}
	if top := strings.Split(strings.TrimSpace(search("--format", "ndjson", "--limit", "3")), "\n"); !slices.Equal(top, nd[:3]) {
		t.Errorf("--limit 3 gave %d records, not the newest three", len(top))
	}
}
