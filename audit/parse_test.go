package audit

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// rec builds a minimal valid record with extra members appended.
func rec(extra string) string {
	s := `{"Id":"rec-1","CreationTime":"2020-02-17T17:12:03","Operation":"Op"`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

func TestParseMailItemsAccessed(t *testing.T) {
	r, err := Parse([]byte(mailItemsAccessed))
	if err != nil {
		t.Fatal(err)
	}
	want := Record{
		ID:                 "5b1f0f8e-7a43-4c0e-9d3e-2f6a1c8b7d20",
		CreationTime:       time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC),
		RecordType:         50,
		Operation:          "MailItemsAccessed",
		OrganizationID:     "0c4e8d7a-61f2-4b3a-9e55-8a1d2c3b4f60",
		UserType:           0,
		UserKey:            "10032001A2B3C4D5",
		Workload:           "Exchange",
		ResultStatus:       "Succeeded",
		UserID:             "adele.vance@contoso.example",
		ClientIP:           "2a01:111:f400:7e8b::35",
		Scope:              Absent,
		AppID:              "00000003-0000-0000-c000-000000000000",
		ClientAppID:        "d3590ed6-52b3-4102-aeff-aad2292ab01c",
		SessionID:          "7f3c2a10-5e6d-4b8c-a9f1-0d2e3c4b5a69",
		UniqueTokenID:      "r2M8pQxZ0k6vT1yW3nB5AA",
		IssuedAtTime:       time.Date(2025, 3, 14, 9, 21, 40, 0, time.UTC),
		ClientInfoString:   "Client=REST;Client=RESTSystem;;",
		LogonType:          0,
		MailboxOwnerUPN:    "adele.vance@contoso.example",
		MailboxGUID:        "9e8d7c6b-5a49-4382-8170-6f5e4d3c2b1a",
		MailAccessType:     "Bind",
		IsThrottled:        false,
		OperationCount:     1,
		InternetMessageIDs: []string{"<AM0PR02MB51231A2B3C4D5E6F7A8B@AM0PR02MB5123.eurprd02.prod.outlook.com>"},
		Raw:                []byte(mailItemsAccessed),
	}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("got  %+v\nwant %+v", r, want)
	}
	if r.CreationTime.Location() != time.UTC {
		t.Errorf("CreationTime location %v, want UTC", r.CreationTime.Location())
	}
}

