package selfaudit

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/ingest"
	"github.com/custos-audit/custos/store"
)

// busyIngester answers ErrBusy busy times, then parses and keeps the record.
type busyIngester struct {
	busy  int
	calls int
	got   []audit.Record
}

func (b *busyIngester) Ingest(ctx context.Context, batch ingest.Batch) (ingest.Result, error) {
	b.calls++
	if b.calls <= b.busy {
		return ingest.Result{}, store.ErrBusy
	}
	raw, _ := io.ReadAll(batch.Body)
	var p audit.Parser
	r, err := p.Parse(raw)
	if err != nil {
		return ingest.Result{Rejected: 1}, nil
	}
	b.got = append(b.got, r)
	return ingest.Result{Accepted: 1}, nil
}

func TestRecordIsAValidAuditRecord(t *testing.T) {
	in := &busyIngester{busy: 2}
	r := New(in)
	err := r.Record(context.Background(), Action{Tenant: "acme", Operation: SearchExported, ClientIP: "192.0.2.1",
		Actor:      Actor{TokenID: "tok1", TokenName: "analyst", Role: "read"},
		Parameters: map[string]any{"keyword": `"quoted" \ and <tags>`}})
	if err != nil {
		t.Fatal(err)
	}
	if in.calls != 3 || len(in.got) != 1 {
		t.Fatalf("%d calls, %d records: busy answers were not retried", in.calls, len(in.got))
	}
	got := in.got[0]
	if got.Workload != Workload || got.Operation != SearchExported || got.UserID != "analyst" || got.UserKey != "tok1" ||
		got.ClientIP != "192.0.2.1" || got.RecordType != int32(audit.CustosAudit) || got.ResultStatus != "Succeeded" ||
		got.UserType != 0 || time.Since(got.CreationTime) > time.Minute {
		t.Errorf("record: %+v", got)
	}
	var raw struct{ Parameters map[string]string }
	if err := json.Unmarshal(got.Raw, &raw); err != nil || raw.Parameters["keyword"] != `"quoted" \ and <tags>` {
		t.Errorf("parameters did not survive: %s", got.Raw)
	}
}

func TestRecordGivesUpWhenTheStoreStaysBusy(t *testing.T) {
	in := &busyIngester{busy: 1 << 30}
	r := New(in)
	r.wait = 200 * time.Millisecond
	err := r.Record(context.Background(), Action{Tenant: "acme", Operation: TokenCreated, Actor: System})
	if !errors.Is(err, store.ErrBusy) || in.calls < 2 {
		t.Fatalf("err = %v after %d calls; want ErrBusy after retrying", err, in.calls)
	}
}
