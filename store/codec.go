package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/custos-audit/custos/audit"
)

// A WAL payload is one group commit: a format byte, a record count, then
// each record's extracted columns and raw bytes. The columns are stored
// rather than re-derived on replay because a record may have been mapped
// by a configuration that has changed since. Version 2 added the
// AppAccessContext name, correlation id and issue time; version 1 payloads
// are still read.
const (
	payloadV1 = 1
	payloadV2 = 2
)

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixNano())
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// encodeRecords appends the payload for recs to b.
func encodeRecords(b []byte, recs []*audit.Record) []byte {
	b = append(b, payloadV2)
	b = binary.AppendUvarint(b, uint64(len(recs)))
	for _, r := range recs {
		b = appendString(b, r.Tenant)
		b = appendString(b, r.Source)
		b = appendTime(b, r.Received)
		b = appendString(b, r.ID)
		b = appendTime(b, r.CreationTime)
		b = binary.AppendVarint(b, int64(r.RecordType))
		b = appendString(b, r.Operation)
		b = appendString(b, r.OrganizationID)
		b = binary.AppendVarint(b, int64(r.UserType))
		b = appendString(b, r.UserKey)
		b = appendString(b, r.Workload)
		b = appendString(b, r.ResultStatus)
		b = appendString(b, r.ObjectID)
		b = appendString(b, r.UserID)
		b = appendString(b, r.ClientIP)
		b = binary.AppendVarint(b, int64(r.Scope))
		b = appendString(b, r.AppID)
		b = appendString(b, r.ClientAppID)
		b = appendString(b, r.SessionID)
		b = appendString(b, r.UniqueTokenID)
		b = appendString(b, r.ClientInfoString)
		b = binary.AppendVarint(b, int64(r.LogonType))
		b = appendString(b, r.MailboxOwnerUPN)
		b = appendString(b, r.MailboxGUID)
		b = appendString(b, r.MailAccessType)
		b = appendBool(b, r.IsThrottled)
		b = binary.AppendVarint(b, r.OperationCount)
		b = binary.AppendUvarint(b, uint64(len(r.InternetMessageIDs)))
		for _, m := range r.InternetMessageIDs {
			b = appendString(b, m)
		}
		b = appendBool(b, r.ExternalAccess)
		b = appendString(b, r.ClientAppName)
		b = appendString(b, r.CorrelationID)
		b = appendTime(b, r.IssuedAtTime)
		b = binary.AppendUvarint(b, uint64(len(r.Raw)))
		b = append(b, r.Raw...)
	}
	return b
}

var errShortPayload = errors.New("truncated record payload")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShortPayload
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShortPayload
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = errShortPayload
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) time() time.Time {
	ns := d.varint()
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}

func (d *decoder) bool() bool {
	if d.err != nil {
		return false
	}
	if len(d.b) == 0 {
		d.err = errShortPayload
		return false
	}
	v := d.b[0] != 0
	d.b = d.b[1:]
	return v
}

func (d *decoder) int32() int32 {
	v := d.varint()
	if v < -1<<31 || v > 1<<31-1 {
		d.err = fmt.Errorf("integer %d out of range", v)
	}
	return int32(v)
}

// decodeRecords parses a payload written by encodeRecords. Raw slices are
// copies, so the payload buffer may be reused.
func decodeRecords(p []byte) ([]audit.Record, error) {
	if len(p) == 0 || (p[0] != payloadV1 && p[0] != payloadV2) {
		return nil, fmt.Errorf("unknown record payload format")
	}
	version := p[0]
	d := decoder{b: p[1:]}
	n := d.uvarint()
	if d.err != nil {
		return nil, d.err
	}
	if n > uint64(len(p)) { // each record takes at least one byte
		return nil, errShortPayload
	}
	recs := make([]audit.Record, n)
	for i := range recs {
		r := &recs[i]
		r.Tenant = d.string()
		r.Source = d.string()
		r.Received = d.time()
		r.ID = d.string()
		r.CreationTime = d.time()
		r.RecordType = d.int32()
		r.Operation = d.string()
		r.OrganizationID = d.string()
		r.UserType = d.int32()
		r.UserKey = d.string()
		r.Workload = d.string()
		r.ResultStatus = d.string()
		r.ObjectID = d.string()
		r.UserID = d.string()
		r.ClientIP = d.string()
		r.Scope = d.int32()
		r.AppID = d.string()
		r.ClientAppID = d.string()
		r.SessionID = d.string()
		r.UniqueTokenID = d.string()
		r.ClientInfoString = d.string()
		r.LogonType = d.int32()
		r.MailboxOwnerUPN = d.string()
		r.MailboxGUID = d.string()
		r.MailAccessType = d.string()
		r.IsThrottled = d.bool()
		r.OperationCount = d.varint()
		if m := d.uvarint(); m > 0 && d.err == nil {
			if m > uint64(len(d.b)) {
				return nil, errShortPayload
			}
			r.InternetMessageIDs = make([]string, m)
			for j := range r.InternetMessageIDs {
				r.InternetMessageIDs[j] = d.string()
			}
		}
		r.ExternalAccess = d.bool()
		if version >= payloadV2 {
			r.ClientAppName = d.string()
			r.CorrelationID = d.string()
			r.IssuedAtTime = d.time()
		}
		r.Raw = append([]byte(nil), d.bytes()...)
		if d.err != nil {
			return nil, fmt.Errorf("record %d: %w", i, d.err)
		}
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%d trailing bytes after %d records", len(d.b), n)
	}
	return recs, nil
}