// TestParseFields checks one extracted column per case: the shapes real
// records give each field (see the corpus SUMMARY) and the fallbacks.
func TestParseFields(t *testing.T) {
	ip := func(r Record) any { return r.ClientIP }
	rt := func(r Record) any { return r.RecordType }
	ut := func(r Record) any { return r.UserType }
	can := func(r Record) any { return r.ClientAppName }
	cid := func(r Record) any { return r.CorrelationID }
	iat := func(r Record) any { return r.IssuedAtTime }
	tests := []struct {
		name string
		json string
		get  func(Record) any
		want any
	}{
		// RecordType: number, string, float, name; beyond the enum kept.
		{"RecordType number", rec(`"RecordType":50`), rt, int32(50)},
		{"RecordType string", rec(`"RecordType":"20"`), rt, int32(20)},
		{"RecordType padded string", rec(`"RecordType":" 2 "`), rt, int32(2)},
		{"RecordType minus one", rec(`"RecordType":-1`), rt, int32(-1)},
		{"RecordType float", rec(`"RecordType":50.0`), rt, int32(50)},
		{"RecordType float string", rec(`"RecordType":"50.00"`), rt, int32(50)},
		{"RecordType exponent", rec(`"RecordType":1e1`), rt, int32(10)},
		{"RecordType name", rec(`"RecordType":"ExchangeItemAggregated"`), rt, int32(50)},
		{"RecordType name any case", rec(`"RecordType":"microsoftteams"`), rt, int32(25)},
		{"RecordType beyond enum", rec(`"RecordType":99999`), rt, int32(99999)},
		{"RecordType max int32", rec(`"RecordType":2147483647`), rt, int32(2147483647)},
		{"RecordType missing", rec(``), rt, int32(Absent)},
		{"RecordType null", rec(`"RecordType":null`), rt, int32(Absent)},

		// Other integers: lenient, Absent when unusable.
		{"UserType number", rec(`"UserType":5`), ut, int32(5)},
		{"UserType string", rec(`"UserType":"0"`), ut, int32(0)},
		{"UserType beyond int32", rec(`"UserType":2147483648`), ut, int32(Absent)},
		{"UserType the Absent value", rec(`"UserType":-2147483648`), ut, int32(Absent)},
		{"UserType fraction", rec(`"UserType":1.5`), ut, int32(Absent)},
		{"UserType 1e999", rec(`"UserType":1e999`), ut, int32(Absent)},
		{"UserType word", rec(`"UserType":"Regular"`), ut, int32(Absent)},
		{"UserType object", rec(`"UserType":{"a":1}`), ut, int32(Absent)},
		{"UserType bool", rec(`"UserType":true`), ut, int32(Absent)},
		{"UserType missing", rec(``), ut, int32(Absent)},
		{"LogonType string", rec(`"LogonType":"0"`), func(r Record) any { return r.LogonType }, int32(0)},
		{"LogonType float", rec(`"LogonType":2.0`), func(r Record) any { return r.LogonType }, int32(2)},
		{"Scope", rec(`"Scope":1`), func(r Record) any { return r.Scope }, int32(1)},
		{"Scope missing", rec(``), func(r Record) any { return r.Scope }, int32(Absent)},

		{"OperationCount number", rec(`"OperationCount":6`), func(r Record) any { return r.OperationCount }, int64(6)},
		{"OperationCount 1.0 string", rec(`"OperationCount":"1.0"`), func(r Record) any { return r.OperationCount }, int64(1)},
		{"OperationCount trailing zeros", rec(`"OperationCount":1156492.00`), func(r Record) any { return r.OperationCount }, int64(1156492)},
		{"OperationCount exponent string", rec(`"OperationCount":"1e9"`), func(r Record) any { return r.OperationCount }, int64(1000000000)},
		{"OperationCount beyond int32", rec(`"OperationCount":5846122497`), func(r Record) any { return r.OperationCount }, int64(5846122497)},
		{"OperationCount max int64", rec(`"OperationCount":9223372036854775807`), func(r Record) any { return r.OperationCount }, int64(9223372036854775807)},
		{"OperationCount beyond int64", rec(`"OperationCount":9223372036854775808`), func(r Record) any { return r.OperationCount }, int64(0)},
		{"OperationCount missing", rec(``), func(r Record) any { return r.OperationCount }, int64(0)},

		{"ExternalAccess bool", rec(`"ExternalAccess":true`), func(r Record) any { return r.ExternalAccess }, true},
		{"ExternalAccess True", rec(`"ExternalAccess":"True"`), func(r Record) any { return r.ExternalAccess }, true},
		{"ExternalAccess False", rec(`"ExternalAccess":"False"`), func(r Record) any { return r.ExternalAccess }, false},
		{"ExternalAccess TRUE", rec(`"ExternalAccess":"TRUE"`), func(r Record) any { return r.ExternalAccess }, true},
		{"ExternalAccess 1", rec(`"ExternalAccess":"1"`), func(r Record) any { return r.ExternalAccess }, true},
		{"ExternalAccess yes", rec(`"ExternalAccess":"yes"`), func(r Record) any { return r.ExternalAccess }, false},

		// Client address: field order, then normalisation.
		{"ClientIP with port", rec(`"ClientIP":"1.2.3.4:63070"`), ip, "1.2.3.4"},
		{"ClientIPAddress only", rec(`"ClientIPAddress":"2603:10b6:5:127::10"`), ip, "2603:10b6:5:127::10"},
		{"ActorIpAddress only", rec(`"ActorIpAddress":"1.2.3.4"`), ip, "1.2.3.4"},
		{"ClientIP before the others", rec(`"ActorIpAddress":"5.6.7.8","ClientIPAddress":"9.9.9.9","ClientIP":"1.2.3.4"`), ip, "1.2.3.4"},
		{"ClientIPAddress before ActorIpAddress", rec(`"ActorIpAddress":"5.6.7.8","ClientIPAddress":"9.9.9.9"`), ip, "9.9.9.9"},
		{"unusable ClientIP falls through", rec(`"ClientIP":"<null>","ClientIPAddress":"1.2.3.4 "`), ip, "1.2.3.4"},
		{"empty ClientIP falls through", rec(`"ClientIP":"","ActorIpAddress":"[::ffff:10.1.2.3]:443"`), ip, "10.1.2.3"},
		{"no usable address", rec(`"ClientIP":"localhost","ClientIPAddress":"<null>"`), ip, ""},
		{"ClientIP as number", rec(`"ClientIP":1234`), ip, ""},
		{"ClientIP upper-case v6", rec(`"ClientIPAddress":"FE80:0011:2233:4455:6677:8899:AABB:CCDD"`), ip, "fe80:11:2233:4455:6677:8899:aabb:ccdd"},

		// AppAccessContext fallbacks.
		{"AppId", rec(`"AppId":"a","AppAccessContext":{"APIId":"b"}`), func(r Record) any { return r.AppID }, "a"},
		{"AppId from APIId", rec(`"AppAccessContext":{"APIId":"b"}`), func(r Record) any { return r.AppID }, "b"},
		{"empty AppId from APIId", rec(`"AppId":"","AppAccessContext":{"APIId":"b"}`), func(r Record) any { return r.AppID }, "b"},
		{"ClientAppId", rec(`"ClientAppId":"c","AppAccessContext":{"ClientAppId":"d"}`), func(r Record) any { return r.ClientAppID }, "c"},
		{"ClientAppId from context", rec(`"AppAccessContext":{"ClientAppId":"d"}`), func(r Record) any { return r.ClientAppID }, "d"},
		{"SessionId", rec(`"SessionId":"s","AppAccessContext":{"AADSessionId":"t"}`), func(r Record) any { return r.SessionID }, "s"},
		{"SessionId from AADSessionId", rec(`"AppAccessContext":{"AADSessionId":"t"}`), func(r Record) any { return r.SessionID }, "t"},
		{"UniqueTokenId", rec(`"AppAccessContext":{"UniqueTokenId":"u","IssuedAtTime":"2025-01-01T00:00:00"}`), func(r Record) any { return r.UniqueTokenID }, "u"},
		{"AppAccessContext not an object", rec(`"AppAccessContext":"x"`), func(r Record) any { return r.AppID + r.UniqueTokenID }, ""},
		{"AppAccessContext array", rec(`"AppAccessContext":[{"ClientAppName":"n","CorrelationId":"c","IssuedAtTime":"2025-01-01T00:00:00"}]`),
			func(r Record) any { return [3]any{r.ClientAppName, r.CorrelationID, r.IssuedAtTime} }, [3]any{"", "", time.Time{}}},

		// ClientAppName and CorrelationId: AppAccessContext only, shapes as
		// for the other optional strings.
		{"ClientAppName", rec(`"AppAccessContext":{"AADSessionId":"s","ClientAppName":"Microsoft Teams"}`), can, "Microsoft Teams"},
		{"ClientAppName escaped", rec(`"AppAccessContext":{"ClientAppName":"Web\u0045xcel \"x\""}`), can, `WebExcel "x"`},
		{"ClientAppName missing", rec(`"AppAccessContext":{"ClientAppId":"c"}`), can, ""},
		{"ClientAppName no context", rec(``), can, ""},
		{"ClientAppName top level ignored", rec(`"ClientAppName":"top","AppAccessContext":{}`), can, ""},
		{"ClientAppName number", rec(`"AppAccessContext":{"ClientAppName":42}`), can, "42"},
		{"ClientAppName bool", rec(`"AppAccessContext":{"ClientAppName":false}`), can, "false"},
		{"ClientAppName null", rec(`"AppAccessContext":{"ClientAppName":null}`), can, ""},
		{"ClientAppName object", rec(`"AppAccessContext":{"ClientAppName":{"a":"b"}}`), can, ""},
		{"ClientAppName array", rec(`"AppAccessContext":{"ClientAppName":["a"]}`), can, ""},
		{"ClientAppName repeated", rec(`"AppAccessContext":{"ClientAppName":"first","ClientAppName":"last"}`), can, "last"},
		{"ClientAppName escaped key", rec(`"AppAccessContext":{"Client\u0041ppName":"k"}`), can, "k"},
		{"ClientAppName nested ignored", rec(`"AppAccessContext":{"Inner":{"ClientAppName":"in"}}`), can, ""},
		{"CorrelationId", rec(`"AppAccessContext":{"CorrelationId":"27de65c0-1c43-4d70-9a4d-45a66418dbd6"}`), cid, "27de65c0-1c43-4d70-9a4d-45a66418dbd6"},
		{"CorrelationId not the top-level one", rec(`"CorrelationId":"top","AppAccessContext":{"CorrelationId":"ctx"}`), cid, "ctx"},
		{"CorrelationId top level only", rec(`"CorrelationId":"top"`), cid, ""},
		{"CorrelationId empty context", rec(`"AppAccessContext":{}`), cid, ""},
		{"CorrelationId number", rec(`"AppAccessContext":{"CorrelationId":-1.5e3}`), cid, "-1.5e3"},
		{"CorrelationId object", rec(`"AppAccessContext":{"CorrelationId":{}}`), cid, ""},
		{"CorrelationId empty", rec(`"AppAccessContext":{"CorrelationId":""}`), cid, ""},

		// IssuedAtTime: read like CreationTime, but anything unusable is
		// the zero time, not a rejection.
		{"IssuedAtTime no zone", rec(`"AppAccessContext":{"IssuedAtTime":"2025-09-23T09:13:33"}`), iat, time.Date(2025, 9, 23, 9, 13, 33, 0, time.UTC)},
		{"IssuedAtTime Z", rec(`"AppAccessContext":{"IssuedAtTime":"2025-09-23T09:13:33Z"}`), iat, time.Date(2025, 9, 23, 9, 13, 33, 0, time.UTC)},
		{"IssuedAtTime 7 fractional digits", rec(`"AppAccessContext":{"IssuedAtTime":"2025-09-23T09:13:33.1037807Z"}`), iat, time.Date(2025, 9, 23, 9, 13, 33, 103780700, time.UTC)},
		{"IssuedAtTime fraction no zone", rec(`"AppAccessContext":{"IssuedAtTime":"2025-09-23T09:13:33.5"}`), iat, time.Date(2025, 9, 23, 9, 13, 33, 5e8, time.UTC)},
		{"IssuedAtTime offset", rec(`"AppAccessContext":{"IssuedAtTime":"2025-09-23T11:13:33+02:00"}`), iat, time.Date(2025, 9, 23, 9, 13, 33, 0, time.UTC)},
		{"IssuedAtTime space", rec(`"AppAccessContext":{"IssuedAtTime":"2025-09-23 09:13:33"}`), iat, time.Date(2025, 9, 23, 9, 13, 33, 0, time.UTC)},
		{"IssuedAtTime padded", rec(`"AppAccessContext":{"IssuedAtTime":" 2025-09-23T09:13:33 "}`), iat, time.Date(2025, 9, 23, 9, 13, 33, 0, time.UTC)},
		{"IssuedAtTime escaped", rec(`"AppAccessContext":{"IssuedAtTime":"2025-09-23T09:13:33\u005a"}`), iat, time.Date(2025, 9, 23, 9, 13, 33, 0, time.UTC)},
		{"IssuedAtTime missing", rec(`"AppAccessContext":{"UniqueTokenId":"u"}`), iat, time.Time{}},
		{"IssuedAtTime top level ignored", rec(`"IssuedAtTime":"2025-09-23T09:13:33"`), iat, time.Time{}},
		{"IssuedAtTime unparsable", rec(`"AppAccessContext":{"IssuedAtTime":"yesterday","UniqueTokenId":"u"}`),
			func(r Record) any { return [2]any{r.IssuedAtTime, r.UniqueTokenID} }, [2]any{time.Time{}, "u"}},
		{"IssuedAtTime impossible date", rec(`"AppAccessContext":{"IssuedAtTime":"2021-02-29T00:00:00"}`), iat, time.Time{}},
		{"IssuedAtTime 10 fractional digits", rec(`"AppAccessContext":{"IssuedAtTime":"2025-09-23T09:13:33.1234567890"}`), iat, time.Time{}},
		{"IssuedAtTime bad zone", rec(`"AppAccessContext":{"IssuedAtTime":"2025-09-23T09:13:33 UTC"}`), iat, time.Time{}},
		{"IssuedAtTime date only", rec(`"AppAccessContext":{"IssuedAtTime":"2025-09-23"}`), iat, time.Time{}},
		{"IssuedAtTime empty", rec(`"AppAccessContext":{"IssuedAtTime":""}`), iat, time.Time{}},
		{"IssuedAtTime unix number", rec(`"AppAccessContext":{"IssuedAtTime":1727868231}`), iat, time.Time{}},
		{"IssuedAtTime null", rec(`"AppAccessContext":{"IssuedAtTime":null}`), iat, time.Time{}},
		{"IssuedAtTime object", rec(`"AppAccessContext":{"IssuedAtTime":{"t":"2025-09-23T09:13:33"}}`), iat, time.Time{}},

		// OperationProperties as an array and as JSON in a string.
		{"MailAccessType Bind", rec(`"OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}]`),
			func(r Record) any { return [2]any{r.MailAccessType, r.IsThrottled} }, [2]any{"Bind", false}},
		{"MailAccessType Sync throttled", rec(`"OperationProperties":[{"Value":"Sync","Name":"MailAccessType"},{"Name":"IsThrottled","Value":"True"}]`),
			func(r Record) any { return [2]any{r.MailAccessType, r.IsThrottled} }, [2]any{"Sync", true}},
		{"OperationProperties in a string", rec(`"OperationProperties":"[{\"Name\":\"MailAccessType\",\"Value\":\"Sync\"},{\"Name\":\"IsThrottled\",\"Value\":\"True\"}]"`),
			func(r Record) any { return [2]any{r.MailAccessType, r.IsThrottled} }, [2]any{"Sync", true}},
		{"OperationProperties other names", rec(`"OperationProperties":"[{\"Name\":\"SystemArtifactType\",\"Value\":\"None\"}]"`),
			func(r Record) any { return r.MailAccessType }, ""},
		{"OperationProperties plain string", rec(`"OperationProperties":"-Identity x"`), func(r Record) any { return r.MailAccessType }, ""},
		{"OperationProperties broken JSON string", rec(`"OperationProperties":"[{\"Name\":"`), func(r Record) any { return r.MailAccessType }, ""},
		{"OperationProperties odd elements", rec(`"OperationProperties":[1,"x",[],{"Name":5},{"Name":"MailAccessType","Value":"Bind"}]`),
			func(r Record) any { return r.MailAccessType }, "Bind"},

		// Message ids from Folders, AffectedItems and Item.
		{"Folders", rec(`"Folders":[{"Path":"\\Inbox","FolderItems":[{"InternetMessageId":"<a@x>"},{"Id":"no id"},{"InternetMessageId":"<b@x>"}]},{"FolderItems":[{"InternetMessageId":"<c@y>"}]}]`),
			func(r Record) any { return r.InternetMessageIDs }, []string{"<a@x>", "<b@x>", "<c@y>"}},
		{"Folders in a string", rec(`"Folders":"[{\"FolderItems\":[{\"InternetMessageId\":\"\\u003ca@x\\u003e\"}]}]"`),
			func(r Record) any { return r.InternetMessageIDs }, []string{"<a@x>"}},
		{"AffectedItems and Item", rec(`"Item":{"InternetMessageId":"<i@x>"},"AffectedItems":[{"InternetMessageId":"<d@x>","Subject":"s"}]`),
			func(r Record) any { return r.InternetMessageIDs }, []string{"<d@x>", "<i@x>"}},
		{"no message ids", rec(`"Folders":[{"Path":"\\Inbox"}]`), func(r Record) any { return r.InternetMessageIDs }, []string(nil)},

		// Strings: escapes decoded, numbers and booleans as written, other shapes dropped.
		{"escaped backslash", rec(`"UserId":"NT AUTHORITY\\SYSTEM (Microsoft.Exchange.ServiceHost)"`), func(r Record) any { return r.UserID }, `NT AUTHORITY\SYSTEM (Microsoft.Exchange.ServiceHost)`},
		{"unicode escapes", rec(`"UserId":"Bo\u00eete \ud83d\ude00 \/x"`), func(r Record) any { return r.UserID }, "Boîte 😀 /x"},
		{"escaped NUL", rec(`"UserId":"a\u0000b"`), func(r Record) any { return r.UserID }, "a\x00b"},
		{"number as string column", rec(`"UserKey":1003200096971`), func(r Record) any { return r.UserKey }, "1003200096971"},
		{"bool as string column", rec(`"ResultStatus":true`), func(r Record) any { return r.ResultStatus }, "true"},
		{"object as string column", rec(`"ObjectId":{"a":1}`), func(r Record) any { return r.ObjectID }, ""},
		{"ResultStatus free text", rec(`"ResultStatus":"PartiallySucceeded"`), func(r Record) any { return r.ResultStatus }, "PartiallySucceeded"},
		{"strings kept verbatim", rec(`"Workload":" Exchange\r\n"`), func(r Record) any { return r.Workload }, " Exchange\r\n"},

		// Keys: exact, escapes decoded, the last of repeated keys wins, nested ones ignored.
		{"escaped key", `{"\u0049d":"x","CreationTime":"2020-02-17T17:12:03","Operation":"Op"}`, func(r Record) any { return r.ID }, "x"},
		{"repeated key", `{"Id":"first","CreationTime":"2020-02-17T17:12:03","Operation":"Op","Id":"last"}`, func(r Record) any { return r.ID }, "last"},
		{"nested Id ignored", `{"Item":{"Id":"inner"},"Id":"outer","CreationTime":"2020-02-17T17:12:03","Operation":"Op"}`, func(r Record) any { return r.ID }, "outer"},
		{"keys are case-sensitive", rec(`"userid":"x"`), func(r Record) any { return r.UserID }, ""},
		{"spaced JSON", "{ \"Id\" : \"x\" ,\n\t\"CreationTime\" :\"2020-02-17T17:12:03\", \"Operation\": \"Op\" , \"RecordType\" : 2 }",
			func(r Record) any { return [2]any{r.ID, r.RecordType} }, [2]any{"x", int32(2)}},

		{"CreationTime with Z", `{"Id":"x","CreationTime":"2024-10-01T08:18:26Z","Operation":"Op"}`,
			func(r Record) any { return r.CreationTime }, time.Date(2024, 10, 1, 8, 18, 26, 0, time.UTC)},
		{"CreationTime with offset", `{"Id":"x","CreationTime":"2024-10-01T10:18:26.5+02:00","Operation":"Op"}`,
			func(r Record) any { return r.CreationTime }, time.Date(2024, 10, 1, 8, 18, 26, 5e8, time.UTC)},
		{"CreationTime with space", `{"Id":"x","CreationTime":"2022-12-12 22:19:00","Operation":"Op"}`,
			func(r Record) any { return r.CreationTime }, time.Date(2022, 12, 12, 22, 19, 0, 0, time.UTC)},
	}
	var p Parser
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := p.Parse([]byte(tt.json))
			if err != nil {
				t.Fatalf("Parse(%s): %v", tt.json, err)
			}
			if got := tt.get(r); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%s): got %#v, want %#v", tt.json, got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	deep := strings.Repeat("[", 100000)
	tests := []struct {
		name  string
		json  string
		field string
		err   string
		id    string // the ID the failed record still carries
	}{
		{name: "empty", json: "", err: "empty record"},
		{name: "blank", json: " \n\t ", err: "empty record"},
		{name: "truncated", json: `{"Id":"x"`, err: "invalid JSON at byte 9: want ',' or '}', got end of input"},
		{name: "trailing comma", json: `{"Id":"x",}`, err: "invalid JSON at byte 10: want a string key, got character '}'"},
		{name: "two values", json: `{"Id":"x"} {"Id":"y"}`, err: "invalid JSON at byte 11: unexpected character '{' after the value"},
		{name: "single quotes", json: `{'Id':'x'}`, err: "invalid JSON at byte 1: want a string key, got character '\\''"},
		{name: "NaN", json: rec(`"UserType":NaN`), err: "invalid JSON at byte 79: unexpected character 'N'"},
		{name: "Infinity", json: rec(`"UserType":-Infinity`), err: "invalid JSON at byte 79: malformed number"},
		{name: "leading zero", json: rec(`"UserType":01`), err: "invalid JSON at byte 80: want ',' or '}', got character '1'"},
		{name: "plus sign", json: rec(`"UserType":+1`), err: "invalid JSON at byte 79: unexpected character '+'"},
		{name: "bare fraction", json: rec(`"UserType":1.`), err: "invalid JSON at byte 79: malformed number"},
		{name: "bad literal", json: rec(`"UserType":tru`), err: "invalid JSON at byte 79: invalid literal (want true)"},
		{name: "control character", json: "{\"Id\":\"a\x01b\"}", err: "invalid JSON at byte 8: control character 0x01 in string"},
		{name: "raw NUL in string", json: "{\"Id\":\"a\x00b\"}", err: "invalid JSON at byte 8: control character 0x00 in string"},
		{name: "NUL outside string", json: "{\"Id\":\"a\"\x00}", err: "invalid JSON at byte 9: want ',' or '}', got character '\\x00'"},
		{name: "bad escape", json: `{"Id":"a\x"}`, err: `invalid JSON at byte 8: invalid escape \x`},
		{name: "short unicode escape", json: `{"Id":"a\u12"}`, err: `invalid JSON at byte 8: malformed \u escape`},
		{name: "lone high surrogate", json: `{"Id":"a\ud800"}`, err: "invalid JSON at byte 8: unpaired UTF-16 surrogate escape"},
		{name: "lone low surrogate", json: `{"Id":"a\udc00"}`, err: "invalid JSON at byte 8: unpaired UTF-16 surrogate escape"},
		{name: "surrogate then letter", json: `{"Id":"\ud800\u0041"}`, err: "invalid JSON at byte 7: unpaired UTF-16 surrogate escape"},
		{name: "invalid UTF-8", json: "{\"Id\":\"a\xff\"}", err: "invalid JSON at byte 8: invalid UTF-8"},
		{name: "byte order mark", json: "\ufeff" + rec(""), err: "invalid JSON at byte 0: unexpected character '\\ufeff'"},
		{name: "deep nesting", json: deep, err: "invalid JSON at byte 128: nested deeper than 128 levels"},
		{name: "deep object nesting", json: strings.Repeat(`{"a":`, 200), err: "invalid JSON at byte 640: nested deeper than 128 levels"},

		{name: "array", json: `[1,2]`, err: "not a JSON object (got array)"},
		{name: "string", json: `"x"`, err: "not a JSON object (got string)"},
		{name: "null", json: `null`, err: "not a JSON object (got null)"},
		{name: "number", json: `1e999`, err: "not a JSON object (got number)"},

		{name: "no Id", json: `{"CreationTime":"2020-02-17T17:12:03","Operation":"Op"}`, field: "Id", err: "Id: missing"},
		{name: "null Id", json: `{"Id":null}`, field: "Id", err: "Id: missing"},
		{name: "empty Id", json: `{"Id":""}`, field: "Id", err: "Id: empty"},
		{name: "blank Id", json: `{"Id":" \t"}`, field: "Id", err: "Id: empty"},
		{name: "object Id", json: `{"Id":{"x":1}}`, field: "Id", err: "Id: want a string, got object"},
		{name: "number Id", json: `{"Id":12}`, field: "Id", err: "Id: want a string, got number"},
		{name: "no CreationTime", json: `{"Id":"r","Operation":"Op"}`, field: "CreationTime", err: "CreationTime: missing", id: "r"},
		{name: "unparsable CreationTime", json: `{"Id":"r","CreationTime":"yesterday","Operation":"Op"}`, field: "CreationTime", err: `CreationTime: unparsable time "yesterday"`, id: "r"},
		{name: "impossible date", json: `{"Id":"r","CreationTime":"2021-02-29T00:00:00","Operation":"Op"}`, field: "CreationTime", err: `CreationTime: unparsable time "2021-02-29T00:00:00"`, id: "r"},
		{name: "number CreationTime", json: `{"Id":"r","CreationTime":1581959523,"Operation":"Op"}`, field: "CreationTime", err: "CreationTime: want a string, got number", id: "r"},
		{name: "long CreationTime cut short", json: `{"Id":"r","CreationTime":"` + strings.Repeat("9", 500) + `"}`, field: "CreationTime",
			err: `CreationTime: unparsable time "` + strings.Repeat("9", 64) + `"...`, id: "r"},
		{name: "no Operation", json: `{"Id":"r","CreationTime":"2020-02-17T17:12:03"}`, field: "Operation", err: "Operation: missing", id: "r"},
		{name: "empty Operation", json: `{"Id":"r","CreationTime":"2020-02-17T17:12:03","Operation":""}`, field: "Operation", err: "Operation: empty", id: "r"},
		{name: "array Operation", json: `{"Id":"r","CreationTime":"2020-02-17T17:12:03","Operation":["a"]}`, field: "Operation", err: "Operation: want a string, got array", id: "r"},
		{name: "unknown RecordType name", json: `{"Id":"r","CreationTime":"2020-02-17T17:12:03","Operation":"Op","RecordType":"abc"}`, field: "RecordType", err: `RecordType: unknown record type "abc"`, id: "r"},
		{name: "object RecordType", json: `{"Id":"r","CreationTime":"2020-02-17T17:12:03","Operation":"Op","RecordType":{}}`, field: "RecordType", err: "RecordType: want a number or a name, got object", id: "r"},
		{name: "bool RecordType", json: `{"Id":"r","CreationTime":"2020-02-17T17:12:03","Operation":"Op","RecordType":true}`, field: "RecordType", err: "RecordType: want a number or a name, got boolean", id: "r"},
		{name: "RecordType beyond int32", json: `{"Id":"r","CreationTime":"2020-02-17T17:12:03","Operation":"Op","RecordType":4294967296}`, field: "RecordType", err: "RecordType: not a 32-bit integer: \"4294967296\"", id: "r"},
		{name: "RecordType fraction", json: `{"Id":"r","CreationTime":"2020-02-17T17:12:03","Operation":"Op","RecordType":"1.5"}`, field: "RecordType", err: "RecordType: not a 32-bit integer: \"\\\"1.5\\\"\"", id: "r"},
		{name: "RecordType 1e999", json: `{"Id":"r","CreationTime":"2020-02-17T17:12:03","Operation":"Op","RecordType":1e999}`, field: "RecordType", err: "RecordType: not a 32-bit integer: \"1e999\"", id: "r"},
	}
	var p Parser
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := p.Parse([]byte(tt.json))
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("Parse(%.80q) = %v, want a *FieldError", tt.json, err)
			}
			if fe.Field != tt.field {
				t.Errorf("Field = %q, want %q", fe.Field, tt.field)
			}
			if err.Error() != tt.err {
				t.Errorf("error %q, want %q", err.Error(), tt.err)
			}
			if !reflect.DeepEqual(r, Record{ID: tt.id}) {
				t.Errorf("failed record %+v, want only ID %q", r, tt.id)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	// A record exactly at the limit passes; one byte more is refused
	// before any parsing, and surrounding whitespace does not count.
	pad := func(n int) string {
		base := rec(`"Pad":""`)
		return rec(`"Pad":"` + strings.Repeat("x", n-len(base)) + `"`)
	}
	atLimit := pad(MaxRecordSize)
	if len(atLimit) != MaxRecordSize {
		t.Fatalf("test record is %d bytes", len(atLimit))
	}
	if _, err := Parse([]byte("\n" + atLimit + "\r\n")); err != nil {
		t.Errorf("record of MaxRecordSize bytes: %v", err)
	}
	_, err := Parse([]byte(pad(MaxRecordSize + 1)))
	want := "record is 1048577 bytes, over the 1048576 byte limit"
	if err == nil || err.Error() != want {
		t.Errorf("record over MaxRecordSize: %v, want %s", err, want)
	}
	// Not parsed at all: even invalid JSON gets the size error.
	_, err = Parse(bytes.Repeat([]byte("x"), MaxRecordSize+1))
	if err == nil || err.Error() != "record is 1048577 bytes, over the 1048576 byte limit" {
		t.Errorf("huge garbage: %v", err)
	}
}

