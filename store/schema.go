package store

import (
	"strings"
	"time"

	"github.com/custos-audit/custos/audit"
)

// column is one extracted column as read from the head and stored in the
// sealed Parquet files. The order of columns is the order of the Parquet
// schema; add new ones at the end so older files stay readable with
// union_by_name. Exactly one accessor is set, matching typ.
type column struct {
	name  string
	typ   string
	str   func(r *audit.Record) string    // VARCHAR; "" is NULL
	i32   func(r *audit.Record) int32     // INTEGER; audit.Absent is NULL
	i64   func(r *audit.Record) int64     // BIGINT
	flag  func(r *audit.Record) bool      // BOOLEAN
	time  func(r *audit.Record) time.Time // TIMESTAMP; zero is NULL
	bytes func(r *audit.Record) []byte    // VARCHAR written without a copy
}

// columns are the record columns.
var columns = []column{
	{name: "tenant", typ: "VARCHAR", str: func(r *audit.Record) string { return r.Tenant }},
	{name: "id", typ: "VARCHAR", str: func(r *audit.Record) string { return r.ID }},
	{name: "creation_time", typ: "TIMESTAMP", time: func(r *audit.Record) time.Time { return r.CreationTime }},
	{name: "record_type", typ: "INTEGER", i32: func(r *audit.Record) int32 { return r.RecordType }},
	{name: "workload", typ: "VARCHAR", str: func(r *audit.Record) string { return r.Workload }},
	{name: "operation", typ: "VARCHAR", str: func(r *audit.Record) string { return r.Operation }},
	{name: "organization_id", typ: "VARCHAR", str: func(r *audit.Record) string { return r.OrganizationID }},
	{name: "user_type", typ: "INTEGER", i32: func(r *audit.Record) int32 { return r.UserType }},
	{name: "user_key", typ: "VARCHAR", str: func(r *audit.Record) string { return r.UserKey }},
	{name: "user_id", typ: "VARCHAR", str: func(r *audit.Record) string { return r.UserID }},
	{name: "client_ip", typ: "VARCHAR", str: func(r *audit.Record) string { return r.ClientIP }},
	{name: "object_id", typ: "VARCHAR", str: func(r *audit.Record) string { return r.ObjectID }},
	{name: "result_status", typ: "VARCHAR", str: func(r *audit.Record) string { return r.ResultStatus }},
	{name: "scope", typ: "INTEGER", i32: func(r *audit.Record) int32 { return r.Scope }},
	{name: "app_id", typ: "VARCHAR", str: func(r *audit.Record) string { return r.AppID }},
	{name: "client_app_id", typ: "VARCHAR", str: func(r *audit.Record) string { return r.ClientAppID }},
	{name: "session_id", typ: "VARCHAR", str: func(r *audit.Record) string { return r.SessionID }},
	{name: "unique_token_id", typ: "VARCHAR", str: func(r *audit.Record) string { return r.UniqueTokenID }},
	{name: "client_info_string", typ: "VARCHAR", str: func(r *audit.Record) string { return r.ClientInfoString }},
	{name: "logon_type", typ: "INTEGER", i32: func(r *audit.Record) int32 { return r.LogonType }},
	{name: "mailbox_owner_upn", typ: "VARCHAR", str: func(r *audit.Record) string { return r.MailboxOwnerUPN }},
	{name: "mailbox_guid", typ: "VARCHAR", str: func(r *audit.Record) string { return r.MailboxGUID }},
	{name: "mail_access_type", typ: "VARCHAR", str: func(r *audit.Record) string { return r.MailAccessType }},
	{name: "is_throttled", typ: "BOOLEAN", flag: func(r *audit.Record) bool { return r.IsThrottled }},
	{name: "operation_count", typ: "BIGINT", i64: func(r *audit.Record) int64 { return r.OperationCount }},
	// Message ids never contain spaces (RFC 5322 msg-id), so a space-joined
	// string keeps them searchable without a LIST column.
	{name: "internet_message_ids", typ: "VARCHAR", str: func(r *audit.Record) string { return strings.Join(r.InternetMessageIDs, " ") }},
	{name: "external_access", typ: "BOOLEAN", flag: func(r *audit.Record) bool { return r.ExternalAccess }},
	{name: "source", typ: "VARCHAR", str: func(r *audit.Record) string { return r.Source }},
	{name: "received", typ: "TIMESTAMP", time: func(r *audit.Record) time.Time { return r.Received }},
	{name: "client_app_name", typ: "VARCHAR", str: func(r *audit.Record) string { return r.ClientAppName }},
	{name: "correlation_id", typ: "VARCHAR", str: func(r *audit.Record) string { return r.CorrelationID }},
	{name: "issued_at_time", typ: "TIMESTAMP", time: func(r *audit.Record) time.Time { return r.IssuedAtTime }},
	// raw is last: it is most of the bytes and read only for returned rows.
	{name: "raw", typ: "VARCHAR", bytes: func(r *audit.Record) []byte { return r.Raw }},
}

// columnList is "tenant, id, ..., raw".
func columnList() string {
	names := make([]string, len(columns))
	for i, c := range columns {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

// sqlString quotes s as a SQL string literal.
func sqlString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
