// Package audit holds the record model: the Microsoft 365 unified audit log
// schema, the columns custos extracts from it for search and detection, and
// the parsers that turn raw JSON into records without losing a byte of it.
package audit

import (
	"math"
	"time"
)

// Absent marks an integer column whose field was missing or unusable in the
// raw record. RecordType -1 is a real value seen in the wild, so zero and -1
// cannot serve.
const Absent = math.MinInt32

// MaxRecordSize is the largest raw record accepted. Real records reach tens
// of KB (alerts, investigations); anything near a MiB is hostile or broken.
const MaxRecordSize = 1 << 20

// Record is one audit event: the extracted columns plus the original JSON,
// byte for byte. A record is identified by (Tenant, ID).
type Record struct {
	// Ingest metadata, set by the receiving side, never by the record itself.
	Tenant   string
	Source   string    // who delivered it: token name, collector, forwarder
	Received time.Time // UTC, when custos received it

	// Common schema.
	ID             string
	CreationTime   time.Time // UTC; a missing zone means UTC
	RecordType     int32     // Absent when missing
	Operation      string
	OrganizationID string
	UserType       int32 // Absent when missing
	UserKey        string
	Workload       string
	ResultStatus   string
	ObjectID       string
	UserID         string
	ClientIP       string // normalised address (no port, brackets, zone or ::ffff: prefix); "" if none usable
	Scope          int32  // Absent when missing

	// Application context (AppAccessContext and the Exchange mailbox fields).
	AppID            string    // AppId, else AppAccessContext.APIId
	ClientAppID      string    // ClientAppId, else AppAccessContext.ClientAppId
	SessionID        string    // SessionId, else AppAccessContext.AADSessionId
	UniqueTokenID    string    // AppAccessContext.UniqueTokenId
	ClientAppName    string    // AppAccessContext.ClientAppName
	CorrelationID    string    // AppAccessContext.CorrelationId, not the top-level CorrelationId (which can differ)
	IssuedAtTime     time.Time // AppAccessContext.IssuedAtTime, UTC; zero when missing or unparsable
	ClientInfoString string
	LogonType        int32 // Absent when missing
	MailboxOwnerUPN  string
	MailboxGUID      string

	// MailItemsAccessed specifics.
	MailAccessType     string   // OperationProperties MailAccessType: Bind or Sync
	IsThrottled        bool     // OperationProperties IsThrottled
	OperationCount     int64    // Absent-free: 0 when missing
	InternetMessageIDs []string // InternetMessageId of Folders[].FolderItems[], then AffectedItems[], then Item
	ExternalAccess     bool

	// Raw is the record exactly as received (surrounding whitespace trimmed).
	Raw []byte
}

// Day is the UTC day the record belongs to, the unit of partitioning.
func (r *Record) Day() time.Time {
	return r.CreationTime.UTC().Truncate(24 * time.Hour)
}
