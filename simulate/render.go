package simulate

import (
	"strconv"
)

// The renderer writes each record by hand, field by field, in the order the
// Management Activity API emits them (common schema first, then the
// workload's fields). Every string it writes is either generated here from
// a safe alphabet or pre-escaped in the tenant model, so no escaping pass
// is needed; the tests parse every record to hold that true.

func (g *Generator) render(b []byte, e *event, throttled bool) []byte {
	r := rng{s: e.r}
	switch e.kind {
	case kBind, kSync:
		return g.renderMailItems(b, e, &r, throttled)
	case kSend:
		return g.renderSend(b, e, &r)
	case kSearchExchange:
		return g.renderSearchExchange(b, e, &r)
	case kFileAccessed, kFileModified, kFileDownloaded:
		return g.renderFile(b, e, &r)
	case kSearchSharePoint:
		return g.renderSearchSharePoint(b, e, &r)
	case kLogin, kLoginFailed:
		return g.renderSignIn(b, e, &r)
	case kSetMailbox, kAddMailboxPermission, kNewInboxRule, kSetInboxRule:
		return g.renderExchangeAdmin(b, e, &r)
	default:
		return g.renderDirectory(b, e, &r)
	}
}

// appendTime writes a CreationTime: UTC, second resolution, no zone, as
// the Management Activity API does.
func appendTime(b []byte, t int64) []byte {
	days := floorDiv(t, 86400)
	secs := t - days*86400
	// Civil date from days since 1970-01-01 (Hinnant's algorithm).
	z := days + 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	b = append(b, byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+m/10), byte('0'+m%10), '-', byte('0'+d/10), byte('0'+d%10), 'T')
	h, mi, s := secs/3600, secs/60%60, secs%60
	return append(b, byte('0'+h/10), byte('0'+h%10), ':', byte('0'+mi/10), byte('0'+mi%10), ':', byte('0'+s/10), byte('0'+s%10))
}

// head writes the common schema from CreationTime to Workload and remembers
// the record's Id for labels.
func (g *Generator) head(b []byte, e *event, r *rng, op string, recordType int, status, userKey string, userType int, workload string) []byte {
	b = append(b, `"CreationTime":"`...)
	b = appendTime(b, e.t)
	b = append(b, `","Id":"`...)
	b = appendGUID(b, r.guid())
	g.id = append(g.id[:0], b[len(b)-36:]...)
	b = append(b, `","Operation":"`...)
	b = append(b, op...)
	b = append(b, `","OrganizationId":"`...)
	b = append(b, g.t.orgID...)
	b = append(b, `","RecordType":`...)
	b = strconv.AppendInt(b, int64(recordType), 10)
	if status != "" {
		b = append(b, `,"ResultStatus":"`...)
		b = append(b, status...)
		b = append(b, '"')
	}
	b = append(b, `,"UserKey":"`...)
	b = append(b, userKey...)
	b = append(b, `","UserType":`...)
	b = strconv.AppendInt(b, int64(userType), 10)
	b = append(b, `,"Version":1,"Workload":"`...)
	b = append(b, workload...)
	return append(b, '"')
}

func appendKV(b []byte, key, val string) []byte {
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":"`...)
	b = append(b, val...)
	return append(b, '"')
}

func appendKGUID(b []byte, key string, v guid) []byte {
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":"`...)
	b = appendGUID(b, v)
	return append(b, '"')
}

func appendKInt(b []byte, key string, v int64) []byte {
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":`...)
	return strconv.AppendInt(b, v, 10)
}

func appendNameValue(b []byte, first bool, name, value string) []byte {
	if !first {
		b = append(b, ',')
	}
	b = append(b, `{"Name":"`...)
	b = append(b, name...)
	b = append(b, `","Value":"`...)
	b = append(b, value...)
	return append(b, `"}`...)
}

// token returns the index of the hourly token a session uses at time t; the
// sign-in records are issued at the same hours.
func (s *session) token(t int64) int64 {
	if t < s.start {
		return 0
	}
	return (t - s.start) / 3600
}

func (s *session) key() uint64 {
	var k uint64
	for i := 0; i < 8; i++ {
		k = k<<8 | uint64(s.id[i])
	}
	return k
}

