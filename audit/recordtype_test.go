package audit

import (
	"strconv"
	"testing"
)

func TestRecordTypeString(t *testing.T) {
	tests := []struct {
		t    RecordType
		want string
	}{
		{ExchangeAdmin, "ExchangeAdmin"},
		{ExchangeItem, "ExchangeItem"},
		{ExchangeItemGroup, "ExchangeItemGroup"},
		{SharePoint, "SharePoint"},
		{SharePointFileOperation, "SharePointFileOperation"},
		{AzureActiveDirectory, "AzureActiveDirectory"},
		{AzureActiveDirectoryAccountLogon, "AzureActiveDirectoryAccountLogon"},
		{DataCenterSecurityCmdlet, "DataCenterSecurityCmdlet"},
		{ComplianceDLPSharePoint, "ComplianceDLPSharePoint"},
		{Sway, "Sway"},
		{ComplianceDLPExchange, "ComplianceDLPExchange"},
		{SharePointSharingOperation, "SharePointSharingOperation"},
		{AzureActiveDirectoryStsLogon, "AzureActiveDirectoryStsLogon"},
		{MicrosoftTeams, "MicrosoftTeams"},
		{ExchangeItemAggregated, "ExchangeItemAggregated"},
		{22, "VivaEngage"},
		{40, "SecurityComplianceAlerts"},
		{64, "AirInvestigation"},
		{98, "MCASAlerts"},
		{261, "CopilotInteraction"},
		{463, "VivaGlintAgenticCampaign"},
		{0, "0"},
		{5, "5"},
		{-1, "-1"},
		{464, "464"},
		{Absent, "-2147483648"},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("RecordType(%d).String() = %q, want %q", int32(tt.t), got, tt.want)
		}
	}
}

func TestParseRecordType(t *testing.T) {
	tests := []struct {
		in   string
		want RecordType
		ok   bool
	}{
		{"ExchangeItemAggregated", 50, true},
		{"exchangeitemaggregated", 50, true},
		{"EXCHANGEADMIN", 1, true},
		{" MicrosoftTeams ", 25, true},
		{"VivaEngage", 22, true},
		{"Viva Engage", 22, true},
		{"Yammer", 22, true},
		{"WorkplaceAnalytics", 44, true},
		{"MicrosoftTeamsUpdatesApp", 230, true},
		{"50", 50, true},
		{"-1", -1, true},
		{"+7", 7, true},
		{"99999", 99999, true},
		{"2147483647", 2147483647, true},
		{"2147483648", 0, false},
		{"1.0", 0, false},
		{"", 0, false},
		{"abc", 0, false},
		{"Exchange Item Aggregated Extra", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseRecordType(tt.in)
		if ok != tt.ok || ok && got != tt.want {
			t.Errorf("ParseRecordType(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

// TestRecordTypeTable checks the table's invariants: sorted by value (String
// searches it), values and names unique, and every name parses back.
func TestRecordTypeTable(t *testing.T) {
	names := map[string]bool{}
	for i, e := range recordTypes {
		if i > 0 && recordTypes[i-1].t >= e.t {
			t.Errorf("recordTypes not sorted or repeated at %d (%d)", i, e.t)
		}
		if names[e.name] {
			t.Errorf("name %s repeated", e.name)
		}
		names[e.name] = true
		if got, ok := ParseRecordType(e.name); !ok || got != e.t {
			t.Errorf("ParseRecordType(%q) = %d, %v; want %d", e.name, got, ok, e.t)
		}
		if got := e.t.String(); got != e.name {
			t.Errorf("RecordType(%d).String() = %q, want %q", e.t, got, e.name)
		}
		if _, err := strconv.Atoi(e.name); err == nil {
			t.Errorf("name %q is a number", e.name)
		}
	}
	for _, e := range recordTypeAliases {
		if names[e.name] {
			t.Errorf("alias %s shadows a current name", e.name)
		}
	}
	if len(recordTypes) < 250 {
		t.Errorf("only %d record types; Microsoft's list has over 250", len(recordTypes))
	}
}
