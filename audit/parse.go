package audit

import (
	"bytes"
	"math"
	"strconv"
	"time"
)

// Parser parses Microsoft 365 unified audit log records (the Management
// Activity API common schema plus the Exchange mailbox fields). A Parser
// reuses its buffers from record to record, so it is not safe for concurrent
// use. The zero value is ready to use.
//
// Rejection is kept to what makes a record unusable: not a strict JSON
// object, too large, or an Id, CreationTime, Operation or RecordType that is
// missing, of the wrong type or unparsable. Any other field that is absent or
// has an unexpected shape only leaves its column empty (or Absent); the raw
// record keeps it.
type Parser struct {
	top    []topMember
	strs   arena
	nested []byte // JSON text held in a string field, e.g. OperationProperties
}

// Parse parses one record with a fresh Parser. Use a Parser to parse many.
func Parse(raw []byte) (Record, error) {
	var p Parser
	return p.Parse(raw)
}

// Parse parses one record. raw may be reused once Parse returns: the
// record's Raw is a copy of raw without its surrounding whitespace, and the
// extracted strings are copies too. To save allocations all strings of one
// record share one backing array; a caller that keeps a few columns of many
// records for long (a baseline keyed by AppID, say) should strings.Clone them.
//
// On error the record is empty except for ID, set when the Id was readable,
// so the caller can name the record it rejects.
func (p *Parser) Parse(raw []byte) (Record, error) {
	r, err := p.ParseShared(raw)
	if err == nil {
		r.Raw = append([]byte(nil), r.Raw...)
	}
	return r, err
}

// ParseShared is Parse without the copy of raw: the record's Raw is raw
// itself, trimmed. It is for callers that read each input into memory of
// its own and never change it (the ingest path, where the copy of every
// record was a measurable share of the cost); the record then keeps that
// memory alive.
func (p *Parser) ParseShared(raw []byte) (Record, error) {
	raw = trimSpace(raw)
	p.top = p.top[:0]
	if err := checkRecord(raw, &p.top); err != nil {
		return Record{}, err
	}
	// A huge record leaves buffers sized for it; drop them rather than keep
	// them alive for the typical 1–2 KB record.
	if len(raw) > 64<<10 {
		defer func() { *p = Parser{} }()
	}

	var f m365Fields
	for _, m := range p.top {
		k := raw[m.keyLo:m.keyHi]
		if m.keyEscaped {
			k = appendUnescaped(nil, k)
		}
		f.set(k, raw[m.valLo:m.valHi])
	}
	p.strs.reset()
	r, err := p.extract(&f)
	if err != nil {
		return r, err
	}
	r.Raw = raw
	return r, nil
}

// checkRecord checks that raw, already trimmed, is one JSON object of
// acceptable size, and appends its members to *top.
func checkRecord(raw []byte, top *[]topMember) error {
	if len(raw) > MaxRecordSize {
		return &FieldError{Reason: "record is " + strconv.Itoa(len(raw)) + " bytes, over the " + strconv.Itoa(MaxRecordSize) + " byte limit"}
	}
	if len(raw) == 0 {
		return &FieldError{Reason: "empty record"}
	}
	if off, reason := validateTop(raw, top); reason != "" {
		return &FieldError{Reason: "invalid JSON at byte " + strconv.Itoa(off) + ": " + reason}
	}
	if raw[0] != '{' {
		return &FieldError{Reason: "not a JSON object (got " + kind(raw) + ")"}
	}
	return nil
}

// unescapeKey decodes a member's raw key if it has escapes, which real records
// never do but JSON allows.
func unescapeKey(k []byte) []byte {
	if bytes.IndexByte(k, '\\') >= 0 {
		return appendUnescaped(nil, k)
	}
	return k
}

// m365Fields holds the text of the top-level fields the Parser reads, found
// in one pass over the record's members. Keys are matched exactly, as
// Microsoft writes them; when a key is repeated, the last one wins, as in
// encoding/json.
type m365Fields struct {
	id, creationTime, recordType, operation, organizationID, userType, userKey,
	workload, resultStatus, objectID, userID, clientIP, clientIPAddress,
	actorIPAddress, scope, appID, clientAppID, sessionID, appAccessContext,
	logonType, mailboxOwnerUPN, mailboxGUID, clientInfoString,
	operationProperties, operationCount, folders, affectedItems, item,
	externalAccess []byte
}