// appendAppAccessContext writes the token context of a mailbox or file
// access: Entra session, client app, token issue time and unique token id.
func (g *Generator) appendAppAccessContext(b []byte, e *event, cli *client, clientName string) []byte {
	s := e.s
	h := s.token(e.t)
	tr := newRNG(s.key(), uint64(h))
	b = append(b, `"AppAccessContext":{`...)
	sep := false
	if !s.noAAD {
		b = append(b, `"AADSessionId":"`...)
		b = appendGUID(b, s.aad)
		b = append(b, '"')
		sep = true
	}
	if cli != nil && cli.apiID != "" {
		if sep {
			b = append(b, ',')
		}
		b = append(b, `"APIId":"`...)
		b = append(b, cli.apiID...)
		b = append(b, '"')
		sep = true
	}
	if cli != nil {
		id := cli.clientAppID
		if id == "" {
			id = cli.appID
		}
		if sep {
			b = append(b, ',')
		}
		b = append(b, `"ClientAppId":"`...)
		b = append(b, id...)
		b = append(b, '"')
		sep = true
	}
	if clientName != "" {
		b = append(b, `,"ClientAppName":"`...)
		b = append(b, clientName...)
		b = append(b, '"')
	}
	if sep {
		b = append(b, ',')
	}
	b = append(b, `"IssuedAtTime":"`...)
	b = appendTime(b, s.start+h*3600-int64(tr.intn(240)))
	b = append(b, `","UniqueTokenId":"`...)
	b = appendB64(b, &tr, 22, b64url)
	return append(b, `"},`...)
}

// logonType is the Exchange LogonType of a session's access to mailbox m:
// owner (0) for the own mailbox, delegate (2) otherwise (FullAccess holders
// and assistants alike).
func (g *Generator) logonType(s *session, m *mailbox) int64 {
	if m.owner == s.u {
		return 0
	}
	return 2
}

// mailboxFields writes the Exchange mailbox schema fields from UserId to
// the token claims, shared by MailItemsAccessed, Send and searches.
func (g *Generator) mailboxFields(b []byte, e *event, r *rng, m *mailbox, withClientIP bool) []byte {
	s, cli := e.s, e.s.cli
	if withClientIP {
		b = appendKV(b, "ClientIP", s.ip)
	}
	b = appendKV(b, "UserId", s.u.upn)
	b = appendKV(b, "AppId", cli.appID)
	b = appendKV(b, "ClientAppId", cli.clientAppID)
	b = appendKV(b, "ClientIPAddress", s.ip)
	b = appendKV(b, "ClientInfoString", cli.cis)
	if cli.requestID {
		b = appendKGUID(b, "ClientRequestId", r.guid())
	}
	lt := g.logonType(s, m)
	b = append(b, `,"ExternalAccess":false,"InternalLogonType":`...)
	b = strconv.AppendInt(b, lt, 10)
	b = append(b, `,"LogonType":`...)
	b = strconv.AppendInt(b, lt, 10)
	b = appendKV(b, "LogonUserSid", s.u.sid)
	b = appendKV(b, "MailboxGuid", m.guid)
	b = appendKV(b, "MailboxOwnerSid", m.sid)
	b = appendKV(b, "MailboxOwnerUPN", m.upn)
	return b
}

func (g *Generator) mailboxTail(b []byte, e *event, m *mailbox) []byte {
	s := e.s
	b = appendKV(b, "OrganizationName", g.t.orgName)
	b = appendKV(b, "OriginatingServer", m.srv.origin)
	b = appendKGUID(b, "SessionId", s.id)
	if !s.cli.oauth() {
		return b
	}
	b = appendKV(b, "TokenObjectId", s.u.oid)
	return appendKV(b, "TokenTenantId", g.t.orgID)
}

func (g *Generator) renderMailItems(b []byte, e *event, r *rng, throttled bool) []byte {
	s := e.s
	m := g.t.mailboxes[e.mbx]
	b = append(b, '{')
	if s.cli.oauth() {
		b = g.appendAppAccessContext(b, e, s.cli, "")
	}
	b = g.head(b, e, r, "MailItemsAccessed", 50, "Succeeded", s.u.puid, 0, "Exchange")
	b = g.mailboxFields(b, e, r, m, false)
	access := "Bind"
	if e.kind == kSync {
		access = "Sync"
	}
	b = append(b, `,"OperationProperties":[{"Name":"MailAccessType","Value":"`...)
	b = append(b, access...)
	if throttled {
		b = append(b, `"},{"Name":"IsThrottled","Value":"True"}]`...)
	} else {
		b = append(b, `"},{"Name":"IsThrottled","Value":"False"}]`...)
	}
	b = g.mailboxTail(b, e, m)
	if e.kind == kSync {
		// A sync is recorded per folder, without items: every item in the
		// folder must be assumed accessed.
		f := &m.folders[e.arg]
		b = append(b, `,"Folders":[{"Id":"`...)
		b = append(b, f.id...)
		b = append(b, `","Path":"`...)
		b = append(b, f.path...)
		return append(b, `"}],"OperationCount":1}`...)
	}
	// Bind: the items read within the two-minute window, grouped by folder.
	n := 1 + r.geometric(0.7, 12)
	if s.bulk {
		n = 3 + r.intn(10)
	}
	folders := 1
	if n > 1 && r.chance(0.12) {
		folders = 2
	}
	b = append(b, `,"Folders":[`...)
	left := n
	var used int
	for fi := 0; fi < folders; fi++ {
		fidx := fInbox
		switch x := r.float(); {
		case fi == 1 || x < 0.2:
			fidx = fFirstSub + r.intn(len(m.folders)-fFirstSub)
			if r.chance(0.3) {
				fidx = fArchive
			}
		case x < 0.28:
			fidx = fSent
		}
		if fi == 1 && fidx == used {
			fidx = fSent
		}
		used = fidx
		k := left
		if fi == 0 && folders == 2 {
			k = 1 + r.intn(left-1)
		}
		left -= k
		if fi > 0 {
			b = append(b, ',')
		}
		f := &m.folders[fidx]
		b = append(b, `{"FolderItems":[`...)
		msg := (e.t - m.epoch) / m.interval
		if fidx == fSent {
			msg = msg / 4 // a mailbox sends about a quarter of what it receives
		}
		// Recent messages are read most; the items of one record are
		// distinct messages, newest first.
		msg -= int64(r.geometric(0.06, 600))
		for i := 0; i < k; i++ {
			if i > 0 {
				b = append(b, ',')
				msg -= 1 + int64(r.geometric(0.5, 20))
			}
			b = g.appendItem(b, m, fidx == fSent, msg, s.cli)
		}
		b = append(b, `],"Id":"`...)
		b = append(b, f.id...)
		b = append(b, `","Path":"`...)
		b = append(b, f.path...)
		b = append(b, `"}`...)
	}
	b = append(b, `],"OperationCount":`...)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '}')
}

