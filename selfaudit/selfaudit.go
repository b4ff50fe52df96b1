// Package selfaudit records what people do with custos as audit records in
// custos itself: every search, export, query job, retention change, token
// and tenant change. The records go through ingest like any other, into the
// acting tenant's log, so they are searched, retained and exported with the
// same tools and cannot be told apart by a different code path. There is no
// switch to turn it off.
package selfaudit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/custos-audit/custos/audit"
	"github.com/custos-audit/custos/ingest"
	"github.com/custos-audit/custos/store"
)

// Workload is the Workload of every self-audit record.
const Workload = "Custos"

// Source names custos itself as the sender of its self-audit records.
const Source = "custos"

// SystemTenant is the tenant whose log holds actions that concern no one
// tenant: global tokens, and the server's own jobs across tenants.
const SystemTenant = "custos"

// Operations recorded.
const (
	SearchQueryInitiated   = "SearchQueryInitiated"   // a search page, count or histogram
	SearchExported         = "SearchExported"         // a search streamed without a limit
	AuditQueryCreated      = "AuditQueryCreated"      // an asynchronous query job
	AuditQueryCancelled    = "AuditQueryCancelled"    //
	AuditQueryDeleted      = "AuditQueryDeleted"      //
	AuditQueryRecordsRead  = "AuditQueryRecordsRead"  // a page of a job's results
	RetentionPolicyCreated = "RetentionPolicyCreated" //
	RetentionPolicyChanged = "RetentionPolicyChanged" //
	RetentionPolicyDeleted = "RetentionPolicyDeleted" //
	LegalHoldChanged       = "LegalHoldChanged"       //
	RetentionEnforced      = "RetentionEnforced"      // an enforcement run, or a dry run
	TokenCreated           = "TokenCreated"           //
	TokenRevoked           = "TokenRevoked"           //
	TenantCreated          = "TenantCreated"          //
	AccessDenied           = "AccessDenied"           // a token tried what its role does not allow
	AlertStatusChanged     = "AlertStatusChanged"     // an alert acknowledged or closed
	AllowlistChanged       = "AllowlistChanged"       // a detection allowlist entry added or removed
	BaselineRebuilt        = "BaselineRebuilt"        // baselines relearned from stored history
	NotificationChanged    = "NotificationChanged"    // a notification channel added or removed
	NotificationTested     = "NotificationTested"     // a test message sent to a channel
	RuleChanged            = "RuleChanged"            // a tenant's detection rule added, replaced or removed
	SourceChanged          = "SourceChanged"          // a configured source (collector) added or removed
)

// Actor is who acted: a token, or custos itself.
type Actor struct {
	TokenID   string
	TokenName string
	Role      string // ingest, read, admin; "" for custos itself
	Global    bool   // the token is not bound to one tenant
}

// System is custos acting on its own (retention enforcement).
var System = Actor{TokenName: "custos"}

// Action is one audited thing done.
type Action struct {
	Tenant    string
	Operation string
	Actor     Actor
	ClientIP  string // the caller's address, as the server saw it
	UserAgent string
	ObjectID  string // what was acted on: a policy, a token, a query job
	Failed    bool   // the action was refused or failed
	// Parameters are the action's inputs and outcome (the filter of a
	// search, a policy before and after), kept in the record as JSON.
	Parameters any
}

// Ingester is the part of ingest the recorder needs.
type Ingester interface {
	Ingest(ctx context.Context, b ingest.Batch) (ingest.Result, error)
}

// Recorder writes self-audit records.
type Recorder struct {
	ingest Ingester
	now    func() time.Time
	// wait bounds how long Record retries while the store is busy.
	wait time.Duration
}

// New returns a recorder writing through in.
func New(in Ingester) *Recorder {
	return &Recorder{ingest: in, now: time.Now, wait: 10 * time.Second}
}

// record is the JSON of a self-audit record: Microsoft's common schema
// where a field fits, so the same filters and tools work on it.
type record struct {
	ID             string `json:"Id"`
	CreationTime   string `json:"CreationTime"`
	RecordType     int    `json:"RecordType"`
	Operation      string `json:"Operation"`
	OrganizationID string `json:"OrganizationId"`
	UserType       int    `json:"UserType"`
	UserKey        string `json:"UserKey"`
	UserID         string `json:"UserId"`
	Workload       string `json:"Workload"`
	ResultStatus   string `json:"ResultStatus"`
	ObjectID       string `json:"ObjectId,omitempty"`
	ClientIP       string `json:"ClientIP,omitempty"`
	UserAgent      string `json:"UserAgent,omitempty"`
	TokenRole      string `json:"TokenRole,omitempty"`
	TokenScope     string `json:"TokenScope,omitempty"`
	Parameters     any    `json:"Parameters,omitempty"`
}

// Microsoft's UserType values used here.
const (
	userTypeRegular = 0
	userTypeAdmin   = 2
	userTypeSystem  = 4
)

// Record writes a as an audit record and returns once it is durable. The
// caller must not go ahead with an action it could not record: an
// unaudited search is what this package exists to prevent.
func (r *Recorder) Record(ctx context.Context, a Action) error {
	now := r.now().UTC()
	rec := record{
		ID:             newID(),
		CreationTime:   now.Format("2006-01-02T15:04:05.0000000Z"),
		RecordType:     int(audit.CustosAudit),
		Operation:      a.Operation,
		OrganizationID: a.Tenant,
		UserKey:        a.Actor.TokenID,
		UserID:         a.Actor.TokenName,
		Workload:       Workload,
		ResultStatus:   "Succeeded",
		ObjectID:       a.ObjectID,
		ClientIP:       a.ClientIP,
		UserAgent:      a.UserAgent,
		TokenRole:      a.Actor.Role,
		Parameters:     a.Parameters,
	}
	switch {
	case a.Actor.TokenID == "":
		rec.UserType = userTypeSystem
	case a.Actor.Role == "admin":
		rec.UserType = userTypeAdmin
	default:
		rec.UserType = userTypeRegular
	}
	if a.Actor.TokenID != "" {
		rec.TokenScope = "tenant"
		if a.Actor.Global {
			rec.TokenScope = "global"
		}
	}
	if a.Failed {
		rec.ResultStatus = "Failed"
	}
	if rec.UserID == "" {
		rec.UserID = a.Actor.TokenID
	}
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("self-audit %s: %w", a.Operation, err)
	}
	deadline := now.Add(r.wait)
	for {
		res, err := r.ingest.Ingest(ctx, ingest.Batch{Tenant: a.Tenant, Source: Source, Body: bytes.NewReader(raw), NDJSON: true})
		if errors.Is(err, store.ErrBusy) && r.now().Before(deadline) {
			select {
			case <-ctx.Done():
				return fmt.Errorf("self-audit %s: %w", a.Operation, ctx.Err())
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("self-audit %s: %w", a.Operation, err)
		}
		if res.Accepted != 1 {
			return fmt.Errorf("self-audit %s: record not accepted: %+v", a.Operation, res.Errors)
		}
		return nil
	}
}

// newID is a random UUID (version 4), the shape of Microsoft's record ids.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
