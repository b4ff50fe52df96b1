package store

import (
	"database/sql/driver"
	"strings"
	"time"

	"github.com/custos-audit/custos/audit"
)

// column is one extracted column as stored in the head tables and in the
// sealed Parquet files. The order of columns is the order of the Parquet
// schema; add new ones at the end so older files stay readable with
// union_by_name.
type column struct {
	name string
	typ  string
	get  func(r *audit.Record) driver.Value
}

func str(s string) driver.Value {
	if s == "" {
		return nil
	}
	return s
}

func opt(v int32) driver.Value {
	if v == audit.Absent {
		return nil
	}
	return v
}

func ts(t time.Time) driver.Value {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

// columns are the record columns, without the head-only seq column.
var columns = []column{
	{"tenant", "VARCHAR", func(r *audit.Record) driver.Value { return r.Tenant }},
	{"id", "VARCHAR", func(r *audit.Record) driver.Value { return r.ID }},
	{"creation_time", "TIMESTAMP", func(r *audit.Record) driver.Value { return r.CreationTime.UTC() }},
	{"record_type", "INTEGER", func(r *audit.Record) driver.Value { return opt(r.RecordType) }},
	{"workload", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.Workload) }},
	{"operation", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.Operation) }},
	{"organization_id", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.OrganizationID) }},
	{"user_type", "INTEGER", func(r *audit.Record) driver.Value { return opt(r.UserType) }},
	{"user_key", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.UserKey) }},
	{"user_id", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.UserID) }},
	{"client_ip", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.ClientIP) }},
	{"object_id", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.ObjectID) }},
	{"result_status", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.ResultStatus) }},
	{"scope", "INTEGER", func(r *audit.Record) driver.Value { return opt(r.Scope) }},
	{"app_id", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.AppID) }},
	{"client_app_id", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.ClientAppID) }},
	{"session_id", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.SessionID) }},
	{"unique_token_id", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.UniqueTokenID) }},
	{"client_info_string", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.ClientInfoString) }},
	{"logon_type", "INTEGER", func(r *audit.Record) driver.Value { return opt(r.LogonType) }},
	{"mailbox_owner_upn", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.MailboxOwnerUPN) }},
	{"mailbox_guid", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.MailboxGUID) }},
	{"mail_access_type", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.MailAccessType) }},
	{"is_throttled", "BOOLEAN", func(r *audit.Record) driver.Value { return r.IsThrottled }},
	{"operation_count", "BIGINT", func(r *audit.Record) driver.Value { return r.OperationCount }},
	// Message ids never contain spaces (RFC 5322 msg-id), so a space-joined
	// string keeps them searchable without a LIST column.
	{"internet_message_ids", "VARCHAR", func(r *audit.Record) driver.Value { return str(strings.Join(r.InternetMessageIDs, " ")) }},
	{"external_access", "BOOLEAN", func(r *audit.Record) driver.Value { return r.ExternalAccess }},
	{"source", "VARCHAR", func(r *audit.Record) driver.Value { return str(r.Source) }},
	{"received", "TIMESTAMP", func(r *audit.Record) driver.Value { return ts(r.Received) }},
	// raw is last: it is most of the bytes and read only for returned rows.
	{"raw", "VARCHAR", func(r *audit.Record) driver.Value { return string(r.Raw) }},
}

// columnList is "tenant, id, ..., raw".
func columnList() string {
	names := make([]string, len(columns))
	for i, c := range columns {
		names[i] = c.name
	}
	return strings.Join(names, ", ")
}

// headDDL creates a head table: seq first, then the record columns.
func headDDL(table string) string {
	var b strings.Builder
	b.WriteString("CREATE TABLE ")
	b.WriteString(table)
	b.WriteString(" (seq UBIGINT")
	for _, c := range columns {
		b.WriteString(", ")
		b.WriteString(c.name)
		b.WriteString(" ")
		b.WriteString(c.typ)
	}
	b.WriteString(")")
	return b.String()
}

// sqlString quotes s as a SQL string literal.
func sqlString(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