// appendItem writes one FolderItems entry: the same message always gets the
// same ids, size and InternetMessageId, whoever reads it.
func (g *Generator) appendItem(b []byte, m *mailbox, sent bool, msg int64, cli *client) []byte {
	tag := uint64(0x17e)
	if sent {
		tag = 0x5e7
	}
	mr := newRNG(g.t.key, tag, uint64(m.idx), uint64(msg))
	b = append(b, '{')
	if cli.storeIDs() {
		b = append(b, `"Id":"`...)
		b = append(b, m.idPrefix...)
		b = appendB64(b, &mr, 57, b64std)
		if cli.immutableIDs() {
			b = append(b, `","ImmutableId":"LgAAAAA`...)
			b = appendB64(b, &mr, 53, b64std)
			b = append(b, `AAAJ`...)
		}
		b = append(b, `",`...)
	}
	b = append(b, `"InternetMessageId":"`...)
	b = g.appendMessageID(b, &mr, m, sent)
	b = append(b, `","SizeInBytes":`...)
	b = strconv.AppendInt(b, messageSize(&mr), 10)
	return append(b, '}')
}

var externalDomains = []string{"mail.gmail.com", "amazonses.com", "linkedin.com", "sendgrid.net", "mcsv.net",
	"salesforce.com", "zendesk.com", "atlassian.net", "docusign.net", "mail.outlook.com", "hubspot.com", "github.com"}

// appendMessageID writes an Internet Message-ID in the shapes seen in
// Exchange Online: Outlook-generated ids naming the sending mailbox server,
// Gmail ids, and bulk senders' ids.
func (g *Generator) appendMessageID(b []byte, r *rng, m *mailbox, sent bool) []byte {
	x := r.intn(10)
	b = append(b, '<')
	switch {
	case sent || x < 4:
		srv := m.srv
		if !sent {
			srv = &g.t.servers[r.intn(len(g.t.servers))]
		}
		b = append(b, srv.name...)
		b = appendHexUpper(b, r.u64(), 16)
		b = appendHexUpper(b, r.u64(), 16)
		b = append(b, '@')
		b = append(b, srv.name...)
		b = append(b, '.')
		b = append(b, srv.region...)
		b = append(b, ".prod.outlook.com"...)
	case x < 6:
		b = append(b, "CA"...)
		b = appendB64(b, r, 44, b64url)
		b = append(b, "@mail.gmail.com"...)
	default:
		b = strconv.AppendUint(b, r.u64()%1e13, 10)
		b = append(b, '.')
		b = strconv.AppendUint(b, r.u64()%1e7, 10)
		b = append(b, '.')
		b = appendHexUpper(b, r.u64(), 12)
		b = append(b, '@')
		b = append(b, externalDomains[r.intn(len(externalDomains))]...)
	}
	return append(b, '>')
}

func messageSize(r *rng) int64 {
	if r.intn(10) == 0 {
		return 200000 + int64(r.intn(8000000))
	}
	return 3000 + int64(r.intn(90000))
}

var subjects = []string{"Q3 budget review", "Contract renewal", "Weekly sync", "Project update", "Customer escalation",
	"Invoice", "Offsite planning", "Hiring plan", "Board deck", "Release notes", "Travel request", "Pricing proposal",
	"Security review", "Training schedule", "Quarterly forecast", "Vendor onboarding", "Roadmap", "Expense report",
	"Meeting notes", "Follow-up", "Partner agreement", "Incident summary", "Team lunch", "Status report"}

var subjectPrefix = []string{"", "", "", "Re: ", "RE: ", "Fw: ", "FW: "}