func (f *m365Fields) set(k, v []byte) {
	switch string(k) {
	case "Id":
		f.id = v
	case "CreationTime":
		f.creationTime = v
	case "RecordType":
		f.recordType = v
	case "Operation":
		f.operation = v
	case "OrganizationId":
		f.organizationID = v
	case "UserType":
		f.userType = v
	case "UserKey":
		f.userKey = v
	case "Workload":
		f.workload = v
	case "ResultStatus":
		f.resultStatus = v
	case "ObjectId":
		f.objectID = v
	case "UserId":
		f.userID = v
	case "ClientIP":
		f.clientIP = v
	case "ClientIPAddress":
		f.clientIPAddress = v
	case "ActorIpAddress":
		f.actorIPAddress = v
	case "Scope":
		f.scope = v
	case "AppId":
		f.appID = v
	case "ClientAppId":
		f.clientAppID = v
	case "SessionId":
		f.sessionID = v
	case "AppAccessContext":
		f.appAccessContext = v
	case "LogonType":
		f.logonType = v
	case "MailboxOwnerUPN":
		f.mailboxOwnerUPN = v
	case "MailboxGuid":
		f.mailboxGUID = v
	case "ClientInfoString":
		f.clientInfoString = v
	case "OperationProperties":
		f.operationProperties = v
	case "OperationCount":
		f.operationCount = v
	case "Folders":
		f.folders = v
	case "AffectedItems":
		f.affectedItems = v
	case "Item":
		f.item = v
	case "ExternalAccess":
		f.externalAccess = v
	}
}

func (p *Parser) extract(f *m365Fields) (Record, error) {
	var r Record
	a := &p.strs

	id, err := a.required("Id", f.id)
	if err != nil {
		return r, err
	}
	// Later errors still name the record they reject.
	fail := func(err error) (Record, error) {
		return Record{ID: string(a.buf[id.lo:id.hi])}, err
	}
	if r.CreationTime, err = creationTime("CreationTime", f.creationTime); err != nil {
		return fail(err)
	}
	op, err := a.required("Operation", f.operation)
	if err != nil {
		return fail(err)
	}
	if r.RecordType, err = recordType("RecordType", f.recordType); err != nil {
		return fail(err)
	}

	org := a.text(f.organizationID)
	userKey := a.text(f.userKey)
	workload := a.text(f.workload)
	result := a.text(f.resultStatus)
	objectID := a.text(f.objectID)
	userID := a.text(f.userID)
	clientIP := a.ip(f.clientIP, f.clientIPAddress, f.actorIPAddress)
	appID := a.text(f.appID)
	clientAppID := a.text(f.clientAppID)
	sessionID := a.text(f.sessionID)
	ctx := readAppAccessContext(f.appAccessContext)
	if appID.empty() {
		appID = a.text(ctx.apiID)
	}
	if clientAppID.empty() {
		clientAppID = a.text(ctx.clientAppID)
	}
	if sessionID.empty() {
		sessionID = a.text(ctx.sessionID)
	}
	tokenID := a.text(ctx.uniqueTokenID)
	clientAppName := a.text(ctx.clientAppName)
	correlationID := a.text(ctx.correlationID)
	clientInfo := a.text(f.clientInfoString)
	upn := a.text(f.mailboxOwnerUPN)
	guid := a.text(f.mailboxGUID)
	access, throttled := p.operationProperties(f.operationProperties)
	msgStart := len(a.spans)
	p.messageIDs(f.folders, f.affectedItems, f.item)

	r.UserType = int32OrAbsent(f.userType)
	r.Scope = int32OrAbsent(f.scope)
	r.LogonType = int32OrAbsent(f.logonType)
	if n, ok := integer(f.operationCount); ok {
		r.OperationCount = n
	}
	r.ExternalAccess, _ = boolean(f.externalAccess)
	r.IsThrottled = throttled
	r.IssuedAtTime = optionalTime(ctx.issuedAtTime)

	s := a.string()
	r.ID = s.of(id)
	r.Operation = s.of(op)
	r.OrganizationID = s.of(org)
	r.UserKey = s.of(userKey)
	r.Workload = s.of(workload)
	r.ResultStatus = s.of(result)
	r.ObjectID = s.of(objectID)
	r.UserID = s.of(userID)
	r.ClientIP = s.of(clientIP)
	r.AppID = s.of(appID)
	r.ClientAppID = s.of(clientAppID)
	r.SessionID = s.of(sessionID)
	r.UniqueTokenID = s.of(tokenID)
	r.ClientAppName = s.of(clientAppName)
	r.CorrelationID = s.of(correlationID)
	r.ClientInfoString = s.of(clientInfo)
	r.MailboxOwnerUPN = s.of(upn)
	r.MailboxGUID = s.of(guid)
	r.MailAccessType = s.of(access)
	if msgs := a.spans[msgStart:]; len(msgs) > 0 {
		r.InternetMessageIDs = make([]string, len(msgs))
		for i, sp := range msgs {
			r.InternetMessageIDs[i] = s.of(sp)
		}
	}
	return r, nil
}

