package rules

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/simulate"
)

func parse(t testing.TB, raw string) *audit.Record {
	t.Helper()
	var p audit.Parser
	r, err := p.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("%v: %s", err, raw)
	}
	return &r
}

// head is the common start of the test records.
const head = `"CreationTime":"2026-05-04T10:00:00","Id":"%s","OrganizationId":"4a7c8238-5799-4b16-9fc6-9ad8fce5a7d9","UserKey":"10032001","UserType":2,"Version":1,"ClientIP":"198.51.100.4:50123","UserId":"admin@contoso.com"`

func rec(t testing.TB, id, rest string) *audit.Record {
	return parse(t, "{"+strings.Replace(head, "%s", id, 1)+","+rest+"}")
}

// bundledCases: for every bundled rule, records it must match and records
// it must not. The negatives are the near misses an analyst would worry
// about (the same operation without the dangerous part).
var bundledCases = map[string]struct{ match, noMatch []string }{
	"inbox_rule_forwarding.yml": {
		match: []string{
			`"Operation":"New-InboxRule","RecordType":1,"ResultStatus":"True","Workload":"Exchange","ObjectId":"ann\\fwd","Parameters":[{"Name":"Name","Value":"fwd"},{"Name":"ForwardTo","Value":"drop@evil.example"},{"Name":"MarkAsRead","Value":"True"}]`,
			`"Operation":"Set-InboxRule","RecordType":1,"ResultStatus":"True","Workload":"Exchange","Parameters":[{"Name":"Identity","Value":"ann\\x"},{"Name":"RedirectTo","Value":"drop@evil.example"}]`,
			`"Operation":"UpdateInboxRules","RecordType":2,"ResultStatus":"Succeeded","Workload":"Exchange","OperationProperties":[{"Name":"RuleOperation","Value":"AddMailboxRule"},{"Name":"RuleActions","Value":"[{\"ActionType\":\"Forward\",\"Recipients\":[\"drop@evil.example\"],\"ForwardFlags\":\"None\"}]"}]`,
			`"Operation":"Set-Mailbox","RecordType":1,"ResultStatus":"True","Workload":"Exchange","Parameters":[{"Name":"Identity","Value":"ann"},{"Name":"ForwardingSmtpAddress","Value":"smtp:drop@evil.example"},{"Name":"DeliverToMailboxAndForward","Value":"True"}]`,
		},
		noMatch: []string{
			`"Operation":"New-InboxRule","RecordType":1,"ResultStatus":"True","Workload":"Exchange","Parameters":[{"Name":"Name","Value":"news"},{"Name":"MoveToFolder","Value":"Newsletters"}]`,
			`"Operation":"UpdateInboxRules","RecordType":2,"ResultStatus":"Succeeded","Workload":"Exchange","OperationProperties":[{"Name":"RuleActions","Value":"[{\"ActionType\":\"MoveToFolder\",\"ForwardFlags\":\"None\"}]"}]`,
			`"Operation":"Set-Mailbox","RecordType":1,"ResultStatus":"True","Workload":"Exchange","Parameters":[{"Name":"Identity","Value":"ann"},{"Name":"ForwardingSmtpAddress","Value":""}]`,
		},
	},
	"mailbox_full_access_grant.yml": {
		match: []string{
			`"Operation":"Add-MailboxPermission","RecordType":1,"ResultStatus":"True","Workload":"Exchange","ObjectId":"ceo","Parameters":[{"Name":"Identity","Value":"ceo"},{"Name":"User","Value":"mallory@contoso.com"},{"Name":"AccessRights","Value":"FullAccess"},{"Name":"AutoMapping","Value":"False"}]`,
		},
		noMatch: []string{
			`"Operation":"Add-MailboxPermission","RecordType":1,"ResultStatus":"True","Workload":"Exchange","Parameters":[{"Name":"Identity","Value":"ceo"},{"Name":"User","Value":"bob@contoso.com"},{"Name":"AccessRights","Value":"ReadPermission"}]`,
			`"Operation":"Remove-MailboxPermission","RecordType":1,"ResultStatus":"True","Workload":"Exchange","Parameters":[{"Name":"AccessRights","Value":"FullAccess"}]`,
		},
	},
	"oauth_consent.yml": {
		match: []string{
			`"Operation":"Consent to application.","RecordType":8,"ResultStatus":"Success","Workload":"AzureActiveDirectory","ObjectId":"5d9c1f0e","ModifiedProperties":[{"Name":"ConsentContext.IsAdminConsent","NewValue":"False","OldValue":""}]`,
		},
		noMatch: []string{
			`"Operation":"Add service principal.","RecordType":8,"ResultStatus":"Success","Workload":"AzureActiveDirectory"`,
		},
	},
	"mailbox_export.yml": {
		match: []string{
			`"Operation":"New-MailboxExportRequest","RecordType":1,"ResultStatus":"True","Workload":"Exchange","Parameters":[{"Name":"Mailbox","Value":"ceo"},{"Name":"FilePath","Value":"\\\\srv\\pst\\ceo.pst"}]`,
			`"Operation":"New-ComplianceSearchAction","RecordType":18,"ResultStatus":"","Workload":"SecurityComplianceCenter","Parameters":"-SearchName \"ceo\" -Export -Format FxStream"`,
		},
		noMatch: []string{
			`"Operation":"New-ComplianceSearchAction","RecordType":18,"ResultStatus":"","Workload":"SecurityComplianceCenter","Parameters":"-SearchName \"spam\" -Purge -PurgeType SoftDelete"`,
			`"Operation":"Get-MailboxExportRequest","RecordType":1,"ResultStatus":"True","Workload":"Exchange"`,
		},
	},
	"mass_file_download.yml": {
		match: []string{
			`"Operation":"FileSyncDownloadedFull","RecordType":6,"Workload":"SharePoint","ObjectId":"https://contoso.sharepoint.com/sites/finance/Shared Documents"`,
		},
		noMatch: []string{
			`"Operation":"FileDownloaded","RecordType":6,"Workload":"SharePoint","ObjectId":"https://contoso.sharepoint.com/sites/finance/Shared Documents/q1.xlsx"`,
		},
	},
	"admin_role_grant.yml": {
		match: []string{
			`"Operation":"Add member to role.","RecordType":8,"ResultStatus":"Success","Workload":"AzureActiveDirectory","ModifiedProperties":[{"Name":"Role.DisplayName","NewValue":"Global Administrator","OldValue":""}]`,
			`"Operation":"Add-RoleGroupMember","RecordType":1,"ResultStatus":"True","Workload":"Exchange","Parameters":[{"Name":"Identity","Value":"Organization Management"},{"Name":"Member","Value":"mallory"}]`,
		},
		noMatch: []string{
			`"Operation":"Remove member from role.","RecordType":8,"ResultStatus":"Success","Workload":"AzureActiveDirectory"`,
			`"Operation":"Add member to group.","RecordType":8,"ResultStatus":"Success","Workload":"AzureActiveDirectory"`,
		},
	},
	"audit_logging_disabled.yml": {
		match: []string{
			`"Operation":"Set-AdminAuditLogConfig","RecordType":1,"ResultStatus":"True","Workload":"Exchange","Parameters":[{"Name":"UnifiedAuditLogIngestionEnabled","Value":"False"}]`,
			`"Operation":"Set-Mailbox","RecordType":1,"ResultStatus":"True","Workload":"Exchange","Parameters":[{"Name":"Identity","Value":"ceo"},{"Name":"AuditEnabled","Value":"False"}]`,
			`"Operation":"Set-MailboxAuditBypassAssociation","RecordType":1,"ResultStatus":"True","Workload":"Exchange","Parameters":[{"Name":"Identity","Value":"svc"},{"Name":"AuditBypassEnabled","Value":"True"}]`,
		},
		noMatch: []string{
			`"Operation":"Set-AdminAuditLogConfig","RecordType":1,"ResultStatus":"True","Workload":"Exchange","Parameters":[{"Name":"UnifiedAuditLogIngestionEnabled","Value":"True"}]`,
			`"Operation":"Set-Mailbox","RecordType":1,"ResultStatus":"True","Workload":"Exchange","Parameters":[{"Name":"Identity","Value":"ceo"},{"Name":"AuditEnabled","Value":"True"}]`,
		},
	},
}