func (g *Generator) renderSend(b []byte, e *event, r *rng) []byte {
	s := e.s
	m := g.t.mailboxes[e.mbx]
	b = append(b, '{')
	if s.cli.oauth() {
		b = g.appendAppAccessContext(b, e, s.cli, "")
	}
	b = g.head(b, e, r, "Send", 2, "Succeeded", s.u.puid, 0, "Exchange")
	b = g.mailboxFields(b, e, r, m, true)
	b = g.mailboxTail(b, e, m)
	// The sent message joins the mailbox's sent sequence; binds on Sent
	// Items later find the same ids.
	msg := (e.t-m.epoch)/m.interval/4 + 1
	mr := newRNG(g.t.key, 0x5e7, uint64(m.idx), uint64(msg))
	b = append(b, `,"Item":{"Id":"`...)
	b = append(b, m.idPrefix...)
	b = appendB64(b, &mr, 57, b64std)
	b = append(b, `","InternetMessageId":"`...)
	b = g.appendMessageID(b, &mr, m, true)
	f := &m.folders[fDrafts]
	b = append(b, `","ParentFolder":{"Id":"`...)
	b = append(b, f.id...)
	b = append(b, `","Path":"`...)
	b = append(b, f.path...)
	b = append(b, `"},"SizeInBytes":`...)
	b = strconv.AppendInt(b, messageSize(&mr), 10)
	b = append(b, `,"Subject":"`...)
	b = append(b, subjectPrefix[r.intn(len(subjectPrefix))]...)
	b = append(b, subjects[r.intn(len(subjects))]...)
	return append(b, `"},"SaveToSentItems":true}`...)
}

var mailQueries = []string{"invoice", "contract", "budget", "hasattachments:yes", "offsite", "quarterly report",
	"password reset", "flight", "hotel", "agenda", "pricing", "nda", "roadmap", "payroll", "board", "signed",
	"from:support", "approval", "order confirmation", "meeting notes"}

func (g *Generator) renderSearchExchange(b []byte, e *event, r *rng) []byte {
	s := e.s
	m := g.t.mailboxes[e.mbx]
	b = append(b, '{')
	b = g.head(b, e, r, "SearchQueryInitiatedExchange", 101, "Succeeded", s.u.puid, 0, "Exchange")
	b = g.mailboxFields(b, e, r, m, true)
	b = g.mailboxTail(b, e, m)
	b = appendKV(b, "QuerySource", s.cli.querySource)
	b = append(b, `,"QueryText":"`...)
	if e.arg > 0 {
		b = append(b, scenarioQueries[int(e.arg-1)%len(scenarioQueries)]...)
	} else if r.chance(0.25) {
		u := g.t.users[r.intn(len(g.t.users))]
		b = append(b, u.first...)
		b = append(b, ' ')
		b = append(b, u.last...)
	} else {
		b = append(b, mailQueries[r.intn(len(mailQueries))]...)
	}
	return append(b, `"}`...)
}

// Documents: names are built from words so that a site holds a stable
// catalogue of plausible files.
var (
	docWords1 = []string{"Budget", "Quarterly Report", "Roadmap", "Contract", "Invoice", "Proposal", "Meeting Notes",
		"Forecast", "Onboarding", "Policy", "Presentation", "Timesheet", "Pricing", "Architecture", "Release Plan",
		"Customer List", "Campaign", "Headcount", "Audit", "Strategy", "Travel Policy", "Org Chart", "Brand Guidelines"}
	docWords2 = []string{"2026", "2025", "Q1", "Q2", "Q3", "Q4", "v2", "Final", "Draft", "EMEA", "NA", "Summary", "Template", "Review"}
	docExt    = []string{"docx", "docx", "docx", "xlsx", "xlsx", "xlsx", "pptx", "pptx", "pdf", "pdf", "csv", "txt"}
	docDirs   = []string{"General", "Reports", "Archive", "Templates", "Customers", "Planning", "Shared", "Contracts"}
)