// appAccessContext holds the fields read from AppAccessContext, the
// token details Exchange and SharePoint add for application access.
type appAccessContext struct {
	apiID, clientAppID, clientAppName, correlationID, issuedAtTime,
	sessionID, uniqueTokenID []byte
}

func readAppAccessContext(v []byte) (c appAccessContext) {
	if len(v) == 0 || v[0] != '{' {
		return c
	}
	it := items(v)
	for k, v, ok := it.next(); ok; k, v, ok = it.next() {
		switch string(unescapeKey(k)) {
		case "APIId":
			c.apiID = v
		case "ClientAppId":
			c.clientAppID = v
		case "ClientAppName":
			c.clientAppName = v
		case "CorrelationId":
			c.correlationID = v
		case "IssuedAtTime":
			c.issuedAtTime = v
		case "AADSessionId":
			c.sessionID = v
		case "UniqueTokenId":
			c.uniqueTokenID = v
		}
	}
	return c
}

// operationProperties reads MailAccessType (Bind or Sync) and IsThrottled
// from the [{Name, Value}] list, which some records carry as a JSON string.
func (p *Parser) operationProperties(v []byte) (access span, throttled bool) {
	props := items(p.list(v))
	for _, prop, ok := props.next(); ok; _, prop, ok = props.next() {
		var name, value []byte
		it := items(prop)
		for k, v, ok := it.next(); ok; k, v, ok = it.next() {
			switch string(unescapeKey(k)) {
			case "Name":
				name, _ = unquote(v)
			case "Value":
				value = v
			}
		}
		switch {
		case asciiEqualFold(name, "mailaccesstype"):
			access = p.strs.text(value)
		case asciiEqualFold(name, "isthrottled"):
			throttled, _ = boolean(value)
		}
	}
	return access, throttled
}

// messageIDs collects the InternetMessageId of every item a mailbox record
// names: Folders[].FolderItems[] (MailItemsAccessed), AffectedItems[]
// (moves and deletes) and Item (Send, Update), in that order, so that one
// search finds a message's reading and its deletion.
func (p *Parser) messageIDs(folders, affected, item []byte) {
	a := &p.strs
	add := func(it []byte) {
		if sp := a.text(member(it, "InternetMessageId")); !sp.empty() {
			a.spans = append(a.spans, sp)
		}
	}
	fs := items(p.list(folders))
	for _, folder, ok := fs.next(); ok; _, folder, ok = fs.next() {
		its := items(member(folder, "FolderItems"))
		for _, it, ok := its.next(); ok; _, it, ok = its.next() {
			add(it)
		}
	}
	// p.list reuses p.nested, which the loop above is done with.
	as := items(p.list(affected))
	for _, it, ok := as.next(); ok; _, it, ok = as.next() {
		add(it)
	}
	if len(item) > 0 && item[0] == '{' {
		add(item)
	}
}

// list returns v if it is an array, or the array held as JSON text in the
// string v (the form some records use for OperationProperties, and Sentinel
// for Folders), or nil. The text is valid until the next call.
func (p *Parser) list(v []byte) []byte {
	if len(v) == 0 || v[0] == '[' {
		return v
	}
	s, ok := unquote(v)
	if !ok {
		return nil
	}
	p.nested = append(p.nested[:0], trimSpace(s)...)
	if len(p.nested) == 0 || p.nested[0] != '[' {
		return nil
	}
	if _, reason := validate(p.nested); reason != "" {
		return nil
	}
	return p.nested
}

