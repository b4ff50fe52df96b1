package audit

import "testing"

// mailItemsAccessed is a realistic MailItemsAccessed record: an application
// (Graph, AppAccessContext) binding one message over IPv6, 1.39 KB.
const mailItemsAccessed = `{"CreationTime":"2025-03-14T09:26:53","Id":"5b1f0f8e-7a43-4c0e-9d3e-2f6a1c8b7d20","Operation":"MailItemsAccessed","OrganizationId":"0c4e8d7a-61f2-4b3a-9e55-8a1d2c3b4f60","RecordType":50,"ResultStatus":"Succeeded","UserKey":"10032001A2B3C4D5","UserType":0,"Version":1,"Workload":"Exchange","UserId":"adele.vance@contoso.example","AppId":"00000003-0000-0000-c000-000000000000","AppAccessContext":{"AADSessionId":"7f3c2a10-5e6d-4b8c-a9f1-0d2e3c4b5a69","IssuedAtTime":"2025-03-14T09:21:40","UniqueTokenId":"r2M8pQxZ0k6vT1yW3nB5AA"},"ClientAppId":"d3590ed6-52b3-4102-aeff-aad2292ab01c","ClientIPAddress":"2a01:111:f400:7e8b::35","ClientInfoString":"Client=REST;Client=RESTSystem;;","ExternalAccess":false,"InternalLogonType":0,"LogonType":0,"LogonUserSid":"S-1-5-21-2718281828-3141592653-1618033988-4242","MailboxGuid":"9e8d7c6b-5a49-4382-8170-6f5e4d3c2b1a","MailboxOwnerSid":"S-1-5-21-2718281828-3141592653-1618033988-4242","MailboxOwnerUPN":"adele.vance@contoso.example","OperationProperties":[{"Name":"MailAccessType","Value":"Bind"},{"Name":"IsThrottled","Value":"False"}],"OrganizationName":"contoso.onmicrosoft.com","OriginatingServer":"AM0PR02MB5123 (15.20.8534.027)\r\n","Folders":[{"FolderItems":[{"InternetMessageId":"<AM0PR02MB51231A2B3C4D5E6F7A8B@AM0PR02MB5123.eurprd02.prod.outlook.com>","SizeInBytes":48213}],"Id":"LgAAAAAc0ffeeAAAAAEMAAAB","Path":"\\Inbox"}],"OperationCount":1}`

// BenchmarkParse reports records/s on one core; the package aims at 150k.
func BenchmarkParse(b *testing.B) {
	raw := []byte(mailItemsAccessed)
	var p Parser
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Parse(raw); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}