func (g *Generator) renderFile(b []byte, e *event, r *rng) []byte {
	s := e.s
	u := s.u
	st := u.personal
	if !r.chance(0.3) {
		st = g.t.sites[u.sites[r.intn(len(u.sites))]]
	}
	// Popular files are read far more often than the rest.
	x := r.float()
	j := int(float64(st.files) * x * x * x)
	fr := newRNG(st.key, uint64(j))
	dir := docDirs[fr.intn(len(docDirs))]
	w1 := docWords1[fr.intn(len(docWords1))]
	w2 := docWords2[fr.intn(len(docWords2))]
	ext := docExt[fr.intn(len(docExt))]
	size := 8000 + int64(fr.intn(4000000))
	item := fr.guid()
	corr := r.guid()

	// In a browser the request carries a cookie; on the desktop either the
	// OneDrive sync client or an Office application holds a token.
	var app *client
	appName, ua, auth, platform := "", s.ua, "OAuth", "WinDesktop"
	if u.os == osMac {
		platform = "MacDesktop"
	}
	browser := s.surf == sBrowser
	switch {
	case browser:
		auth = "FormsCookieAuth"
	case r.chance(0.6):
		app, appName = cliOneDriveFiles, "OneDrive SyncEngine"
		ua = uaSyncWin
		if u.os == osMac {
			ua = uaSyncMac
		}
	default:
		app, appName = cliOfficeFiles, "Microsoft Office"
		ua = uaExcelWin
		if u.os == osMac {
			ua = uaWordMac
		}
	}
	workload, template := "SharePoint", "101"
	if st.personal {
		workload, template = "OneDrive", "700"
	}

	b = append(b, '{')
	if app != nil {
		b = g.appendAppAccessContext(b, e, app, appName)
	}
	b = g.head(b, e, r, kindOperation[e.kind], 6, "", u.spKey, 0, workload)
	b = appendKV(b, "ClientIP", s.ip)
	b = append(b, `,"ObjectId":"`...)
	b = appendDocPath(b, st, dir, w1, w2, ext, true)
	b = append(b, '"')
	b = appendKV(b, "UserId", u.upn)
	if app != nil {
		b = appendKV(b, "ApplicationId", app.appID)
	}
	b = appendKV(b, "AuthenticationType", auth)
	if browser {
		br := &browsers[u.browser]
		b = appendKV(b, "BrowserName", br.name)
		b = appendKV(b, "BrowserVersion", br.version)
	} else {
		b = append(b, `,"BrowserName":"","BrowserVersion":""`...)
	}
	b = appendKGUID(b, "CorrelationId", corr)
	b = append(b, `,"EventSource":"SharePoint"`...)
	b = appendKV(b, "GeoLocation", g.t.geo)
	if u.compliant {
		b = append(b, `,"IsManagedDevice":true`...)
	} else {
		b = append(b, `,"IsManagedDevice":false`...)
	}
	b = append(b, `,"ItemType":"File"`...)
	b = appendKV(b, "ListId", st.list)
	b = appendKGUID(b, "ListItemUniqueId", item)
	b = appendKV(b, "Platform", platform)
	b = appendKV(b, "Site", st.id)
	b = appendKV(b, "UserAgent", ua)
	b = appendKV(b, "WebId", st.web)
	b = appendKInt(b, "FileSizeBytes", size)
	b = append(b, `,"HighPriorityMediaProcessing":false,"ListBaseType":1,"ListServerTemplate":`...)
	b = append(b, template...)
	b = appendKV(b, "SiteUrl", st.url)
	b = append(b, `,"SourceRelativeUrl":"`...)
	b = append(b, st.lib...)
	b = append(b, '/')
	b = append(b, dir...)
	b = append(b, `","SourceFileName":"`...)
	b = appendDocPath(b, st, dir, w1, w2, ext, false)
	b = append(b, '"')
	b = appendKV(b, "SourceFileExtension", ext)
	return append(b, '}')
}

// appendDocPath writes a document's full URL (full) or its file name.
func appendDocPath(b []byte, st *site, dir, w1, w2, ext string, full bool) []byte {
	if full {
		b = append(b, st.url...)
		b = append(b, st.lib...)
		b = append(b, '/')
		b = append(b, dir...)
		b = append(b, '/')
	}
	b = append(b, w1...)
	b = append(b, ' ')
	b = append(b, w2...)
	b = append(b, '.')
	return append(b, ext...)
}

var siteQueries = []string{"budget 2026", "onboarding", "travel policy", "template", "org chart", "brand guidelines",
	"expense", "holiday calendar", "architecture", "pricing", "contract template", "benefits"}

func (g *Generator) renderSearchSharePoint(b []byte, e *event, r *rng) []byte {
	s := e.s
	u := s.u
	st := g.t.sites[u.sites[r.intn(len(u.sites))]]
	b = append(b, '{')
	b = g.head(b, e, r, "SearchQueryInitiatedSharePoint", 102, "", u.puid, 0, "SharePoint")
	b = appendKV(b, "ClientIP", s.ip)
	b = appendKV(b, "ObjectId", st.url)
	b = appendKV(b, "UserId", u.upn)
	b = appendKGUID(b, "CorrelationId", r.guid())
	b = append(b, `,"EventSource":"SharePoint","ItemType":"Site"`...)
	b = appendKV(b, "Site", st.id)
	b = appendKV(b, "UserAgent", s.ua)
	b = appendKV(b, "WebId", st.web)
	b = appendKV(b, "QueryText", siteQueries[r.intn(len(siteQueries))])
	return append(b, '}')
}

// Sign-in failures of normal activity: mostly interrupts (MFA, "stay signed
// in?"), a few mistyped passwords.
var signInErrors = []struct{ code, name string }{
	{"50074", "UserStrongAuthClientAuthNRequiredInterrupt"},
	{"50074", "UserStrongAuthClientAuthNRequiredInterrupt"},
	{"50074", "UserStrongAuthClientAuthNRequiredInterrupt"},
	{"50140", "KmsiInterrupt"},
	{"50126", "InvalidUserNameOrPassword"},
}

