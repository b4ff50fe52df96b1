package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-audit/custos/m365/m365test"
)

const (
	collTenant = "0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d"
	collClient = "11111111-2222-4333-8444-555555555555"
	collSecret = "cli-s3cr3t-never-logged"
)

// TestCollectM365KillResume kills custos collect m365 with SIGKILL at random
// moments against a faulty fake API, then lets a last run finish. The file
// must then hold every retrievable record exactly once, and nothing else.
func TestCollectM365KillResume(t *testing.T) {
	now := time.Now().UTC()
	to := now.Add(-2 * time.Hour).Truncate(time.Second)
	from := now.Add(-6 * 24 * time.Hour).Truncate(time.Second)
	fake, err := m365test.New(m365test.Options{
		Tenants: []m365test.TenantOptions{{ID: collTenant, ClientID: collClient, ClientSecret: collSecret,
			Users: 15, Days: 7, Start: now.Add(-7 * 24 * time.Hour).Truncate(24 * time.Hour), Rate: 80,
			Subscribed: []string{"Audit.Exchange"}}},
		Seed: 3,
		Faults: m365test.Faults{ThrottleRate: 0.03, ServerErrorRate: 0.03, DuplicateListRate: 0.1,
			DuplicateRecordRate: 0.02, ExpiredRate: 0.02},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(fake)
	defer ts.Close()

	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte(collSecret+"\n"), 0o600)
	out := filepath.Join(dir, "audit.ndjson")
	args := []string{"collect", "m365", "--tenant-id", collTenant, "--client-id", collClient,
		"--client-secret-file", secretFile, "--api-root", ts.URL, "--authority", ts.URL,
		"--from", from.Format(time.RFC3339), "--to", to.Format(time.RFC3339),
		"--out", out, "--window", "2h", "--rate", "400", "--concurrency", "3"}
	run := func() (*exec.Cmd, *bytes.Buffer) {
		cmd := exec.Command(os.Args[0], args...)
		cmd.Env = append(os.Environ(), "CUSTOS_TEST_MAIN=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &stderr
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	for i := 0; i < 5; i++ {
		cmd, stderr := run()
		d := time.Duration(300+rng.IntN(4000)) * time.Millisecond
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Logf("run %d finished before its kill at %v: %v", i, d, err)
		case <-time.After(d):
			cmd.Process.Signal(syscall.SIGKILL)
			<-done
			kills++
		}
		b, _ := os.ReadFile(out)
		t.Logf("run %d killed after %v: %d lines in the output", i, d, bytes.Count(b, []byte("\n")))
		if strings.Contains(stderr.String(), collSecret) {
			t.Fatalf("stderr reveals the secret:\n%s", stderr)
		}
	}
	cmd, stderr := run()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final run: %v\n%s", err, stderr)
	}
	if strings.Contains(stderr.String(), collSecret) {
		t.Fatalf("stderr reveals the secret:\n%s", stderr)
	}
	t.Logf("%d kills; last run:\n%s", kills, lastLines(stderr.String(), 3))

	want := fake.Expected(collTenant, from, to)
	got := map[string]int{}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	lines := 0
	for sc.Scan() {
		lines++
		var v struct{ Id string }
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil || v.Id == "" {
			t.Fatalf("line %d is not a record: %v %.200s", lines, err, sc.Bytes())
		}
		got[v.Id]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for id, n := range got {
		if n > 1 {
			t.Errorf("record %s written %d times", id, n)
		}
		if !want.Records[id] {
			t.Errorf("record %s is not one the server has in the range", id)
		}
	}
	missing := 0
	for id := range want.Records {
		if got[id] == 0 {
			missing++
		}
	}
	if missing > 0 || len(want.Records) < 5000 {
		t.Errorf("%d of %d records missing", missing, len(want.Records))
	}
	if !strings.Contains(stderr.String(), "expired") || len(want.Expired) == 0 {
		t.Errorf("expired content (%d blobs) not reported:\n%s", len(want.Expired), stderr)
	}
	// A further run changes nothing.
	before, _ := os.ReadFile(out)
	cmd, stderr = run()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("re-run: %v\n%s", err, stderr)
	}
	after, _ := os.ReadFile(out)
	if !bytes.Equal(before, after) {
		t.Errorf("a re-run changed the output (%d -> %d bytes)", len(before), len(after))
	}
}

func TestCollectM365Usage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"collect"}, "", "which source"},
		{[]string{"collect", "gmail"}, "", "unknown source"},
		{[]string{"collect", "m365", "--out", "x"}, "", "required"},
		{[]string{"collect", "m365", "--tenant-id", collTenant, "--client-id", collClient, "--out", "x"}, "", "no credential"},
		{[]string{"collect", "m365", "--tenant-id", "contoso.com", "--client-id", collClient, "--out", "x"}, collSecret, "not a GUID"},
		{[]string{"collect", "m365", "--tenant-id", collTenant, "--client-id", collClient, "--out", "x", "--cloud", "moon"}, collSecret, "unknown cloud"},
		{[]string{"collect", "m365", "--tenant-id", collTenant, "--client-id", collClient, "--out", "x", "--from", "yesterday"}, collSecret, "--from"},
		{[]string{"collect", "m365", "--tenant-id", collTenant, "--client-id", collClient, "--out", "x", "--window", "48h"}, collSecret, "window"},
	} {
		dir := t.TempDir()
		cmd := exec.Command(os.Args[0], tc.args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CUSTOS_TEST_MAIN=1", "CUSTOS_M365_CLIENT_SECRET="+tc.env)
		b, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
			t.Errorf("%v: exit %v, want 2\n%s", tc.args, err, b)
		}
		if !strings.Contains(string(b), tc.want) {
			t.Errorf("%v: output %q, want %q", tc.args, b, tc.want)
		}
		if tc.env != "" && strings.Contains(string(b), tc.env) {
			t.Errorf("%v: output reveals the secret", tc.args)
		}
	}
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
