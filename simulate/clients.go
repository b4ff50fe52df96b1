package simulate

// surface is the kind of device a session runs on; it decides which clients
// and which operations the session produces.
type surface uint8

const (
	sDesktop surface = iota // Outlook desktop, Office apps, OneDrive sync, Teams
	sBrowser                // Outlook on the web, SharePoint in a browser
	sMobile                 // Outlook Mobile, Teams mobile
	sAdmin                  // an admin's PowerShell or portal session
	sAttack                 // an attacker's tooling (scenarios only)
)

// client is what Exchange mailbox audit records say about the accessing
// application. ClientInfoString values are those Exchange Online records
// for each client family.
type client struct {
	cis         string // ClientInfoString
	appID       string
	clientAppID string
	apiID       string // AppAccessContext.APIId, when the access goes through an API
	querySource string // SearchQueryInitiatedExchange.QuerySource
	sync        bool   // the client syncs folders (MailAccessType Sync)
	requestID   bool   // the client sends a ClientRequestId
}

// oauth reports whether the client's mailbox records carry the token
// context (AppAccessContext, TokenObjectId, TokenTenantId): REST and Graph
// clients do; Outlook desktop over MAPI and OWA records carry neither, as
// in the older records Exchange still emits for them.
func (c *client) oauth() bool { return c != cliOutlookWin && c != cliOWA }

// storeIDs reports whether the client's bind records list the store ids
// (Id, ImmutableId) of the items: REST and Graph clients do; MAPI and OWA
// records carry only the InternetMessageId and size.
func (c *client) storeIDs() bool { return c != cliOutlookWin && c != cliOWA }

// immutableIDs reports whether the client also gets ImmutableId: Graph
// clients ask for immutable ids.
func (c *client) immutableIDs() bool { return c.apiID != "" || c == cliStorm }

// The clients of normal activity. Each user keeps the same mix all run.
var (
	cliOutlookWin     = &client{cis: "Client=MSExchangeRPC", appID: appOffice, clientAppID: appOffice, querySource: "Outlook", sync: true}
	cliOutlookMac     = &client{cis: "Client=REST;Client=RESTSystem;;", appID: appOffice, clientAppID: appOffice, querySource: "Outlook", sync: true, requestID: true}
	cliOWA            = &client{cis: "Client=OWA;Action=ViaProxy", appID: appExchange, querySource: "Owa"}
	cliOutlookIOS     = &client{cis: "Client=OutlookService;Outlook-iOS/2.0;", appID: appOutlookMobile, clientAppID: appOutlookMobile, querySource: "OutlookMobile", requestID: true}
	cliOutlookAndroid = &client{cis: "Client=OutlookService;Outlook-Android/2.0;", appID: appOutlookMobile, clientAppID: appOutlookMobile, querySource: "OutlookMobile", requestID: true}
	// Teams reads calendar and mail through Microsoft Graph: the AppId is
	// Graph's, the ClientAppId the Teams client's.
	cliTeamsGraph = &client{cis: "Client=REST;Client=RESTSystem;;", appID: appGraph, clientAppID: appTeams, apiID: appGraph, requestID: true}
)

// The applications that open SharePoint and OneDrive files on the desktop.
var (
	cliOneDriveFiles = &client{appID: appOneDriveSync}
	cliOfficeFiles   = &client{appID: appOffice}
)

// Browsers, as indexes into browsers.
const (
	bEdge = iota
	bChrome
	bFirefox
	bSafari
)

type browser struct {
	name, version string
	win, mac      string // user agents
}

var browsers = []browser{
	bEdge: {"Edge", "133.0.0.0",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36 Edg/133.0.0.0",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36 Edg/133.0.0.0"},
	bChrome: {"Chrome", "133.0.0.0",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/133.0.0.0 Safari/537.36"},
	bFirefox: {"Firefox", "135.0",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:135.0) Gecko/20100101 Firefox/135.0",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14.7; rv:135.0) Gecko/20100101 Firefox/135.0"},
	bSafari: {"Safari", "18.3",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.3 Safari/605.1.15",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.3 Safari/605.1.15"},
}