func (g *Generator) renderSignIn(b []byte, e *event, r *rng) []byte {
	s := e.s
	u := s.u
	si := s.signIns[int(e.arg)%len(s.signIns)]
	failed := e.kind == kLoginFailed
	op := "UserLoggedIn"
	if failed {
		op = "UserLoginFailed"
	}
	b = append(b, '{')
	// Entra reports the HTTP outcome in ResultStatus; whether the sign-in
	// worked is in the operation and ErrorNumber.
	b = g.head(b, e, r, op, 15, "Success", u.oid, 0, "AzureActiveDirectory")
	b = appendKV(b, "ClientIP", s.ip)
	b = appendKV(b, "ObjectId", si.resource)
	b = appendKV(b, "UserId", u.upn)
	b = append(b, `,"AzureActiveDirectoryEventType":1,"ExtendedProperties":[`...)
	detail := "Success"
	if si.requestType == "OAuth2:Authorize" && !failed {
		detail = "Redirect"
	}
	b = appendNameValue(b, true, "ResultStatusDetail", detail)
	b = appendNameValue(b, false, "UserAgent", s.ua)
	b = appendNameValue(b, false, "RequestType", si.requestType)
	if detail == "Redirect" {
		b = appendNameValue(b, false, "KeepMeSignedIn", "True")
	}
	b = append(b, `],"ModifiedProperties":[],"Actor":[{"ID":"`...)
	b = append(b, u.oid...)
	b = append(b, `","Type":0},{"ID":"`...)
	b = append(b, u.upn...)
	b = append(b, `","Type":5}]`...)
	b = appendKV(b, "ActorContextId", g.t.orgID)
	b = appendKV(b, "ActorIpAddress", s.ip)
	b = appendKGUID(b, "InterSystemsId", r.guid())
	b = appendKGUID(b, "IntraSystemId", r.guid())
	b = append(b, `,"SupportTicketId":"","Target":[{"ID":"`...)
	b = append(b, si.resource...)
	b = append(b, `","Type":0}]`...)
	b = appendKV(b, "TargetContextId", g.t.orgID)
	b = appendKV(b, "ApplicationId", si.appID)
	b = append(b, `,"DeviceProperties":[`...)
	b = appendNameValue(b, true, "OS", u.osName(s.surf))
	if bt := u.browserType(s.surf); bt != "" {
		b = appendNameValue(b, false, "BrowserType", bt)
	}
	managed := "False"
	if u.compliant && s.surf != sAttack {
		managed = "True"
	}
	b = appendNameValue(b, false, "IsCompliantAndManaged", managed)
	if !s.noAAD {
		b = append(b, `,{"Name":"SessionId","Value":"`...)
		b = appendGUID(b, s.aad)
		b = append(b, `"}`...)
	}
	b = append(b, ']')
	if failed {
		se := signInErrors[r.intn(len(signInErrors))]
		if s.scen != 0 {
			se = signInErrors[4]
		}
		b = appendKV(b, "ErrorNumber", se.code)
		b = appendKV(b, "LogonError", se.name)
		return append(b, '}')
	}
	return append(b, `,"ErrorNumber":"0"}`...)
}

// appendAdminClientIP writes the client address of an Exchange admin record,
// which carries the source port.
func appendAdminClientIP(b []byte, ip string, r *rng) []byte {
	b = append(b, `,"ClientIP":"`...)
	v6 := false
	for i := 0; i < len(ip); i++ {
		if ip[i] == ':' {
			v6 = true
			break
		}
	}
	if v6 {
		b = append(b, '[')
		b = append(b, ip...)
		b = append(b, ']')
	} else {
		b = append(b, ip...)
	}
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(r.between(49152, 65535)), 10)
	return append(b, '"')
}

var quotaSets = [][3]string{
	{"49 GB (52,613,349,376 bytes)", "49.5 GB (53,150,220,288 bytes)", "50 GB (53,687,091,200 bytes)"},
	{"98 GB (105,226,698,752 bytes)", "99 GB (106,300,440,576 bytes)", "100 GB (107,374,182,400 bytes)"},
}