func TestParseRaw(t *testing.T) {
	body := "{ \"Id\" : \"x\", \"CreationTime\":\"2020-02-17T17:12:03\",\n\"Operation\":\"Op\" }"
	in := []byte(" \t\r\n" + body + "\n\n")
	r, err := Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Raw) != body {
		t.Errorf("Raw = %q, want the input without surrounding whitespace", r.Raw)
	}
	// Raw and the strings are copies: the caller may reuse its buffer.
	for i := range in {
		in[i] = 'z'
	}
	if string(r.Raw) != body || r.ID != "x" || r.Operation != "Op" {
		t.Errorf("record changed with the input buffer: %+v", r)
	}
}

func TestParserReuse(t *testing.T) {
	// Records parsed one after another by the same Parser stay independent,
	// including after a huge record that resets the Parser's buffers.
	var p Parser
	first, err := p.Parse([]byte(mailItemsAccessed))
	if err != nil {
		t.Fatal(err)
	}
	keep := first
	keep.InternetMessageIDs = append([]string(nil), first.InternetMessageIDs...)
	huge := rec(`"Folders":[{"FolderItems":[` + strings.Repeat(`{"InternetMessageId":"<m@x>"},`, 20000) + `{"InternetMessageId":"<last@x>"}]}]`)
	r, err := p.Parse([]byte(huge))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.InternetMessageIDs) != 20001 || r.InternetMessageIDs[20000] != "<last@x>" {
		t.Errorf("huge record: %d message ids", len(r.InternetMessageIDs))
	}
	if _, err := p.Parse([]byte(rec(`"UserId":"someone else"`))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(first, keep) {
		t.Errorf("first record changed by later parses:\n%+v\n%+v", first, keep)
	}
}