// creationTime reads a required timestamp.
func creationTime(field string, v []byte) (time.Time, error) {
	if isNull(v) {
		return time.Time{}, &FieldError{Field: field, Reason: "missing"}
	}
	s, ok := unquote(v)
	if !ok {
		return time.Time{}, &FieldError{Field: field, Reason: "want a string, got " + kind(v)}
	}
	t, ok := parseTime(s)
	if !ok {
		return time.Time{}, &FieldError{Field: field, Reason: "unparsable time " + quote(s)}
	}
	return t, nil
}

// optionalTime reads an informational timestamp such as
// AppAccessContext.IssuedAtTime, in the forms CreationTime accepts. Unlike
// CreationTime it never rejects the record: missing, not a string or
// unparsable, it is the zero time.
func optionalTime(v []byte) time.Time {
	s, ok := unquote(v)
	if !ok {
		return time.Time{}
	}
	t, _ := parseTime(s)
	return t
}

// recordType reads RecordType: a number, a string holding one ("20", as
// some exporters write it) or a member name. Unlike the other integer
// columns it is strict, because a wrong RecordType misfiles the record
// rather than just leaving a column empty. A missing RecordType is Absent.
func recordType(field string, v []byte) (int32, error) {
	if isNull(v) {
		return Absent, nil
	}
	if s, ok := unquote(v); ok {
		if s = trimSpace(s); len(s) > 0 && !isNumberStart(s[0]) {
			if t, ok := ParseRecordType(string(s)); ok {
				return int32(t), nil
			}
			return 0, &FieldError{Field: field, Reason: "unknown record type " + quote(s)}
		}
	} else if v[0] != '-' && (v[0] < '0' || v[0] > '9') {
		return 0, &FieldError{Field: field, Reason: "want a number or a name, got " + kind(v)}
	}
	n, ok := integer(v)
	if !ok || n <= math.MinInt32 || n > math.MaxInt32 {
		return 0, &FieldError{Field: field, Reason: "not a 32-bit integer: " + quote(v)}
	}
	return int32(n), nil
}

// int32OrAbsent reads an optional int32 column.
func int32OrAbsent(v []byte) int32 {
	n, ok := integer(v)
	if !ok || n <= math.MinInt32 || n > math.MaxInt32 {
		return Absent
	}
	return int32(n)
}

// integer reads a number, or a string holding one, written as an integer or
// as an integral float ("1.0", 1156492.00, "1e9").
func integer(v []byte) (int64, bool) {
	if s, ok := unquote(v); ok {
		v = trimSpace(s)
	}
	return parseInteger(v)
}

func isNumberStart(c byte) bool { return c == '-' || c == '+' || '0' <= c && c <= '9' }

// parseInteger parses a decimal integer, or failing that a float with no
// fractional part that fits in an int64.
func parseInteger(b []byte) (int64, bool) {
	if len(b) == 0 || !isNumberStart(b[0]) {
		return 0, false // also keeps ParseFloat from reading "Inf" and "NaN"
	}
	if n, ok := parseDecimal(b); ok {
		return n, true
	}
	if n, err := strconv.ParseInt(string(b), 10, 64); err == nil {
		return n, true
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
		return 0, false
	}
	return int64(f), true
}

// parseDecimal is the allocation-free common case of parseInteger.
func parseDecimal(b []byte) (int64, bool) {
	neg := b[0] == '-'
	if neg || b[0] == '+' {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 { // 18 digits cannot overflow
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// boolean reads true or false, or a string "True" or "False" in any case (as
// Exchange writes ExternalAccess and IsThrottled), or "1" or "0".
func boolean(v []byte) (value, ok bool) {
	if len(v) > 0 && v[0] == 't' {
		return true, true
	}
	if len(v) > 0 && v[0] == 'f' {
		return false, true
	}
	s, ok := unquote(v)
	if !ok {
		return false, false
	}
	switch s = trimSpace(s); {
	case asciiEqualFold(s, "true"), string(s) == "1":
		return true, true
	case asciiEqualFold(s, "false"), string(s) == "0":
		return false, true
	}
	return false, false
}