func (g *Generator) renderExchangeAdmin(b []byte, e *event, r *rng) []byte {
	s := e.s
	u := s.u
	userType, appID := 2, appEXOPowerShell
	if e.kind == kNewInboxRule || e.kind == kSetInboxRule {
		userType, appID = 0, appExchange // the user's own rule, made in OWA
	}
	b = append(b, '{')
	b = g.head(b, e, r, kindOperation[e.kind], 1, "True", u.puid, userType, "Exchange")
	b = appendAdminClientIP(b, s.ip, r)
	b = append(b, `,"ObjectId":"`...)
	b = append(b, g.t.exoPrefix...)
	var m *mailbox
	switch e.kind {
	case kNewInboxRule, kSetInboxRule:
		b = append(b, u.oid...)
		b = append(b, `\\`...)
		b = append(b, inboxRuleName...)
	default:
		m = g.t.mailboxes[e.mbx]
		b = append(b, m.alias...)
	}
	b = append(b, '"')
	b = appendKV(b, "UserId", u.upn)
	b = appendKV(b, "AppId", appID)
	b = append(b, `,"ClientAppId":"","ExternalAccess":false`...)
	b = appendKV(b, "OrganizationName", g.t.orgName)
	b = appendKV(b, "OriginatingServer", g.t.mailboxes[u.mbx].srv.admin)
	b = append(b, `,"Parameters":[`...)
	switch e.kind {
	case kSetMailbox:
		b = appendNameValue(b, true, "Identity", m.alias)
		switch r.intn(4) {
		case 0:
			q := quotaSets[r.intn(len(quotaSets))]
			b = appendNameValue(b, false, "IssueWarningQuota", q[0])
			b = appendNameValue(b, false, "ProhibitSendQuota", q[1])
			b = appendNameValue(b, false, "ProhibitSendReceiveQuota", q[2])
		case 1:
			b = appendNameValue(b, false, "MessageCopyForSentAsEnabled", "True")
		case 2:
			b = appendNameValue(b, false, "RetentionPolicy", "Default MRM Policy")
		default:
			b = appendNameValue(b, false, "AuditEnabled", "True")
		}
	case kAddMailboxPermission:
		grantee := g.t.users[e.arg]
		b = appendNameValue(b, true, "Identity", m.alias)
		b = appendNameValue(b, false, "User", grantee.upn)
		b = appendNameValue(b, false, "AccessRights", "FullAccess")
		b = appendNameValue(b, false, "InheritanceType", "All")
		if s.scen != 0 {
			b = appendNameValue(b, false, "AutoMapping", "False") // keeps the mailbox out of the victim admin's Outlook
		} else {
			b = appendNameValue(b, false, "AutoMapping", "True")
		}
	case kNewInboxRule:
		b = appendNameValue(b, true, "AlwaysDeleteOutlookRulesBlob", "False")
		b = appendNameValue(b, false, "Force", "False")
		b = appendNameValue(b, false, "Name", inboxRuleName)
		b = appendNameValue(b, false, "ForwardTo", u.alias+"@"+InboxRuleDomain)
		b = appendNameValue(b, false, "MarkAsRead", "True")
		b = appendNameValue(b, false, "StopProcessingRules", "True")
	case kSetInboxRule:
		b = append(b, `{"Name":"Identity","Value":"`...)
		b = append(b, u.oid...)
		b = append(b, `\\`...)
		b = append(b, inboxRuleName...)
		b = append(b, `"}`...)
		b = appendNameValue(b, false, "RedirectTo", u.alias+"@"+InboxRuleDomain)
		b = appendNameValue(b, false, "DeleteMessage", "True")
	}
	b = append(b, ']')
	b = appendKGUID(b, "SessionId", s.id)
	return append(b, '}')
}

const inboxRuleName = ".."

var updatedProps = []struct{ name, old, new string }{
	{"JobTitle", `[\"Specialist\"]`, `[\"Senior Specialist\"]`},
	{"Department", `[\"Operations\"]`, `[\"Customer Support\"]`},
	{"TelephoneNumber", `[]`, `[\"+1 555 0100\"]`},
	{"StreetAddress", `[\"1 Main Street\"]`, `[\"2 Harbour Road\"]`},
	{"AccountEnabled", `[true]`, `[true]`},
}