func TestParseHostile(t *testing.T) {
	// Large but legal inputs parse, quickly and without error.
	tests := map[string]string{
		"huge string":     rec(`"Blob":"` + strings.Repeat("A\\\"", 300000) + `"`),
		"many members":    `{"Id":"x","CreationTime":"2020-02-17T17:12:03","Operation":"Op"` + strings.Repeat(`,"k":0`, 150000) + `}`,
		"nested 128":      rec(`"Deep":` + strings.Repeat("[", 127) + strings.Repeat("]", 127)),
		"huge numbers":    rec(`"UserType":1e999,"LogonType":-1e999,"OperationCount":123456789012345678901234567890,"Scope":0.0000000000001`),
		"many surrogates": rec(`"UserId":"` + strings.Repeat(`\ud83d\ude00`, 50000) + `"`),
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			if len(in) > MaxRecordSize {
				t.Fatalf("test input is %d bytes", len(in))
			}
			r, err := Parse([]byte(in))
			if err != nil {
				t.Fatal(err)
			}
			if r.ID == "" || len(r.Raw) != len(in) {
				t.Errorf("bad record: ID %q, %d raw bytes", r.ID, len(r.Raw))
			}
		})
	}
}

func BenchmarkParseWorst(b *testing.B) {
	// Cost of hostile input near the size limit, for comparison with the
	// typical record: each byte is looked at a bounded number of times.
	raw := []byte(rec(`"Blob":"` + strings.Repeat(`\ud83d\ude00`, 80000) + `"`))
	var p Parser
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := p.Parse(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func TestParseCopiesRawParseSharedDoesNot(t *testing.T) {
	in := []byte(`  {"Id":"x1","CreationTime":"2024-01-01T00:00:00","Operation":"Op"}` + "\n")
	var p Parser
	copied, err := p.Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	shared, err := p.ParseShared(in)
	if err != nil {
		t.Fatal(err)
	}
	want := string(bytes.TrimSpace(in))
	if string(copied.Raw) != want || string(shared.Raw) != want {
		t.Fatalf("raw: %q / %q, want %q", copied.Raw, shared.Raw, want)
	}
	in[2] = '[' // the caller changes its buffer
	if string(copied.Raw) != want {
		t.Errorf("Parse's Raw changed with its input: %q", copied.Raw)
	}
	if shared.Raw[0] != '[' {
		t.Errorf("ParseShared's Raw is a copy, want the input's memory")
	}
}