const (
	uaOfficeWin   = "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.18324; Pro)"
	uaOfficeMac   = "Microsoft Office/16.0 (Macintosh; Mac OS X 14.7; Microsoft Outlook 16.94; Pro)"
	uaSyncWin     = "Microsoft SkyDriveSync 25.020.0202.0002 ship; Windows NT 10.0 (26100)"
	uaSyncMac     = "Microsoft SkyDriveSync 25.020.0202.0002 ship; Mac OS X 14.7"
	uaExcelWin    = "Microsoft Office Excel 2014 (16.0.18324) Windows NT 10.0"
	uaWordMac     = "Microsoft Office Word 2014 (16.94) Mac OS X 14.7"
	uaIOS         = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"
	uaAndroid     = "Mozilla/5.0 (Linux; Android 14; SM-S911B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/133.0.6943.49 Mobile Safari/537.36 PKeyAuth/1.0"
	uaPowerShell  = "Mozilla/5.0 (Windows NT 10.0; Microsoft Windows 10.0.26100; en-US) PowerShell/7.4.6"
	uaAttackLinux = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)

// signIn is one application a session obtains tokens for: the sign-in
// records (UserLoggedIn) carry it as ApplicationId, the resource as ObjectId.
type signIn struct {
	appID, resource, requestType string
}

var (
	signInOutlookDesktop = &signIn{appOffice, appExchange, "OAuth2:Token"}
	signInOfficeSP       = &signIn{appOffice, appSharePoint, "OAuth2:Token"}
	signInOneDrive       = &signIn{appOneDriveSync, appSharePoint, "OAuth2:Token"}
	signInTeams          = &signIn{appTeams, appGraph, "OAuth2:Token"}
	signInOWA            = &signIn{appOWA, appExchange, "OAuth2:Authorize"}
	signInOfficeHome     = &signIn{appOfficeHome, appSharePoint, "OAuth2:Authorize"}
	signInOutlookMobile  = &signIn{appOutlookMobile, appExchange, "OAuth2:Token"}
	signInBroker         = &signIn{appAuthBroker, appGraph, "OAuth2:Token"}
	signInPowerShell     = &signIn{appEXOPowerShell, appExchange, "OAuth2:Token"}
	signInPortal         = &signIn{appAzurePortal, appGraph, "OAuth2:Authorize"}
)

// signIns lists, per surface, the applications whose tokens a session
// requests: the first at the start, the others on each hourly refresh.
func signIns(s surface, u *user) []*signIn {
	switch s {
	case sDesktop:
		if u.usesTeams {
			return []*signIn{signInOutlookDesktop, signInTeams, signInOneDrive, signInOfficeSP}
		}
		return []*signIn{signInOutlookDesktop, signInOneDrive, signInOfficeSP}
	case sBrowser:
		return []*signIn{signInOWA, signInOfficeHome}
	case sMobile:
		if u.usesTeams {
			return []*signIn{signInOutlookMobile, signInTeams, signInBroker}
		}
		return []*signIn{signInOutlookMobile, signInBroker}
	}
	return nil
}

func (u *user) mailClient(s surface) *client {
	switch s {
	case sDesktop:
		if u.os == osMac {
			return cliOutlookMac
		}
		return cliOutlookWin
	case sMobile:
		if u.mobile == mobileAndroid {
			return cliOutlookAndroid
		}
		return cliOutlookIOS
	}
	return cliOWA
}

// userAgent is the agent string of a session's sign-ins and web requests.
func (u *user) userAgent(s surface) string {
	switch s {
	case sDesktop:
		if u.os == osMac {
			return uaOfficeMac
		}
		return uaOfficeWin
	case sMobile:
		if u.mobile == mobileAndroid {
			return uaAndroid
		}
		return uaIOS
	case sAdmin:
		return uaPowerShell
	}
	if u.os == osMac {
		return browsers[u.browser].mac
	}
	return browsers[u.browser].win
}

func (u *user) osName(s surface) string {
	switch {
	case s == sAttack:
		return "Linux"
	case s == sMobile && u.mobile == mobileAndroid:
		return "Android"
	case s == sMobile:
		return "Ios"
	case u.os == osMac:
		return "MacOs"
	}
	return "Windows10"
}

func (u *user) browserType(s surface) string {
	if s == sAttack {
		return "Chrome"
	}
	if s == sBrowser {
		return browsers[u.browser].name
	}
	return ""
}