// renderDirectory writes Entra ID audit records (RecordType 8): user and
// group changes by admins, and the application consent chain.
func (g *Generator) renderDirectory(b []byte, e *event, r *rng) []byte {
	s := e.s
	u := s.u
	b = append(b, '{')
	b = g.head(b, e, r, kindOperation[e.kind], 8, "Success", u.puid+"@"+g.t.domain, 0, "AzureActiveDirectory")
	var objectID string
	var target *user
	switch e.kind {
	case kUpdateUser, kAddMember:
		target = g.t.users[e.mbx]
		objectID = target.upn
	default:
		objectID = ConsentAppID
	}
	b = appendKV(b, "ClientIP", s.ip)
	b = appendKV(b, "ObjectId", objectID)
	b = appendKV(b, "UserId", u.upn)
	b = append(b, `,"AzureActiveDirectoryEventType":1,"ExtendedProperties":[`...)
	switch e.kind {
	case kUpdateUser, kAddMember:
		b = appendNameValue(b, true, "additionalDetails", `{\"UserType\":\"Member\"}`)
		b = appendNameValue(b, false, "extendedAuditEventCategory", "User")
	default:
		b = append(b, `{"Name":"additionalDetails","Value":"{\"User-Agent\":\"EvoSTS\",\"AppId\":\"`...)
		b = append(b, ConsentAppID...)
		b = append(b, `\"}"}`...)
		b = appendNameValue(b, false, "extendedAuditEventCategory", "ServicePrincipal")
	}
	b = append(b, `],"ModifiedProperties":[`...)
	switch e.kind {
	case kUpdateUser:
		p := updatedProps[r.intn(len(updatedProps))]
		b = append(b, `{"Name":"`...)
		b = append(b, p.name...)
		b = append(b, `","NewValue":"`...)
		b = append(b, p.new...)
		b = append(b, `","OldValue":"`...)
		b = append(b, p.old...)
		b = append(b, `"},{"Name":"Included Updated Properties","NewValue":"`...)
		b = append(b, p.name...)
		b = append(b, `","OldValue":""}`...)
	case kAddMember:
		gr := g.t.groups[target.group]
		b = append(b, `{"Name":"Group.ObjectID","NewValue":"`...)
		b = append(b, gr.oid...)
		b = append(b, `","OldValue":""},{"Name":"Group.DisplayName","NewValue":"`...)
		b = append(b, gr.name...)
		b = append(b, `","OldValue":""}`...)
	case kAddServicePrincipal:
		b = append(b, `{"Name":"AppAddress","NewValue":"[{\"AddressType\":0,\"Address\":\"https://pdf-secure-viewer.example/auth\"}]","OldValue":""},{"Name":"AppId","NewValue":"`...)
		b = append(b, ConsentAppID...)
		b = append(b, `","OldValue":""},{"Name":"DisplayName","NewValue":"`...)
		b = append(b, ConsentAppName...)
		b = append(b, `","OldValue":""}`...)
	case kAddGrant:
		b = append(b, `{"Name":"DelegatedPermissionGrant.Scope","NewValue":"`...)
		b = append(b, consentScopes...)
		b = append(b, `","OldValue":""},{"Name":"DelegatedPermissionGrant.ConsentType","NewValue":"Principal","OldValue":""}`...)
	case kConsent:
		b = append(b, `{"Name":"ConsentContext.IsAdminConsent","NewValue":"False","OldValue":""},{"Name":"ConsentContext.IsAppOnly","NewValue":"False","OldValue":""},{"Name":"ConsentContext.OnBehalfOfAll","NewValue":"False","OldValue":""},{"Name":"ConsentContext.Tags","NewValue":"WindowsAzureActiveDirectoryIntegratedApp","OldValue":""},{"Name":"ConsentAction.Permissions","NewValue":"[] => [[ClientId: `...)
		b = append(b, ConsentAppID...)
		b = append(b, `, PrincipalId: `...)
		b = append(b, u.oid...)
		b = append(b, `, ResourceId: `...)
		b = append(b, appGraph...)
		b = append(b, `, ConsentType: Principal, Scope: `...)
		b = append(b, consentScopes...)
		b = append(b, `]]; ","OldValue":""},{"Name":"TargetId.ServicePrincipalNames","NewValue":"`...)
		b = append(b, ConsentAppID...)
		b = append(b, `","OldValue":""}`...)
	}
	b = append(b, `],"Actor":[{"ID":"`...)
	b = append(b, u.upn...)
	b = append(b, `","Type":5},{"ID":"`...)
	b = append(b, u.puid...)
	b = append(b, `","Type":3},{"ID":"User_`...)
	b = append(b, u.oid...)
	b = append(b, `","Type":2},{"ID":"`...)
	b = append(b, u.oid...)
	b = append(b, `","Type":2},{"ID":"User","Type":2}]`...)
	b = appendKV(b, "ActorContextId", g.t.orgID)
	b = appendKV(b, "ActorIpAddress", s.ip)
	b = appendKGUID(b, "InterSystemsId", r.guid())
	b = appendKGUID(b, "IntraSystemId", r.guid())
	b = append(b, `,"SupportTicketId":"","Target":[`...)
	if target != nil {
		b = append(b, `{"ID":"User_`...)
		b = append(b, target.oid...)
		b = append(b, `","Type":2},{"ID":"`...)
		b = append(b, target.oid...)
		b = append(b, `","Type":2},{"ID":"User","Type":2},{"ID":"`...)
		b = append(b, target.upn...)
		b = append(b, `","Type":5},{"ID":"`...)
		b = append(b, target.puid...)
		b = append(b, `","Type":3}]`...)
	} else {
		b = append(b, `{"ID":"ServicePrincipal_`...)
		b = append(b, consentSPObjectID...)
		b = append(b, `","Type":2},{"ID":"`...)
		b = append(b, consentSPObjectID...)
		b = append(b, `","Type":2},{"ID":"ServicePrincipal","Type":2},{"ID":"`...)
		b = append(b, ConsentAppName...)
		b = append(b, `","Type":1},{"ID":"`...)
		b = append(b, ConsentAppID...)
		b = append(b, `","Type":2}]`...)
	}
	b = appendKV(b, "TargetContextId", g.t.orgID)
	return append(b, '}')
}

const (
	consentScopes     = "openid profile offline_access User.Read Mail.Read Mail.ReadWrite"
	consentSPObjectID = "4f8e2b61-0d3a-4c57-b9e8-6a2c1f0d7e35"
)