func TestBundledRulesPositiveAndNegative(t *testing.T) {
	rs, err := Bundled()
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != len(bundledCases) {
		t.Errorf("%d bundled rules, %d with test cases: every bundled rule needs both", len(rs), len(bundledCases))
	}
	ids := map[string]bool{}
	for _, r := range rs {
		name := filepath.Base(r.Source)
		if ids[r.ID] || r.ID == "" {
			t.Errorf("%s: id %q missing or not unique", name, r.ID)
		}
		ids[r.ID] = true
		c, ok := bundledCases[name]
		if !ok || len(c.match) == 0 || len(c.noMatch) == 0 {
			t.Errorf("%s has no positive or no negative test record", name)
			continue
		}
		for i, raw := range c.match {
			if got := Matching(rec(t, "pos", raw), []*Rule{r}); len(got) != 1 {
				t.Errorf("%s: positive %d did not match: %s", name, i, raw)
			}
		}
		for i, raw := range c.noMatch {
			if got := Matching(rec(t, "neg", raw), []*Rule{r}); len(got) != 0 {
				t.Errorf("%s: negative %d matched: %s", name, i, raw)
			}
		}
	}
}

// TestSigmaFieldMapping: a rule written the way SigmaHQ writes m365 rules
// (eventSource, eventName, status) matches custos's records.
func TestSigmaFieldMapping(t *testing.T) {
	r, err := Parse([]byte(`title: New federated domain (SigmaHQ style)
logsource:
  product: m365
  service: exchange
detection:
  selection:
    eventSource: Exchange
    eventName: Add-FederatedDomain
    status: success
  condition: selection
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	hit := rec(t, "a", `"Operation":"Add-FederatedDomain","RecordType":1,"ResultStatus":"True","Workload":"Exchange"`)
	failed := rec(t, "b", `"Operation":"Add-FederatedDomain","RecordType":1,"ResultStatus":"False","Workload":"Exchange"`)
	if len(Matching(hit, []*Rule{r})) != 1 || len(Matching(failed, []*Rule{r})) != 0 {
		t.Error("eventSource/eventName/status mapping")
	}
	ev := Event(rec(t, "c", `"Operation":"Consent to application.","RecordType":8,"Workload":"AzureActiveDirectory","ModifiedProperties":[{"Name":"ConsentContext.IsAdminConsent","NewValue":"True","OldValue":""}],"ExtendedProperties":[{"Name":"extendedAuditEventCategory","Value":"ServicePrincipal"}]`))
	for field, want := range map[string]any{
		"ModifiedProperties.ConsentContext.IsAdminConsent": "True",
		"ExtendedProperties.extendedAuditEventCategory":    "ServicePrincipal",
		"clientip":   nil, // served from the normalised column below, not this spelling
		"ClientIP":   "198.51.100.4",
		"usertype":   float64(2),
		"RecordType": float64(8),
	} {
		got, ok := ev.Field(field)
		if want == nil {
			want = "198.51.100.4:50123" // the raw value, found ignoring case
		}
		if !ok || got != want {
			t.Errorf("Field(%q) = %v, %v; want %v", field, got, ok, want)
		}
	}
	if _, ok := ev.Field("Parameters.Nope"); ok {
		t.Error("a missing Name/Value entry was found")
	}
	if _, err := Parse([]byte("title: x\nlogsource:\n  product: windows\ndetection:\n  s:\n    A: b\n  condition: s"), "win.yml"); err == nil || !strings.Contains(err.Error(), `product "windows"`) {
		t.Errorf("a windows rule was accepted: %v", err)
	}
}

func TestLoadDirReportsBadRulesAndKeepsGoodOnes(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "good.yml"), []byte("title: good\ndetection:\n  s:\n    Operation: x\n  condition: s\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "also.yaml"), []byte("title: also\ndetection:\n  s:\n    Operation: y\n  condition: s\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "bad.yml"), []byte("title: bad\ndetection:\n  s:\n    Operation|nope: x\n  condition: s\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("not a rule"), 0o644)
	rs, err := LoadDir(dir)
	if len(rs) != 2 || err == nil || !strings.Contains(err.Error(), "bad.yml") || !strings.Contains(err.Error(), `modifier "nope"`) {
		t.Fatalf("LoadDir: %d rules, %v", len(rs), err)
	}
	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing directory was accepted")
	}
}

// TestBundledRulesCatchSimulatedAttacks: each attack scenario of the
// simulator sets off the rule written for it, and the normal activity of
// the same run sets off only the rules it should (admins granting mailbox
// access and adding group members happen in normal work).
func TestBundledRulesCatchSimulatedAttacks(t *testing.T) {
	rs, err := Bundled()
	if err != nil {
		t.Fatal(err)
	}
	for scenario, want := range map[string]string{
		simulate.ScenarioInboxRule:        "inbox_rule_forwarding.yml",
		simulate.ScenarioConsentPhishing:  "oauth_consent.yml",
		simulate.ScenarioDelegatedMailbox: "mailbox_full_access_grant.yml",
	} {
		sim, err := simulate.New(simulate.Config{Tenant: "contoso", Users: 40, Days: 3, Seed: 5,
			Start: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), Scenarios: []string{scenario}})
		if err != nil {
			t.Fatal(err)
		}
		hits := map[string]int{}
		var p audit.Parser
		for {
			raw, ok := sim.Next()
			if !ok {
				break
			}
			r, err := p.Parse(bytes.Clone(raw))
			if err != nil {
				t.Fatal(err)
			}
			_, injected := sim.Injected()
			for _, m := range Matching(&r, rs) {
				if injected {
					hits[filepath.Base(m.Source)]++
				}
			}
		}
		if hits[want] == 0 {
			t.Errorf("scenario %s: rule %s never matched its records (hits %v)", scenario, want, hits)
		}
	}
}

// TestBundledRulesOnPublishedRecords runs the pack over Microsoft's and
// vendors' published records (read in place, never copied here): the known
// attack-shaped ones match.
func TestBundledRulesOnPublishedRecords(t *testing.T) {
	const dir = "/work/shared/corpus/m365-published"
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	if len(files) == 0 {
		t.Skipf("corpus %s not present", dir)
	}
	rs, err := Bundled()
	if err != nil {
		t.Fatal(err)
	}
	byOp := map[string]map[string]int{} // operation -> rule -> matches
	var p audit.Parser
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			r, err := p.Parse(bytes.Clone(sc.Bytes()))
			if err != nil {
				continue
			}
			for _, m := range Matching(&r, rs) {
				if byOp[r.Operation] == nil {
					byOp[r.Operation] = map[string]int{}
				}
				byOp[r.Operation][filepath.Base(m.Source)]++
			}
		}
		fh.Close()
	}
	for op, rule := range map[string]string{
		"Consent to application.": "oauth_consent.yml",
		"Add member to role.":     "admin_role_grant.yml",
		"UpdateInboxRules":        "inbox_rule_forwarding.yml",
		"FileSyncDownloadedFull":  "mass_file_download.yml",
	} {
		if byOp[op][rule] == 0 {
			t.Errorf("no published %q record matched %s", op, rule)
		}
	}
	for op, m := range byOp {
		for rule := range m {
			if !slices.Contains([]string{"Consent to application.", "Add member to role.", "UpdateInboxRules", "Add-MailboxPermission",
				"New-InboxRule", "Set-InboxRule", "Set-Mailbox", "FileSyncDownloadedFull", "AlertTriggered", "New-ComplianceSearchAction"}, op) {
				t.Errorf("rule %s matched an unrelated published %q record", rule, op)
			}
		}
	}
	t.Logf("matches by operation: %v", byOp)
}

// TestGatesChangeNoMatch: every bundled rule is gated by operation, and
// Matching (which skips the records a gate rules out) finds exactly what
// evaluating every rule on every record finds, on simulated activity with
// every scenario and on the published records.
func TestGatesChangeNoMatch(t *testing.T) {
	rs, err := Bundled()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if !r.gated {
			t.Errorf("bundled rule %s has no operation gate", r.Source)
		}
	}
	var recs []audit.Record
	var p audit.Parser
	sim, err := simulate.New(simulate.Config{Tenant: "contoso", Users: 40, Days: 3, Seed: 9,
		Start: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC), Scenarios: simulate.ScenarioNames()})
	if err != nil {
		t.Fatal(err)
	}
	for {
		raw, ok := sim.Next()
		if !ok {
			break
		}
		r, err := p.Parse(bytes.Clone(raw))
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	files, _ := filepath.Glob("/work/shared/corpus/m365-published/*.ndjson")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			if r, err := p.Parse(line); err == nil {
				recs = append(recs, r)
			}
		}
	}
	// Records whose operation differs from a rule's only in case or by a
	// character that lower-cases to ASCII (İ) still reach the rule.
	for _, op := range []string{"add-mailboxpermission", "CONSENT TO APPLICATION.", "Set-\u0130nboxRule", "Set-Mailbox ", ""} {
		r := audit.Record{ID: op, Operation: op, Raw: []byte(`{"Parameters":[{"Name":"AccessRights","Value":"FullAccess"},{"Name":"ForwardingSmtpAddress","Value":"a@b"},{"Name":"ForwardTo","Value":"x@y"}]}`)}
		if n := len(Matching(&r, rs)); (n > 0) != (op != "Set-Mailbox " && op != "") {
			t.Errorf("operation %q matched %d rules", op, n)
		}
		recs = append(recs, r)
	}
	matched := 0
	for i := range recs {
		r := &recs[i]
		var all []*Rule
		for _, x := range rs {
			if x.Match(Event(r)) {
				all = append(all, x)
			}
		}
		if got := Matching(r, rs); !slices.Equal(got, all) {
			t.Fatalf("record %q (%s): gated matching found %v, every rule evaluated %v", r.ID, r.Operation, got, all)
		}
		matched += len(all)
	}
	if matched < 10 {
		t.Fatalf("only %d matches in %d records: the comparison proves little", matched, len(recs))
	}
	t.Logf("%d records, %d matches", len(recs), matched)
}
